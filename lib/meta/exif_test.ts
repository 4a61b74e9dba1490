import assert from "node:assert/strict";
import {
  buildExif,
  decodeUserComment,
  encodeUserComment,
  parseExif,
  readExifFields,
} from "./exif.ts";
import { concatBytes, encodeLatin1, encodeUtf16 } from "./text.ts";

const UNICODE = encodeLatin1("UNICODE\0");

Deno.test("decodeUserComment() reads UTF-16 in either byte order, whatever the TIFF order", () => {
  for (const text of ["Steps: 20, Seed: 1", "テスト日本語", "mixed テスト text"]) {
    for (const le of [false, true]) {
      const value = concatBytes([UNICODE, encodeUtf16(text, le)]);
      assert.equal(decodeUserComment(value, true), text, `le=${le} in II TIFF: ${text}`);
      assert.equal(decodeUserComment(value, false), text, `le=${le} in MM TIFF: ${text}`);
    }
  }
  const bom = concatBytes([UNICODE, Uint8Array.of(0xff, 0xfe), encodeUtf16("ok", true)]);
  assert.equal(decodeUserComment(bom, false), "ok");
  assert.equal(
    decodeUserComment(concatBytes([encodeLatin1("ASCII\0\0\0"), encodeLatin1("hi\0")]), false),
    "hi",
  );
  assert.equal(decodeUserComment(encodeLatin1("bare text"), false), "bare text");
});

Deno.test("buildExif() writes piexif's layout and parseExif() reads it back", () => {
  const tiff = buildExif(undefined, { userComment: "a, b\nSteps: 1" });
  // "MM\0*", IFD0 at 8 with one entry (ExifIFD pointer -> 26), Exif IFD with UserComment.
  assert.deepEqual([...tiff.subarray(0, 10)], [0x4d, 0x4d, 0, 0x2a, 0, 0, 0, 8, 0, 1]);
  assert.deepEqual([...tiff.subarray(10, 22)], [0x87, 0x69, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26]);
  assert.deepEqual(readExifFields(parseExif(tiff)), { userComment: "a, b\nSteps: 1" });
  assert.deepEqual(encodeUserComment("A").subarray(8), Uint8Array.of(0, 0x41));
});

Deno.test("buildExif() keeps little-endian tags, byte-swapped into big-endian", () => {
  // II TIFF: IFD0 with Make (ASCII "Nikon\0", 6 bytes at offset 38) and Orientation SHORT 6.
  const t = new Uint8Array(44);
  const v = new DataView(t.buffer);
  t.set(encodeLatin1("II*\0"));
  v.setUint32(4, 8, true);
  v.setUint16(8, 2, true);
  v.setUint16(10, 0x010f, true);
  v.setUint16(12, 2, true);
  v.setUint32(14, 6, true);
  v.setUint32(18, 38, true);
  v.setUint16(22, 0x0112, true);
  v.setUint16(24, 3, true);
  v.setUint32(26, 1, true);
  v.setUint16(30, 6, true);
  t.set(encodeLatin1("Nikon\0"), 38);
  const base = parseExif(t);
  const rebuilt = parseExif(buildExif(base, { userComment: "x" }));
  assert.equal(rebuilt.littleEndian, false);
  assert.equal(readExifFields(rebuilt).make, "Nikon");
  const orientation = rebuilt.entries.find((e) => e.tag === 0x0112)!;
  assert.deepEqual([...orientation.value], [0, 6]);
  assert.equal(readExifFields(rebuilt).userComment, "x");
});

Deno.test("parseExif() is bounded on hostile data: loops, huge counts, bad offsets", () => {
  const t = new Uint8Array(40);
  const v = new DataView(t.buffer);
  t.set(encodeLatin1("MM\0*"));
  v.setUint32(4, 8);
  v.setUint16(8, 2);
  v.setUint16(10, 0x8769); // Exif IFD pointer back to IFD0 itself
  v.setUint16(12, 4);
  v.setUint32(14, 1);
  v.setUint32(18, 8);
  v.setUint16(22, 0x010e); // ImageDescription pointing far outside
  v.setUint16(24, 2);
  v.setUint32(26, 100000);
  v.setUint32(34, 0); // no next IFD
  const warnings: string[] = [];
  const exif = parseExif(t, warnings);
  assert.equal(exif.entries.length, 1);
  assert.equal(warnings.length, 2);
  const huge = t.slice();
  new DataView(huge.buffer).setUint16(8, 60000);
  assert.equal(parseExif(huge, []).entries.length, 0);
  assert.throws(() => parseExif(encodeLatin1("XX*\0\0\0\0\x08")), SyntaxError);
});
