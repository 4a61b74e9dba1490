import assert from "node:assert/strict";
import sharp from "sharp";
import type { RawImage } from "../image/codec.ts";
import { encodeAnimationWithMetadata } from "./animation.ts";
import { apngDelay, assembleApng } from "./apng.ts";
import { addGifComments, readGifComments } from "./gif.ts";
import { readPngChunks } from "./png.ts";
import { readMetadata } from "./read.ts";

function frame(k: number): RawImage {
  const data = new Uint8Array(8 * 6 * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + k * 40) % 256;
  return { width: 8, height: 6, channels: 3, data };
}

const FRAMES = [0, 1, 2, 3, 4].map(frame);
const META = {
  infotext: "a cat, ünïcode\nSteps: 2, Seed: 1, Size: 8x6",
  job: { command: "animate", prompt: "a cat, ünïcode", frames: 5, fps: 10 },
};

for (const format of ["webp", "gif", "apng"] as const) {
  Deno.test(`encodeAnimationWithMetadata() ${format}: the Job reads back, five frames`, async () => {
    const bytes = await encodeAnimationWithMetadata(FRAMES, format, META, { fps: 10 });
    const meta = readMetadata(bytes);
    assert.deepEqual(meta.job, META.job);
    assert.ok(meta.generators.includes("denoise"));
    if (format === "webp") assert.equal(meta.a1111?.prompt, "a cat, ünïcode");
    if (format === "apng") {
      assert.equal(meta.a1111?.prompt, "a cat, ünïcode");
      const types = readPngChunks(bytes).chunks.map((c) => c.type);
      assert.equal(types.filter((t) => t === "fcTL").length, 5);
      assert.equal(types.indexOf("acTL") < types.indexOf("IDAT"), true);
      // libvips reads the default image (frame 0).
      const { data } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual(new Uint8Array(data), FRAMES[0]!.data);
    } else {
      const info = await sharp(bytes, { animated: true }).metadata();
      assert.equal(info.pages, 5);
      assert.deepEqual(info.delay, new Array(5).fill(100));
    }
  });
}

Deno.test("encodeAnimationWithMetadata() gif: the infotext and the Job are two comment extensions", async () => {
  const gif = await encodeAnimationWithMetadata(FRAMES, "gif", META, { fps: 10 });
  const comments = readGifComments(gif);
  assert.equal(comments[0], META.infotext);
  assert.equal(comments[1], `denoise:${JSON.stringify(META.job)}`);
});

Deno.test("addGifComments() splits long comments into 255-byte blocks and keeps the image", async () => {
  const gif = await encodeAnimationWithMetadata(FRAMES, "gif", META, { fps: 10 });
  const long = "x".repeat(1000);
  const out = addGifComments(gif, [long]);
  assert.deepEqual(readGifComments(out).slice(0, 1), [long]);
  const before = await sharp(gif, { animated: true }).raw().toBuffer();
  const after = await sharp(out, { animated: true }).raw().toBuffer();
  assert.deepEqual(after, before);
});

Deno.test("apngDelay() stores 1/fps, or milliseconds for a fractional rate", () => {
  assert.deepEqual(apngDelay(8), [1, 8]);
  assert.deepEqual(apngDelay(12.5), [80, 1000]);
  assert.throws(() => apngDelay(0), RangeError);
});

Deno.test("assembleApng() refuses frames of different sizes", async () => {
  const { encodeImage } = await import("../image/codec.ts");
  const a = await encodeImage(frame(0), "png");
  const b = await encodeImage(
    { width: 4, height: 6, channels: 3, data: new Uint8Array(72) },
    "png",
  );
  assert.throws(() => assembleApng([a, b], { fps: 8 }), /frame 1's IHDR differs/);
});
