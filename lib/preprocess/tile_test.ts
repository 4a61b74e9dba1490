import assert from "node:assert/strict";
import type { RawImage } from "../image/codec.ts";
import { tileControl, tilePreprocessor } from "./tile.ts";

function checker(size: number): RawImage {
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < size * size; i++) {
    const v = ((i % size) + Math.floor(i / size)) % 2 ? 255 : 0;
    data.fill(v, i * 3, i * 3 + 3);
  }
  return { width: size, height: size, channels: 3, data };
}

Deno.test("tileControl() shrinks by the rate with INTER_AREA and enlarges back", async () => {
  // Each 2x2 block of the checkerboard averages to (0 + 255 + 255 + 0 + 2) >> 2 = 128.
  const small = await tileControl(checker(8), { downsample: 2, resizeBack: false });
  assert.deepEqual([small.width, small.height], [4, 4]);
  assert.ok(small.data.every((v) => v === 128));
  const back = await tileControl(checker(8), { downsample: 2 });
  assert.deepEqual([back.width, back.height, back.channels], [8, 8, 3]);
  assert.ok(back.data.every((v) => v === 128));
  // int(H / rate): 10 / 3 -> 3.
  const third = await tileControl(checker(10), { downsample: 3, resizeBack: false });
  assert.deepEqual([third.width, third.height], [3, 3]);
});

Deno.test("tileControl() leaves the image alone below a rate of 1.1, as tile_resample", async () => {
  const image = checker(6);
  assert.deepEqual((await tileControl(image, { downsample: 1.09 })).data, image.data);
  assert.deepEqual((await tilePreprocessor.run(image)).data, image.data);
});

Deno.test("the tile preprocessor rejects rates out of range or too large for the image", async () => {
  await assert.rejects(() => tilePreprocessor.run(checker(8), { downsample: 0.5 }), RangeError);
  await assert.rejects(() => tilePreprocessor.run(checker(8), { downsample: 9 }), RangeError);
  await assert.rejects(
    () => tilePreprocessor.run(checker(4), { downsample: 8 }),
    /below one pixel/,
  );
});
