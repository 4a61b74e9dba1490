/**
 * Byte <-> string helpers for the encodings image metadata uses (Latin-1, UTF-8, UTF-16).
 *
 * @module
 */

const utf8Decoder = new TextDecoder("utf-8", { fatal: false });
const utf8Encoder = new TextEncoder();

/** Decodes ISO 8859-1 bytes (each byte is the code point; not windows-1252). */
export function decodeLatin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, Math.min(i + 8192, bytes.length)));
  }
  return out;
}

/** Encodes a string whose code points are all <= 0xFF as ISO 8859-1. */
export function encodeLatin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw new RangeError(`"${text.slice(0, 20)}" is not Latin-1 text`);
    out[i] = code;
  }
  return out;
}

/** True when every code unit is <= 0xFF, so the text fits Latin-1. */
export function isLatin1(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false;
  return true;
}

/** Decodes UTF-8, replacing invalid sequences with U+FFFD. */
export function decodeUtf8(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

/** Encodes UTF-8. */
export function encodeUtf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** Decodes UTF-16 in the given byte order (a trailing odd byte is ignored). */
export function decodeUtf16(bytes: Uint8Array, littleEndian: boolean): string {
  const units = Math.floor(bytes.length / 2);
  let out = "";
  let piece: number[] = [];
  for (let i = 0; i < units; i++) {
    const a = bytes[2 * i]!;
    const b = bytes[2 * i + 1]!;
    piece.push(littleEndian ? a | (b << 8) : (a << 8) | b);
    if (piece.length === 8192) {
      out += String.fromCharCode(...piece);
      piece = [];
    }
  }
  return out + String.fromCharCode(...piece);
}

/** Encodes UTF-16 code units in the given byte order, without a byte-order mark. */
export function encodeUtf16(text: string, littleEndian: boolean): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out[2 * i] = littleEndian ? c & 0xff : c >> 8;
    out[2 * i + 1] = littleEndian ? c >> 8 : c & 0xff;
  }
  return out;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
