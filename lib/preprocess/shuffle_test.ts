import assert from "node:assert/strict";
import type { RawImage } from "../image/codec.ts";
import { shuffleControl, shufflePreprocessor } from "./shuffle.ts";

/** R = x, G = y, B = 7: every output pixel tells where it was sampled. */
function coordinates(width: number, height: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set([i % width, Math.floor(i / width), 7], i * 3);
  return { width, height, channels: 3, data };
}

Deno.test("shuffleControl() is deterministic per seed and differs between seeds", () => {
  const image = coordinates(48, 40);
  const a = shuffleControl(image, { seed: 3, f: 16 });
  assert.deepEqual(a.data, shuffleControl(image, { seed: 3, f: 16 }).data);
  assert.notDeepEqual(a.data, shuffleControl(image, { seed: 4, f: 16 }).data);
  assert.notDeepEqual(a.data, shuffleControl(image, { seed: 3, f: 8 }).data);
  assert.deepEqual([a.width, a.height, a.channels], [48, 40, 3]);
});

Deno.test("shuffleControl() warps over the whole image: the fields span [0, W-1] and [0, H-1]", () => {
  // make_noise_disk normalises each field to exactly [0, 1], so some pixel samples column 0 and
  // some samples column W - 1 (R = x is constant down each column, so y does not blur it).
  const image = coordinates(40, 30);
  for (const seed of [0, 1, 12345]) {
    const out = shuffleControl(image, { seed, f: 16 });
    const r = out.data.filter((_, i) => i % 3 === 0);
    const g = out.data.filter((_, i) => i % 3 === 1);
    assert.equal(Math.min(...r), 0);
    assert.equal(Math.max(...r), 39);
    assert.equal(Math.min(...g), 0);
    assert.equal(Math.max(...g), 29);
    assert.ok(out.data.filter((_, i) => i % 3 === 2).every((v) => v === 7));
  }
});

Deno.test("shuffleControl() fields are smooth: neighbours sample nearby places", () => {
  const image = coordinates(64, 64);
  const out = shuffleControl(image, { seed: 9, f: 32 });
  let maxStep = 0;
  for (let y = 0; y < 64; y++) {
    for (let x = 1; x < 64; x++) {
      const i = (y * 64 + x) * 3;
      maxStep = Math.max(maxStep, Math.abs(out.data[i]! - out.data[i - 3]!));
    }
  }
  console.log(`largest step between horizontal neighbours: ${maxStep} px`);
  assert.ok(maxStep <= 8);
});

Deno.test("the shuffle preprocessor validates seed and f", async () => {
  const image = coordinates(8, 8);
  await assert.rejects(() => shufflePreprocessor.run(image, { seed: -1 }), RangeError);
  await assert.rejects(() => shufflePreprocessor.run(image, { seed: 2 ** 32 }), RangeError);
  await assert.rejects(() => shufflePreprocessor.run(image, { f: 0 }), RangeError);
  await assert.rejects(() => shufflePreprocessor.run(image, { f: 2.5 }), RangeError);
  // f larger than the image is fine (a 2x2 grid).
  assert.equal((await shufflePreprocessor.run(image, { f: 256 })).data.length, 8 * 8 * 3);
});
