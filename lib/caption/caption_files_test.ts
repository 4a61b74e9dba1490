import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { InputError, IoError, UsageError } from "../errors.ts";
import { decodeImage, encodeImage, type RawImage } from "../image/codec.ts";
import { readJpegSegments } from "../meta/jpeg.ts";
import { readMetadata } from "../meta/read.ts";
import { chunkList, idatBytes } from "../meta/testing.ts";
import { createRandomBlip, TINY_BLIP_CONFIG } from "../models/random_blip.ts";
import { BlipCaptionModel } from "./blip.ts";
import { captionFiles } from "./caption_files.ts";
import type { ImageInput } from "./image_inputs.ts";

const modelDir = await Deno.makeTempDir({ prefix: "caption-files-model-" });
await createRandomBlip(TINY_BLIP_CONFIG, modelDir);

function gradient(width: number, height: number, step: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * step + (i >> 5)) & 0xff;
  return { width, height, channels: 3, data };
}

async function withFolder(fn: (dir: string, input: (name: string) => ImageInput) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "caption-files-" });
  try {
    await fn(dir, (name) => ({ path: join(dir, name), label: name }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("captionFiles() --write-meta leaves pixel data byte-identical (PNG IDAT, JPEG scan, WebP)", async () => {
  const model = await BlipCaptionModel.load(modelDir);
  try {
    await withFolder(async (dir, input) => {
      const png = await encodeImage(gradient(40, 30, 7), "png");
      const jpeg = await encodeImage(gradient(30, 20, 5), "jpeg");
      const webp = await encodeImage(gradient(24, 24, 3), "webp");
      await Deno.writeFile(join(dir, "a.png"), png);
      await Deno.writeFile(join(dir, "b.jpg"), jpeg);
      await Deno.writeFile(join(dir, "c.webp"), webp);
      const results = await captionFiles(model, [input("a.png"), input("b.jpg"), input("c.webp")], {
        writeMeta: true,
        sidecar: true,
      });
      for (const r of results) {
        assert.equal(r.error, undefined, r.error?.message);
        assert.equal(r.metaWritten, true);
        assert.equal(await Deno.readTextFile(r.sidecar!), r.caption + "\n");
      }
      const outPng = await Deno.readFile(join(dir, "a.png"));
      assert.deepEqual(idatBytes(outPng), idatBytes(png));
      const notText = (b: Uint8Array) => chunkList(b).filter(([t]) => t !== "iTXt");
      assert.deepEqual(notText(outPng), notText(png));
      assert.equal(
        readMetadata(outPng).texts.find((t) => t.keyword === "Description")?.text,
        results[0]!.caption,
      );
      const outJpeg = await Deno.readFile(join(dir, "b.jpg"));
      const scan = (b: Uint8Array) => b.subarray(readJpegSegments(b).scanOffset);
      assert.deepEqual(scan(outJpeg), scan(jpeg));
      assert.equal(readMetadata(outJpeg).exif?.imageDescription, results[1]!.caption);
      const outWebp = await Deno.readFile(join(dir, "c.webp"));
      assert.deepEqual(
        (await decodeImage(outWebp, { channels: 4 })).data,
        (await decodeImage(webp, { channels: 4 })).data,
      );
      assert.equal(readMetadata(outWebp).exif?.imageDescription, results[2]!.caption);
      // No temporary files are left behind.
      const names = [];
      for await (const e of Deno.readDir(dir)) names.push(e.name);
      assert.deepEqual(names.sort(), ["a.png", "a.txt", "b.jpg", "b.txt", "c.txt", "c.webp"]);
    });
  } finally {
    await model.release();
  }
});

Deno.test("captionFiles() goes on past bad inputs; sampling seeds follow the input index", async () => {
  const model = await BlipCaptionModel.load(modelDir);
  try {
    await withFolder(async (dir, input) => {
      await Deno.writeFile(join(dir, "a.png"), await encodeImage(gradient(32, 32, 7), "png"));
      await Deno.writeTextFile(join(dir, "bad.png"), "not an image");
      await Deno.writeFile(join(dir, "c.png"), await encodeImage(gradient(20, 40, 9), "png"));
      const gif = new Uint8Array(
        await sharp(await encodeImage(gradient(16, 16, 3), "png")).gif().toBuffer(),
      );
      await Deno.writeFile(join(dir, "d.gif"), gif);
      const inputs = [
        input("a.png"),
        input("bad.png"),
        input("missing.png"),
        input("c.png"),
        input("d.gif"),
      ];
      const seen: number[] = [];
      const results = await captionFiles(model, inputs, {
        doSample: true,
        seed: 40,
        batchSize: 2,
        writeMeta: true,
        onResult: (r) => void seen.push(r.index),
      });
      assert.deepEqual(seen, [0, 1, 2, 3, 4]);
      assert.ok(results[0]!.caption !== undefined && results[0]!.error === undefined);
      assert.ok(results[1]!.error instanceof InputError, String(results[1]!.error));
      assert.ok(results[2]!.error instanceof IoError, String(results[2]!.error));
      assert.ok(results[3]!.caption !== undefined && results[3]!.error === undefined);
      // A GIF is captioned, but cannot hold the caption.
      assert.ok(results[4]!.caption !== undefined);
      assert.ok(results[4]!.error instanceof InputError);
      assert.match(results[4]!.error!.message, /Cannot store the caption in/);
      assert.deepEqual(await Deno.readFile(join(dir, "d.gif")), gif);
      // Input 3 sampled with seed 40 + 3, whatever failed before it.
      const alone = await captionFiles(model, [input("c.png")], { doSample: true, seed: 43 });
      assert.equal(alone[0]!.caption, results[3]!.caption);
      // (and the seed matters: the batch position's seed, 41, gives another caption)
      const shifted = await captionFiles(model, [input("c.png")], { doSample: true, seed: 41 });
      assert.notEqual(shifted[0]!.caption, results[3]!.caption);
    });
  } finally {
    await model.release();
  }
});

Deno.test("captionFiles() refuses sidecars for stdin and names sidecar collisions", async () => {
  const model = await BlipCaptionModel.load(modelDir);
  try {
    await assert.rejects(
      () => captionFiles(model, [{ label: "stdin" }], { sidecar: true }),
      UsageError,
    );
    await withFolder(async (dir, input) => {
      await Deno.writeFile(join(dir, "x.png"), await encodeImage(gradient(8, 8, 1), "png"));
      await Deno.writeFile(join(dir, "x.jpg"), await encodeImage(gradient(8, 8, 2), "jpeg"));
      const results = await captionFiles(model, [input("x.jpg"), input("x.png")], {
        sidecar: true,
      });
      assert.equal(results[0]!.sidecar, join(dir, "x.txt"));
      assert.match(results[1]!.error!.message, /already holds the caption of/);
      assert.equal(await Deno.readTextFile(join(dir, "x.txt")), results[0]!.caption + "\n");
    });
  } finally {
    await model.release();
  }
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(modelDir, { recursive: true });
  } catch {
    // already gone
  }
});
