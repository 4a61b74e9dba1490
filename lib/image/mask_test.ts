import assert from "node:assert/strict";
import { encodeImage } from "./codec.ts";
import {
  binarizeMask,
  blurMask,
  decodeMask,
  maskFromImage,
  type MaskImage,
  overlayOriginal,
  resizeNearest,
} from "./mask.ts";

Deno.test("decodeMask() reads luminance with PIL's convert('L') weights", async () => {
  // (19595 R + 38470 G + 7471 B + 2^15) >> 16: pure red 76, green 150, blue 29, white 255.
  const png = await encodeImage({
    width: 4,
    height: 1,
    channels: 3,
    data: Uint8Array.of(255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255),
  }, "png");
  const mask = await decodeMask(png);
  assert.deepEqual([mask.width, mask.height], [4, 1]);
  assert.deepEqual([...mask.data], [76, 150, 29, 255]);
});

Deno.test("decodeMask() reads a translucent image's alpha as the mask (A1111 create_binary_mask)", async () => {
  // Black pixels everywhere; alpha 0, 128, 129, 255 -> alpha > 128 repaints.
  const png = await encodeImage({
    width: 4,
    height: 1,
    channels: 4,
    data: Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 128, 0, 0, 0, 129, 0, 0, 0, 255),
  }, "png");
  const mask = await decodeMask(png);
  assert.deepEqual([...mask.data], [0, 0, 255, 255]);
  // Fully opaque RGBA falls back to luminance.
  const opaque = maskFromImage({
    width: 2,
    height: 1,
    channels: 4,
    data: Uint8Array.of(255, 255, 255, 255, 10, 10, 10, 255),
  });
  assert.deepEqual([...opaque.data], [255, 10]);
});

Deno.test("decodeMask() rejects bytes that are not an image", async () => {
  await assert.rejects(
    () => decodeMask(new TextEncoder().encode("not an image"), { label: "m.txt" }),
    /Cannot decode the image from m\.txt/,
  );
});

Deno.test("blurMask() is A1111's separable Gaussian (kernel 2*int(2.5s+0.5)+1, reflect-101)", () => {
  // One white pixel in the middle of a 15x15 black mask, sigma 1: kernel size 7, and the blurred
  // value at offset (dx, dy) is round(round(255 * g(dx)) * g(dy)) with g the normalised Gaussian.
  const size = 15;
  const data = new Uint8Array(size * size);
  data[7 * size + 7] = 255;
  const out = blurMask({ width: size, height: size, data }, 1);
  const g = [-3, -2, -1, 0, 1, 2, 3].map((x) => Math.exp(-x * x / 2));
  const sum = g.reduce((a, b) => a + b, 0);
  const k = g.map((v) => v / sum);
  for (let dy = -4; dy <= 4; dy++) {
    for (let dx = -4; dx <= 4; dx++) {
      const row = Math.abs(dx) <= 3 ? Math.round(255 * k[dx + 3]!) : 0;
      const want = Math.abs(dy) <= 3 ? Math.round(row * k[dy + 3]!) : 0;
      assert.equal(out.data[(7 + dy) * size + 7 + dx], want, `at (${dx}, ${dy})`);
    }
  }
  // Symmetric, and blur 0 is the identity.
  assert.equal(out.data[6 * size + 7], out.data[8 * size + 7]);
  assert.equal(blurMask({ width: size, height: size, data }, 0).data, data);
  assert.throws(() => blurMask({ width: 1, height: 1, data: new Uint8Array(1) }, -1), RangeError);
});

Deno.test("blurMask() reflects at the border (BORDER_REFLECT_101)", () => {
  // A white pixel at x=0: reflect-101 mirrors x=-1 to x=1 (black), so pixel 0 sees the white
  // pixel once, at its centre (BORDER_REFLECT would mirror x=-1 to x=0 and count it twice).
  const width = 8;
  const data = new Uint8Array(width);
  data[0] = 255;
  const out = blurMask({ width, height: 1, data }, 1);
  const g = [-3, -2, -1, 0, 1, 2, 3].map((x) => Math.exp(-x * x / 2));
  const sum = g.reduce((a, b) => a + b, 0);
  assert.equal(out.data[0], Math.round(255 * g[3]! / sum));
  assert.equal(out.data[1], Math.round(255 * g[2]! / sum));
  assert.equal(out.data[2], Math.round(255 * g[1]! / sum));
});

Deno.test("binarizeMask() thresholds at 0.5 like Diffusers' do_binarize", () => {
  const mask: MaskImage = { width: 4, height: 1, data: Uint8Array.of(0, 127, 128, 255) };
  // 127/255 = 0.498 -> 0, 128/255 = 0.502 -> 1
  assert.deepEqual([...binarizeMask(mask)], [0, 0, 1, 1]);
});

Deno.test("resizeNearest() picks input pixel floor(i * in / out), as F.interpolate 'nearest'", () => {
  const w = 16;
  const h = 8;
  const plane = Float32Array.from({ length: w * h }, (_, i) => i);
  const out = resizeNearest(plane, w, h, 2, 1);
  assert.deepEqual([...out], [0, 8]);
  // Factor 8, the latent grid: output (i, j) reads (8i, 8j).
  const big = Float32Array.from({ length: 64 * 64 }, (_, i) => i);
  const small = resizeNearest(big, 64, 64, 8, 8);
  for (let i = 0; i < 8; i++) {
    for (let j = 0; j < 8; j++) assert.equal(small[i * 8 + j], 8 * i * 64 + 8 * j);
  }
  // Non-integer ratio: 3 -> 2 reads 0 and floor(1.5) = 1.
  assert.deepEqual([...resizeNearest(Float32Array.of(5, 6, 7), 3, 1, 2, 1)], [5, 6]);
  assert.throws(() => resizeNearest(new Float32Array(3), 2, 2, 1, 1), TypeError);
});

Deno.test("overlayOriginal() keeps the original where the mask is black and the image where it is >= 128", () => {
  const generated = {
    width: 3,
    height: 1,
    channels: 3 as const,
    data: new Uint8Array(9).fill(200),
  };
  const original = { width: 3, height: 1, channels: 3 as const, data: new Uint8Array(9).fill(100) };
  const mask: MaskImage = { width: 3, height: 1, data: Uint8Array.of(0, 64, 128) };
  const out = overlayOriginal(generated, original, mask);
  // m = min(255, 2 * mask) / 255: 0 -> original, 64 -> 128/255 blend, 128 -> generated.
  assert.deepEqual([...out.data.subarray(0, 3)], [100, 100, 100]);
  assert.equal(out.data[3], Math.round(200 * 128 / 255 + 100 * (1 - 128 / 255)));
  assert.deepEqual([...out.data.subarray(6, 9)], [200, 200, 200]);
  assert.throws(
    () => overlayOriginal(generated, { ...original, width: 1, data: new Uint8Array(3) }, mask),
    TypeError,
  );
});
