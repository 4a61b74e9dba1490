/**
 * Builders for hand-made test images (tiny PNGs with chosen chunks), shared by the meta tests.
 * Pure byte assembly; nothing here reads files.
 *
 * @module
 */
import { encodeChunk, PNG_SIGNATURE, readPngChunks } from "./png.ts";
import { concatBytes, encodeLatin1 } from "./text.ts";
import { deflateZlib } from "./zlib.ts";

/** IHDR data for an 8-bit RGB image of the given size. */
export function ihdrData(width: number, height: number): Uint8Array {
  const d = new Uint8Array(13);
  const v = new DataView(d.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  d[8] = 8; // bit depth
  d[9] = 2; // colour type RGB
  return d;
}

/** IDAT data for a `width` x `height` RGB image whose pixels follow a simple pattern. */
export function idatData(width: number, height: number): Uint8Array {
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width * 3; x++) raw[y * (1 + width * 3) + 1 + x] = (x * 7 + y * 13) & 0xff;
  }
  return deflateZlib(raw);
}

/**
 * A valid PNG (IHDR, the given extra chunks before the pixel data, IDAT split in `idatParts`
 * pieces, IEND).
 */
export function makePng(
  extra: Array<[string, Uint8Array]> = [],
  options: {
    width?: number;
    height?: number;
    idatParts?: number;
    after?: Array<[string, Uint8Array]>;
  } = {},
): Uint8Array {
  const width = options.width ?? 4;
  const height = options.height ?? 3;
  const idat = idatData(width, height);
  const parts = options.idatParts ?? 1;
  const step = Math.ceil(idat.length / parts);
  const chunks: Uint8Array[] = [PNG_SIGNATURE, encodeChunk("IHDR", ihdrData(width, height))];
  for (const [type, data] of extra) chunks.push(encodeChunk(type, data));
  for (let i = 0; i < idat.length; i += step) {
    chunks.push(encodeChunk("IDAT", idat.subarray(i, i + step)));
  }
  for (const [type, data] of options.after ?? []) chunks.push(encodeChunk(type, data));
  chunks.push(encodeChunk("IEND", new Uint8Array()));
  return concatBytes(chunks);
}

/** tEXt chunk data. */
export function textData(keyword: string, text: string): Uint8Array {
  return concatBytes([encodeLatin1(keyword), Uint8Array.of(0), encodeLatin1(text)]);
}

/** The chunk list of a PNG as [type, hex of data] pairs, for exact comparisons. */
export function chunkList(png: Uint8Array): Array<[string, string]> {
  return readPngChunks(png).chunks.map((c) => [c.type, hex(c.data)]);
}

/** All IDAT data of a PNG, concatenated. */
export function idatBytes(png: Uint8Array): Uint8Array {
  return concatBytes(readPngChunks(png).chunks.filter((c) => c.type === "IDAT").map((c) => c.data));
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}
