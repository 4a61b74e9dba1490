import assert from "node:assert/strict";
import type { RawImage } from "./codec.ts";
import { cropImage, cropMask, pasteImage } from "./crop.ts";
import { compositeThroughMask } from "./mask.ts";

/** A 4x3 gray image whose pixel (x, y) is 10 y + x. */
const GRAY: RawImage = {
  width: 4,
  height: 3,
  channels: 1,
  data: Uint8Array.from({ length: 12 }, (_, i) => 10 * Math.floor(i / 4) + (i % 4)),
};

Deno.test("cropImage() and cropMask() return the region's pixels row by row", () => {
  const crop = cropImage(GRAY, { x1: 1, y1: 1, x2: 3, y2: 3 });
  assert.deepEqual([crop.width, crop.height, [...crop.data]], [2, 2, [11, 12, 21, 22]]);
  const mask = cropMask({ width: 4, height: 3, data: GRAY.data }, { x1: 3, y1: 0, x2: 4, y2: 2 });
  assert.deepEqual([mask.width, mask.height, [...mask.data]], [1, 2, [3, 13]]);
  assert.throws(() => cropImage(GRAY, { x1: 2, y1: 0, x2: 5, y2: 1 }), RangeError);
  assert.throws(() => cropImage(GRAY, { x1: 2, y1: 0, x2: 2, y2: 1 }), RangeError);
});

Deno.test("pasteImage() writes the patch at (x, y) and leaves the rest and the base alone", () => {
  const patch: RawImage = { width: 2, height: 1, channels: 1, data: Uint8Array.of(99, 98) };
  const out = pasteImage(GRAY, patch, 2, 2);
  assert.deepEqual([...out.data], [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 99, 98]);
  assert.equal(GRAY.data[10], 22);
  assert.throws(() => pasteImage(GRAY, patch, 3, 2), RangeError);
});

Deno.test("compositeThroughMask() keeps the original at 0, the generated at 255, mixes between", () => {
  const gen: RawImage = { width: 3, height: 1, channels: 3, data: new Uint8Array(9).fill(200) };
  const orig: RawImage = { width: 3, height: 1, channels: 3, data: new Uint8Array(9).fill(100) };
  const out = compositeThroughMask(gen, orig, {
    width: 3,
    height: 1,
    data: Uint8Array.of(0, 51, 255),
  });
  // 51 / 255 = 0.2: 200 * 0.2 + 100 * 0.8 = 120 (not doubled as whole-image inpainting does).
  assert.deepEqual([...out.data], [100, 100, 100, 120, 120, 120, 200, 200, 200]);
});
