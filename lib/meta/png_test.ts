import assert from "node:assert/strict";
import {
  decodeTextChunk,
  encodeChunk,
  encodeTextChunk,
  PNG_SIGNATURE,
  readPngChunks,
} from "./png.ts";
import { makePng, textData } from "./testing.ts";
import { concatBytes, encodeLatin1, encodeUtf8 } from "./text.ts";
import { deflateZlib } from "./zlib.ts";

function decodeEncoded(chunk: Uint8Array) {
  const file = readPngChunks(concatBytes([PNG_SIGNATURE, chunk]), { lenient: true });
  const c = file.chunks[0]!;
  assert.ok(c.crcOk, "encoded chunk must carry a correct CRC");
  return decodeTextChunk(c.type as "tEXt" | "zTXt" | "iTXt", c.data);
}

Deno.test("encodeTextChunk() picks tEXt, zTXt, iTXt and compressed iTXt and decodes back", () => {
  const cases: Array<[string, boolean, string, boolean]> = [
    ["café, naïve", false, "tEXt", false],
    ["café, naïve", true, "zTXt", true],
    ["日本語のプロンプト, 🦊", false, "iTXt", false],
    ["日本語のプロンプト, 🦊", true, "iTXt", true],
  ];
  for (const [text, compress, type, compressed] of cases) {
    const decoded = decodeEncoded(encodeTextChunk("Comment", text, { compress }));
    assert.equal(decoded.type, type);
    assert.equal(decoded.compressed, compressed);
    assert.equal(decoded.keyword, "Comment");
    assert.equal(decoded.text, text);
  }
});

Deno.test("decodeTextChunk() reads a hand-made iTXt with language and translated keyword", () => {
  const data = concatBytes([
    encodeLatin1("Title"),
    Uint8Array.of(0, 1, 0),
    encodeLatin1("ja"),
    Uint8Array.of(0),
    encodeUtf8("題名"),
    Uint8Array.of(0),
    deflateZlib(encodeUtf8("狐の絵")),
  ]);
  const t = decodeTextChunk("iTXt", data);
  assert.deepEqual(t, {
    type: "iTXt",
    keyword: "Title",
    text: "狐の絵",
    compressed: true,
    language: "ja",
    translatedKeyword: "題名",
  });
});

Deno.test("decodeTextChunk() reads tEXt as Latin-1, not UTF-8 or windows-1252", () => {
  const t = decodeTextChunk("tEXt", Uint8Array.of(0x6b, 0, 0xe9, 0x80, 0xff));
  assert.equal(t.text, "\u00e9\u0080\u00ff");
});

Deno.test("decodeTextChunk() caps zTXt decompression (bomb) with a RangeError", () => {
  const bomb = concatBytes([
    encodeLatin1("bomb"),
    Uint8Array.of(0, 0),
    deflateZlib(new Uint8Array(4 << 20)),
  ]);
  assert.ok(bomb.length < 10_000);
  assert.throws(() => decodeTextChunk("zTXt", bomb, { maxBytes: 1 << 20 }), RangeError);
  assert.equal(decodeTextChunk("zTXt", bomb, { maxBytes: 8 << 20 }).text.length, 4 << 20);
});

Deno.test("decodeTextChunk() rejects malformed chunks with SyntaxError", () => {
  assert.throws(() => decodeTextChunk("tEXt", encodeLatin1("nokeywordterminator")), SyntaxError);
  assert.throws(
    () => decodeTextChunk("zTXt", concatBytes([encodeLatin1("k"), Uint8Array.of(0, 0, 1, 2, 3)])),
    SyntaxError,
  );
  assert.throws(
    () => decodeTextChunk("iTXt", concatBytes([encodeLatin1("k"), Uint8Array.of(0, 0, 0)])),
    SyntaxError,
  );
});

Deno.test("encodeTextChunk() refuses bad keywords and NUL in text", () => {
  assert.throws(() => encodeTextChunk("", "x"), RangeError);
  assert.throws(() => encodeTextChunk("a".repeat(80), "x"), RangeError);
  assert.throws(() => encodeTextChunk(" lead", "x"), RangeError);
  assert.throws(() => encodeTextChunk("日本", "x"), RangeError);
  assert.throws(() => encodeTextChunk("k", "a\0b"), RangeError);
});

Deno.test("readPngChunks() lists chunks with offsets and verified CRCs", () => {
  const png = makePng([["tEXt", textData("k", "v")]], { idatParts: 3 });
  const file = readPngChunks(png);
  assert.deepEqual(file.chunks.map((c) => c.type), [
    "IHDR",
    "tEXt",
    "IDAT",
    "IDAT",
    "IDAT",
    "IEND",
  ]);
  assert.ok(file.chunks.every((c) => c.crcOk));
  assert.equal(file.chunks[0]!.offset, 8);
  assert.deepEqual(file.warnings, []);
});

Deno.test("readPngChunks() rejects a bad CRC, and reads on with lenient", () => {
  const png = makePng([["tEXt", textData("k", "v")]]);
  png[33 + 8] = png[33 + 8]! ^ 0xff; // first data byte of the tEXt chunk (IHDR occupies bytes 8..32)
  assert.throws(() => readPngChunks(png), /fails its CRC check/);
  const file = readPngChunks(png, { lenient: true });
  assert.equal(file.chunks.length, 4);
  assert.equal(file.chunks[1]!.crcOk, false);
  assert.match(file.warnings[0]!, /"tEXt" at byte 33 fails its CRC check/);
});

Deno.test("readPngChunks() rejects truncation and a chunk longer than the file", () => {
  const png = makePng([["tEXt", textData("k", "v")]]);
  assert.throws(() => readPngChunks(png.subarray(0, png.length - 12)), /IEND chunk is missing/);
  assert.throws(() => readPngChunks(png.subarray(0, png.length - 5)), /truncated/);
  const long = png.slice();
  new DataView(long.buffer).setUint32(33, 0x7fff0000);
  assert.throws(() => readPngChunks(long), /claims 2147418112 bytes/);
  const lenient = readPngChunks(long, { lenient: true });
  assert.deepEqual(lenient.chunks.map((c) => c.type), ["IHDR"]);
  assert.equal(lenient.warnings.length, 1);
  assert.throws(() => readPngChunks(new TextEncoder().encode("GIF89a....")), /not a PNG/);
  assert.throws(() => readPngChunks(PNG_SIGNATURE), /no chunks/);
});

Deno.test("readPngChunks() walks 100k tiny chunks", () => {
  const one = encodeChunk("tEXt", textData("k", "v"));
  const many = new Uint8Array(one.length * 100_000);
  for (let i = 0; i < 100_000; i++) many.set(one, i * one.length);
  const png = makePng([], {}).slice(); // valid file, then splice the chunks in before IEND
  const body = concatBytes([png.subarray(0, png.length - 12), many, png.subarray(png.length - 12)]);
  // No timing assertion (the suite runs on loaded machines); a quadratic walk shows in the
  // suite's own duration.
  const file = readPngChunks(body);
  assert.equal(file.chunks.length, 100_003);
});
