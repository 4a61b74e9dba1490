import assert from "node:assert/strict";
import sharp from "sharp";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { decodeImage, encodeImage, type RawImage } from "../image/codec.ts";
import { readJpegSegments } from "./jpeg.ts";
import { encodeTextChunk } from "./png.ts";
import { readMetadata } from "./read.ts";
import { chunkList, idatBytes, makePng, textData } from "./testing.ts";
import { concatBytes, encodeLatin1, encodeUtf8 } from "./text.ts";
import { readWebpChunks } from "./webp.ts";
import { writeMetadata } from "./write.ts";
import { deflateZlib } from "./zlib.ts";

function rawOf(type: "tEXt" | "zTXt" | "iTXt", keyword: string, text: string, compress = false) {
  const chunk = encodeTextChunk(keyword, text, { compress });
  assert.equal(new TextDecoder().decode(chunk.subarray(4, 8)), type);
  return chunk.subarray(8, chunk.length - 4);
}

function gradient(width: number, height: number, channels: 3 | 4 = 3): RawImage {
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) & 0xff;
  return { width, height, channels, data };
}

Deno.test("writeMetadata() on PNG keeps every other chunk and each IDAT byte, in order", () => {
  const png = makePng([
    ["pHYs", Uint8Array.of(0, 0, 11, 19, 0, 0, 11, 19, 1)],
    ["tEXt", textData("parameters", "old")],
    ["zTXt", rawOf("zTXt", "Comment", "zipped", true)],
    ["iTXt", rawOf("iTXt", "Title", "題名")],
  ], { idatParts: 4, after: [["tEXt", textData("late", "after IDAT")]] });
  const before = chunkList(png);
  const out = writeMetadata(png, {
    set: { parameters: "new, 日本", note: "hi" },
    delete: ["Comment"],
  });
  const after = chunkList(out);
  const expected = before.filter(([type], i) => !(i === 2 || i === 3) || type === "x");
  // Removed: old "parameters" (index 2) and "Comment" (index 3); new chunks before the first IDAT.
  const firstIdat = expected.findIndex(([t]) => t === "IDAT");
  const fresh = chunkList(
    writeMetadata(makePng(), { set: { parameters: "new, 日本", note: "hi" } }),
  )
    .filter(([t]) => t === "iTXt" || t === "tEXt");
  expected.splice(firstIdat, 0, ...fresh);
  assert.deepEqual(after, expected);
  assert.deepEqual(idatBytes(out), idatBytes(png));
  const meta = readMetadata(out);
  assert.deepEqual(meta.texts.map((t) => [t.type, t.keyword, t.text]), [
    ["iTXt", "Title", "題名"],
    ["iTXt", "parameters", "new, 日本"],
    ["tEXt", "note", "hi"],
    ["tEXt", "late", "after IDAT"],
  ]);
});

Deno.test("writeMetadata() on PNG: compress, strip, no-op and refusal of damaged files", () => {
  const png = makePng([["tEXt", textData("a", "1")], ["eXIf", new Uint8Array(8)]]);
  const zipped = readMetadata(
    writeMetadata(png, { set: { b: "latin", c: "ü→" } }, { compress: true }),
  );
  assert.deepEqual(zipped.texts.map((t) => [t.type, t.compressed]), [
    ["tEXt", false],
    ["zTXt", true],
    ["iTXt", true],
  ]);
  const stripped = writeMetadata(png, { strip: true, set: { d: "x" } });
  assert.deepEqual(chunkList(stripped).map(([t]) => t), ["IHDR", "tEXt", "IDAT", "IEND"]);
  assert.deepEqual(writeMetadata(png, {}), png);
  const bad = png.slice();
  bad[41] = bad[41]! ^ 1;
  assert.throws(() => writeMetadata(bad, { set: { k: "v" } }), /fails its CRC check/);
  assert.throws(() => writeMetadata(png.subarray(0, png.length - 12), {}), /IEND chunk is missing/);
  assert.throws(() => writeMetadata(png, { set: { "": "v" } }), RangeError);
  const gif = encodeLatin1("GIF89a\x01\x00\x01\x00");
  assert.throws(() => writeMetadata(gif, { set: { k: "v" } }), SyntaxError);
  assert.throws(() => writeMetadata(encodeUtf8("hello"), {}), SyntaxError);
});

