import assert from "node:assert/strict";
import type { RawImage } from "./codec.ts";
import { remapBilinear } from "./remap.ts";

const image: RawImage = {
  width: 3,
  height: 2,
  channels: 1,
  data: Uint8Array.of(0, 1, 200, 10, 20, 30),
};

Deno.test("remapBilinear() with the identity map copies the image", () => {
  const mapX = Float32Array.of(0, 1, 2, 0, 1, 2);
  const mapY = Float32Array.of(0, 0, 0, 1, 1, 1);
  assert.deepEqual([...remapBilinear(image, mapX, mapY, 3, 2).data], [...image.data]);
});

Deno.test("remapBilinear() uses 1/32-pixel steps and 15-bit weights rounding half up", () => {
  // Halfway between 0 and 1: (0 * 16384 + 1 * 16384 + 16384) >> 15 = 1.
  // 0.01 of a pixel rounds to 0/32: exactly pixel 0. 0.75 between 1 and 200: 150.25 -> 150.
  const out = remapBilinear(
    image,
    Float32Array.of(0.5, 0.01, 1.75),
    Float32Array.of(0, 0, 0),
    3,
    1,
  );
  assert.deepEqual([...out.data], [1, 0, 150]);
  // Two-dimensional: the centre of 0, 1, 10, 20 is 7.75 -> 8.
  assert.equal(remapBilinear(image, Float32Array.of(0.5), Float32Array.of(0.5), 1, 1).data[0], 8);
});

Deno.test("remapBilinear() reads 0 outside the image (BORDER_CONSTANT)", () => {
  // Half a pixel right of the last column mixes 200 with 0; far outside is 0.
  const out = remapBilinear(image, Float32Array.of(2.5, 7, -3), Float32Array.of(0, 0, 0), 3, 1);
  assert.deepEqual([...out.data], [100, 0, 0]);
  assert.throws(
    () => remapBilinear(image, new Float32Array(1), new Float32Array(1), 2, 1),
    TypeError,
  );
});
