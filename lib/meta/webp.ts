/**
 * WebP RIFF chunk layer: reads the chunk list (VP8/VP8L/VP8X for the size, EXIF and XMP for
 * metadata) and rebuilds a file with metadata chunks replaced, adding or updating the VP8X
 * header whose flags announce them. Image chunks are copied byte for byte.
 * Reference: "WebP Container Specification" (developers.google.com/speed/webp/docs/riff_container).
 *
 * @module
 */
import { concatBytes, decodeLatin1, encodeLatin1 } from "./text.ts";

/** One RIFF chunk of a WebP file. */
export interface WebpChunk {
  /** FourCC, e.g. "VP8 ", "VP8L", "VP8X", "EXIF", "XMP ". */
  fourcc: string;
  /** Chunk payload (a view into the file). */
  data: Uint8Array;
}

/** True when `bytes` starts with a RIFF/WEBP header. */
export function isWebp(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && decodeLatin1(bytes.subarray(0, 4)) === "RIFF" &&
    decodeLatin1(bytes.subarray(8, 12)) === "WEBP";
}

/**
 * Splits a WebP file into chunks. Throws `SyntaxError` for a bad header or a chunk that runs
 * past the end of the file.
 */
export function readWebpChunks(bytes: Uint8Array): WebpChunk[] {
  if (!isWebp(bytes)) throw new SyntaxError("not a WebP file (no RIFF/WEBP header)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const riffEnd = Math.min(bytes.length, 8 + view.getUint32(4, true));
  const chunks: WebpChunk[] = [];
  let at = 12;
  while (at + 8 <= riffEnd) {
    const fourcc = decodeLatin1(bytes.subarray(at, at + 4));
    const size = view.getUint32(at + 4, true);
    if (at + 8 + size > bytes.length) {
      throw new SyntaxError(
        `WebP chunk "${fourcc}" at byte ${at} claims ${size} bytes, past the end of the file`,
      );
    }
    chunks.push({ fourcc, data: bytes.subarray(at + 8, at + 8 + size) });
    at += 8 + size + (size & 1);
  }
  if (chunks.length === 0) throw new SyntaxError("WebP file has no chunks");
  return chunks;
}

/** Canvas size from VP8X, VP8 or VP8L, or undefined. */
export function webpSize(
  chunks: readonly WebpChunk[],
): { width: number; height: number } | undefined {
  for (const c of chunks) {
    const d = c.data;
    if (c.fourcc === "VP8X" && d.length >= 10) {
      return {
        width: 1 + (d[4]! | (d[5]! << 8) | (d[6]! << 16)),
        height: 1 + (d[7]! | (d[8]! << 8) | (d[9]! << 16)),
      };
    }
    if (c.fourcc === "VP8 " && d.length >= 10 && d[3] === 0x9d && d[4] === 0x01 && d[5] === 0x2a) {
      return { width: (d[6]! | (d[7]! << 8)) & 0x3fff, height: (d[8]! | (d[9]! << 8)) & 0x3fff };
    }
    if (c.fourcc === "VP8L" && d.length >= 5 && d[0] === 0x2f) {
      return {
        width: 1 + (d[1]! | ((d[2]! & 0x3f) << 8)),
        height: 1 + ((d[2]! >> 6) | (d[3]! << 2) | ((d[4]! & 0x0f) << 10)),
      };
    }
  }
  return undefined;
}

const FLAG_XMP = 0x04;
const FLAG_EXIF = 0x08;
const FLAG_ALPHA = 0x10;

function encodeRiffChunk(fourcc: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + data.length + (data.length & 1));
  out.set(encodeLatin1(fourcc), 0);
  new DataView(out.buffer).setUint32(4, data.length, true);
  out.set(data, 8);
  return out;
}

/**
 * Assembles a WebP file from chunks, making the VP8X header (added when missing, for a simple
 * lossy or lossless file that gains metadata) announce exactly the EXIF and XMP chunks present.
 * Extended-format order is kept: VP8X first, EXIF and XMP last.
 */
export function writeWebpChunks(chunks: readonly WebpChunk[]): Uint8Array {
  const hasExif = chunks.some((c) => c.fourcc === "EXIF");
  const hasXmp = chunks.some((c) => c.fourcc === "XMP ");
  const body = chunks.filter((c) =>
    c.fourcc !== "VP8X" && c.fourcc !== "EXIF" && c.fourcc !== "XMP "
  );
  const meta = chunks.filter((c) => c.fourcc === "EXIF" || c.fourcc === "XMP ");
  let vp8x = chunks.find((c) => c.fourcc === "VP8X")?.data;
  if (vp8x === undefined && (hasExif || hasXmp)) {
    const size = webpSize(chunks);
    if (size === undefined) throw new SyntaxError("WebP has no VP8/VP8L image chunk to size");
    const header = new Uint8Array(10);
    const lossless = chunks.find((c) => c.fourcc === "VP8L");
    const alpha = lossless !== undefined && lossless.data.length >= 5 &&
      ((lossless.data[4]! >> 4) & 1) === 1;
    header[0] = alpha ? FLAG_ALPHA : 0;
    const w = size.width - 1;
    const h = size.height - 1;
    header.set([
      w & 0xff,
      (w >> 8) & 0xff,
      (w >> 16) & 0xff,
      h & 0xff,
      (h >> 8) & 0xff,
      (h >> 16) & 0xff,
    ], 4);
    vp8x = header;
  }
  const parts: Uint8Array[] = [];
  if (vp8x !== undefined) {
    const header = vp8x.slice();
    header[0] = (header[0]! & ~(FLAG_EXIF | FLAG_XMP)) | (hasExif ? FLAG_EXIF : 0) |
      (hasXmp ? FLAG_XMP : 0);
    parts.push(encodeRiffChunk("VP8X", header));
  }
  for (const c of body) parts.push(encodeRiffChunk(c.fourcc, c.data));
  for (const c of meta) parts.push(encodeRiffChunk(c.fourcc, c.data));
  const payload = concatBytes(parts);
  const out = new Uint8Array(12 + payload.length);
  out.set(encodeLatin1("RIFF"), 0);
  new DataView(out.buffer).setUint32(4, 4 + payload.length, true);
  out.set(encodeLatin1("WEBP"), 8);
  out.set(payload, 12);
  return out;
}
