/**
 * JPEG marker-segment layer: walks the segments before the first scan (SOS), finds the frame
 * size (SOFn), EXIF and XMP APP1 segments and COM comments, and rebuilds a file with the
 * metadata segments replaced while the scan data is copied byte for byte.
 * Reference: ITU-T T.81 Annex B (marker layout); EXIF 2.32 section 4.7.2 (APP1 "Exif\0\0");
 * XMP specification part 3, section 1.1.3 (APP1 "http://ns.adobe.com/xap/1.0/\0").
 *
 * @module
 */
import { decodeLatin1 } from "./text.ts";

/** One marker segment before the scan. */
export interface JpegSegment {
  /** Marker byte (0xE1 for APP1, 0xC0 for SOF0, ...). */
  marker: number;
  /** Offset of the 0xFF marker byte in the file. */
  offset: number;
  /** Total bytes of the segment in the file (marker, length and payload). */
  size: number;
  /** Payload after the 2-byte length (empty for standalone markers). */
  data: Uint8Array;
}

/** A JPEG split at its first scan. */
export interface JpegFile {
  segments: JpegSegment[];
  /** Offset of the SOS marker; everything from here on is copied unchanged. */
  scanOffset: number;
}

/** True when `bytes` starts with a JPEG SOI marker. */
export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** APP1 header of an EXIF segment. */
export const EXIF_HEADER = "Exif\0\0";
/** APP1 header of an XMP segment. */
export const XMP_HEADER = "http://ns.adobe.com/xap/1.0/\0";

/** True when `segment` is an APP1 segment whose payload starts with `header`. */
export function isApp1(segment: JpegSegment, header: string): boolean {
  return segment.marker === 0xe1 && segment.data.length >= header.length &&
    decodeLatin1(segment.data.subarray(0, header.length)) === header;
}

/**
 * Walks the marker segments up to the first SOS. Throws `SyntaxError` for a file that is not
 * a JPEG, a segment that runs past the end, or a file with no scan.
 *
 * @example
 * ```ts
 * import { readJpegSegments } from "./jpeg.ts";
 * const tiny = Uint8Array.of(0xff, 0xd8, 0xff, 0xda, 0, 2, 0xff, 0xd9);
 * console.assert(readJpegSegments(tiny).scanOffset === 2);
 * ```
 */
export function readJpegSegments(bytes: Uint8Array): JpegFile {
  if (!isJpeg(bytes)) throw new SyntaxError("not a JPEG file (no SOI marker)");
  const segments: JpegSegment[] = [];
  let at = 2;
  while (at < bytes.length) {
    if (bytes[at] !== 0xff) {
      throw new SyntaxError(`JPEG is corrupt: expected a marker at byte ${at}`);
    }
    let m = at + 1;
    while (m < bytes.length && bytes[m] === 0xff) m++; // fill bytes
    if (m >= bytes.length) break;
    const marker = bytes[m]!;
    const start = m - 1;
    if (marker === 0xda) return { segments, scanOffset: start };
    if (marker === 0xd9) break;
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      segments.push({ marker, offset: start, size: m + 1 - start, data: new Uint8Array() });
      at = m + 1;
      continue;
    }
    if (m + 3 > bytes.length) break;
    const length = (bytes[m + 1]! << 8) | bytes[m + 2]!;
    if (length < 2 || m + 1 + length > bytes.length) {
      throw new SyntaxError(
        `JPEG segment 0x${marker.toString(16)} at byte ${start} runs past the end of the file`,
      );
    }
    segments.push({
      marker,
      offset: start,
      size: m + 1 + length - start,
      data: bytes.subarray(m + 3, m + 1 + length),
    });
    at = m + 1 + length;
  }
  throw new SyntaxError("JPEG is truncated: no image scan (SOS) found");
}

/** Frame size from the first SOFn segment, or undefined. */
export function jpegSize(file: JpegFile): { width: number; height: number } | undefined {
  for (const s of file.segments) {
    const m = s.marker;
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc && s.data.length >= 5) {
      return {
        height: (s.data[1]! << 8) | s.data[2]!,
        width: (s.data[3]! << 8) | s.data[4]!,
      };
    }
  }
  return undefined;
}

/** Encodes a marker segment with its 2-byte length; throws `RangeError` past 65533 bytes. */
export function encodeSegment(marker: number, payload: Uint8Array): Uint8Array {
  if (payload.length > 65533) {
    throw new RangeError(
      `JPEG segment payload is ${payload.length} bytes, more than the 65533 a segment can hold`,
    );
  }
  const out = new Uint8Array(4 + payload.length);
  out[0] = 0xff;
  out[1] = marker;
  out[2] = (payload.length + 2) >> 8;
  out[3] = (payload.length + 2) & 0xff;
  out.set(payload, 4);
  return out;
}
