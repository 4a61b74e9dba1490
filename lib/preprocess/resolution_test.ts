import assert from "node:assert/strict";
import { resizeLanczos4 } from "../image/resize_lanczos4.ts";
import { resizeArea } from "../image/resize_area.ts";
import { resizeLinear } from "../image/resize_linear.ts";
import { detectResize, resizeControl, resolutionSize } from "./resolution.ts";

function image(width: number, height: number) {
  const data = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 13) % 256);
  return { width, height, channels: 3 as const, data };
}

/** Byte equality without node:assert's slow diff of large arrays. */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

Deno.test("resolutionSize() is controlnet_aux's resize_image size: short side, multiples of 64", () => {
  assert.deepEqual(resolutionSize(640, 480, 512), [704, 512]);
  assert.deepEqual(resolutionSize(512, 512, 512), [512, 512]);
  assert.deepEqual(resolutionSize(1000, 300, 512), [1728, 512]); // 1706.7 -> 27 * 64
  // numpy's round halves to even: 96 / 64 = 1.5 -> 2 (128); 160 / 64 = 2.5 -> 2 (128).
  assert.deepEqual(resolutionSize(96, 64, 64), [128, 64]);
  assert.deepEqual(resolutionSize(160, 64, 64), [128, 64]);
  assert.throws(() => resolutionSize(1000, 10, 10), RangeError);
});

Deno.test("detectResize() shrinks with INTER_AREA and enlarges with INTER_LANCZOS4", () => {
  const big = image(256, 192);
  assert.ok(same(detectResize(big, 128).data, resizeArea(big, 192, 128).data));
  const small = image(50, 40); // k = 3.2: 160 -> 2.5 -> 2 (128), 128
  assert.ok(same(detectResize(small, 128).data, resizeLanczos4(small, 128, 128).data));
});

Deno.test("resizeControl() goes back to the input size, or to the image resolution's size", () => {
  const control = image(192, 128);
  assert.ok(same(resizeControl(control, 300, 200).data, resizeLinear(control, 300, 200).data));
  assert.equal(resizeControl(control, 192, 128), control);
  const out = resizeControl(control, 300, 200, 64);
  assert.deepEqual([out.width, out.height], [64 * 2, 64]); // 96 -> 1.5 -> 2 (round half even)
});