Deno.test("writeMetadata() text in a sharp-made PNG is read by sharp (libvips) and pixels stay", async () => {
  const png = await encodeImage(gradient(16, 8, 4), "png");
  const out = writeMetadata(png, {
    set: { parameters: "a fox\nSteps: 20, Seed: 1, Size: 16x8", t: "狐の絵" },
  });
  const info = await sharp(out).metadata();
  assert.deepEqual(info.comments, [
    { keyword: "parameters", text: "a fox\nSteps: 20, Seed: 1, Size: 16x8" },
    { keyword: "t", text: "狐の絵" }, // iTXt; libvips decodes tEXt as UTF-8, so Latin-1 is not checked here
  ]);
  const a = await decodeImage(png, { channels: 4 });
  const b = await decodeImage(out, { channels: 4 });
  assert.deepEqual(b.data, a.data);
  const zipped = writeMetadata(png, { set: { z: "zipped text" } }, { compress: true });
  assert.deepEqual((await sharp(zipped).metadata()).comments, [{
    keyword: "z",
    text: "zipped text",
  }]);
});

Deno.test("writeMetadata() on JPEG writes an A1111 UserComment and copies the scan unchanged", async () => {
  const jpeg = await encodeImage(gradient(24, 16), "jpeg");
  const params =
    "a fox, テスト\nNegative prompt: blur\nSteps: 20, Sampler: Euler a, Seed: 5, Size: 24x16";
  const out = writeMetadata(jpeg, { set: { parameters: params } });
  const meta = readMetadata(out);
  assert.equal(meta.exif?.userComment, params);
  assert.equal(meta.a1111?.summary.seed, 5);
  const scan = (b: Uint8Array) => b.subarray(readJpegSegments(b).scanOffset);
  assert.deepEqual(scan(out), scan(jpeg));
  // The segment is laid out as piexif writes it: Exif header, big-endian TIFF, UNICODE prefix.
  const seg = readJpegSegments(out).segments.find((s) => s.marker === 0xe1)!;
  assert.equal(new TextDecoder("latin1").decode(seg.data.subarray(0, 10)), "Exif\0\0MM\0*");
  assert.ok(new TextDecoder("latin1").decode(seg.data).includes("UNICODE\0\0a\0 \0f"));
  assert.deepEqual((await decodeImage(out)).data, (await decodeImage(jpeg)).data);
  const removed = readMetadata(writeMetadata(out, { delete: ["parameters"] }));
  assert.equal(removed.exif, undefined);
  assert.throws(() => writeMetadata(jpeg, { set: { note: "x" } }), /JPEG cannot hold "note"/);
});

Deno.test("writeMetadata() on JPEG keeps other EXIF tags (little-endian, from sharp)", async () => {
  const jpeg = new Uint8Array(
    await sharp(await encodeImage(gradient(8, 8), "jpeg"))
      .withExif({ IFD0: { Make: "Canon", Model: "EOS 5D", Software: "denoise test" } })
      .toBuffer(),
  );
  const out = writeMetadata(jpeg, { set: { parameters: "Steps: 20, Seed: 2, Sampler: Euler" } });
  const meta = readMetadata(out);
  assert.equal(meta.exif?.make, "Canon");
  assert.equal(meta.exif?.model, "EOS 5D");
  assert.equal(meta.exif?.software, "denoise test");
  assert.equal(meta.a1111?.summary.seed, 2);
  const fromSharp = await sharp(out).metadata();
  assert.equal(fromSharp.width, 8);
  assert.ok(fromSharp.exif && fromSharp.exif.length > 0);
  const stripped = readMetadata(writeMetadata(out, { strip: true }));
  assert.equal(stripped.exif, undefined);
});

Deno.test("writeMetadata() on WebP adds VP8X + EXIF to a simple file, readable by sharp", async () => {
  for (const channels of [3, 4] as const) {
    const webp = await encodeImage(gradient(20, 10, channels), "webp");
    const out = writeMetadata(webp, {
      set: { parameters: "a cat\nSteps: 9, Seed: 3, Size: 20x10" },
    });
    const chunks = readWebpChunks(out).map((c) => c.fourcc);
    assert.equal(chunks[0], "VP8X");
    assert.equal(chunks[chunks.length - 1], "EXIF");
    const meta = readMetadata(out);
    assert.equal(meta.a1111?.summary.steps, 9);
    assert.deepEqual([meta.width, meta.height], [20, 10]);
    const a = await decodeImage(webp, { channels: 4 });
    const b = await decodeImage(out, { channels: 4 });
    assert.deepEqual(b.data, a.data);
    const back = writeMetadata(out, { strip: true });
    assert.equal(readMetadata(back).exif, undefined);
    assert.deepEqual((await decodeImage(back, { channels: 4 })).data, a.data);
  }
});

