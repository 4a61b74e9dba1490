import assert from "node:assert/strict";
import {
  decodeFloatImage,
  encodeFloatImage,
  encodeImage,
  type FloatImage,
  resizeFloatImage,
} from "./codec.ts";

function ramp(channels: FloatImage["channels"], bitDepth: 8 | 16, w = 5, h = 3): FloatImage {
  const max = bitDepth === 16 ? 65535 : 255;
  const data = new Float32Array(channels * w * h);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % (max + 1)) / max;
  return { width: w, height: h, channels, bitDepth, data };
}

for (const channels of [1, 2, 3, 4] as const) {
  for (const bitDepth of [8, 16] as const) {
    Deno.test(`encodeFloatImage() / decodeFloatImage() keep ${channels} channels at ${bitDepth} bits`, async () => {
      const image = ramp(channels, bitDepth);
      const back = await decodeFloatImage(await encodeFloatImage(image, "png"));
      assert.equal(back.channels, channels);
      assert.equal(back.bitDepth, bitDepth);
      assert.equal(back.width, 5);
      let d = 0;
      for (let i = 0; i < image.data.length; i++) {
        d = Math.max(d, Math.abs(back.data[i]! - image.data[i]!));
      }
      assert.ok(d < 1e-7, `maxdiff ${d}`);
    });
  }
}

Deno.test("decodeFloatImage() reads an 8-bit RGB PNG as v / 255", async () => {
  const png = await encodeImage(
    { width: 2, height: 1, channels: 3, data: Uint8Array.of(0, 51, 255, 10, 20, 30) },
    "png",
  );
  const image = await decodeFloatImage(png);
  assert.deepEqual(
    [...image.data].map((v) => Math.round(v * 255)),
    [0, 10, 51, 20, 255, 30],
  );
});

Deno.test("decodeFloatImage() refuses bytes that are not an image", async () => {
  await assert.rejects(
    () => decodeFloatImage(Uint8Array.of(1, 2, 3), { label: "x.bin" }),
    /x\.bin/,
  );
});

Deno.test("resizeFloatImage() resizes each channel alone, to within 1/65535", async () => {
  const image = ramp(4, 8, 8, 6);
  const same = await resizeFloatImage(image, 8, 6);
  let d = 0;
  for (let i = 0; i < image.data.length; i++) {
    d = Math.max(d, Math.abs(same.data[i]! - image.data[i]!));
  }
  assert.ok(d <= 1 / 65535, `identity maxdiff ${d}`);
  const flat = { ...image, data: new Float32Array(image.data.length).fill(0.25) };
  const big = await resizeFloatImage(flat, 13, 9);
  assert.equal(big.channels, 4);
  assert.ok(big.data.every((v) => Math.abs(v - 0.25) <= 1 / 65535));
});