Deno.test({
  name: "writeMetadata() on real A1111 files keeps every chunk and the JPEG/WebP image data",
  ignore: !hasShared,
  fn() {
    const png = Deno.readFileSync(
      sharedPath("fixtures/real/a1111/a1111_v1.4.0_regional_prompter_break.png"),
    );
    const out = writeMetadata(png, { set: { note: "kept" } });
    const before = chunkList(png);
    const after = chunkList(out);
    assert.equal(after.length, before.length + 1);
    assert.deepEqual(after.filter(([t, d]) => !(t === "tEXt" && d.startsWith("6e6f7465"))), before);
    const jpg = Deno.readFileSync(sharedPath("fixtures/real/a1111/a1111_v1.10.1_usercomment.jpg"));
    const edited = writeMetadata(jpg, { set: { parameters: "x\nSteps: 1, Seed: 2, Size: 3x4" } });
    assert.equal(readMetadata(edited).a1111?.summary.seed, 2);
    const scan = (b: Uint8Array) => b.subarray(readJpegSegments(b).scanOffset);
    assert.deepEqual(scan(edited), scan(jpg));
    const webp = Deno.readFileSync(
      sharedPath(
        "fixtures/comfyui/comfyui_flux_kontext_exif.webp".replace("fixtures/", "fixtures/real/"),
      ),
    );
    const w2 = writeMetadata(webp, { set: { parameters: "y\nSteps: 1, Seed: 7, Size: 3x4" } });
    const m2 = readMetadata(w2);
    assert.equal(m2.a1111?.summary.seed, 7);
    assert.match(m2.exif?.make ?? "", /^workflow:/, "other EXIF tags are kept");
    const vp8 = (b: Uint8Array) => readWebpChunks(b).find((c) => c.fourcc === "VP8 ")!.data;
    assert.deepEqual(vp8(w2), vp8(webp));
  },
});

Deno.test("zTXt written by writeMetadata() inflates with a plain zlib reader", () => {
  const out = writeMetadata(makePng(), { set: { k: "v".repeat(1000) } }, { compress: true });
  const meta = readMetadata(out);
  assert.equal(meta.texts[0]?.text, "v".repeat(1000));
  assert.ok(out.length < makePng().length + 100);
  void concatBytes;
  void deflateZlib;
});

Deno.test("writeMetadata() description: PNG Description iTXt (replaced, not added), IDAT kept", () => {
  const png = makePng([["tEXt", textData("Description", "old caption")], [
    "tEXt",
    textData("parameters", "p"),
  ]], { idatParts: 3 });
  const out = writeMetadata(png, { description: "a cat on a mat" });
  assert.deepEqual(idatBytes(out), idatBytes(png));
  const meta = readMetadata(out);
  assert.deepEqual(meta.texts.map((t) => [t.type, t.keyword, t.text]), [
    ["tEXt", "parameters", "p"],
    ["iTXt", "Description", "a cat on a mat"],
  ]);
  // Everything but the text chunks is byte-identical and in order.
  const kept = (b: Uint8Array) => chunkList(b).filter(([t]) => t !== "tEXt" && t !== "iTXt");
  assert.deepEqual(kept(out), kept(png));
  const again = readMetadata(writeMetadata(out, { description: "ein Hund, 犬" }));
  assert.deepEqual(again.texts.filter((t) => t.keyword === "Description").map((t) => t.text), [
    "ein Hund, 犬",
  ]);
});

Deno.test("writeMetadata() description: JPEG/WebP EXIF ImageDescription, scan and pixels kept", async () => {
  const jpeg = new Uint8Array(
    await sharp(await encodeImage(gradient(16, 8), "jpeg"))
      .withExif({ IFD0: { Make: "Canon", ImageDescription: "old" } })
      .toBuffer(),
  );
  const out = writeMetadata(jpeg, { description: "a red fox, 狐" });
  const meta = readMetadata(out);
  assert.equal(meta.exif?.imageDescription, "a red fox, 狐");
  assert.equal(meta.exif?.make, "Canon");
  const scan = (b: Uint8Array) => b.subarray(readJpegSegments(b).scanOffset);
  assert.deepEqual(scan(out), scan(jpeg));
  assert.deepEqual((await decodeImage(out)).data, (await decodeImage(jpeg)).data);
  // An A1111 UserComment already there survives a description edit.
  const both = readMetadata(
    writeMetadata(writeMetadata(jpeg, { set: { parameters: "Steps: 3" } }), { description: "d" }),
  );
  assert.equal(both.exif?.userComment, "Steps: 3");
  assert.equal(both.exif?.imageDescription, "d");
  const webp = await encodeImage(gradient(12, 6, 4), "webp");
  const w = writeMetadata(webp, { description: "a webp caption" });
  assert.equal(readMetadata(w).exif?.imageDescription, "a webp caption");
  assert.deepEqual(
    (await decodeImage(w, { channels: 4 })).data,
    (await decodeImage(webp, { channels: 4 })).data,
  );
});
