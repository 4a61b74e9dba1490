/**
 * PNG chunk layer: split a PNG into chunks (checking lengths and CRCs), decode and encode the
 * text chunks (tEXt, zTXt, iTXt), and assemble chunks back into a file. Pixels are never
 * decoded: a rewrite copies IDAT and every other chunk byte for byte.
 * Reference: PNG specification, third edition, sections 5 and 11.3.3 (https://www.w3.org/TR/png-3/).
 *
 * @module
 */
import { crc32 } from "./crc32.ts";
import {
  concatBytes,
  decodeLatin1,
  decodeUtf8,
  encodeLatin1,
  encodeUtf8,
  isLatin1,
} from "./text.ts";
import { deflateZlib, inflateCapped } from "./zlib.ts";

/** The 8-byte PNG signature. */
export const PNG_SIGNATURE: Uint8Array = Uint8Array.of(137, 80, 78, 71, 13, 10, 26, 10);

/** Chunk types that hold text. */
export type PngTextType = "tEXt" | "zTXt" | "iTXt";

/** One chunk of a PNG file; `data` is a view into the file's bytes. */
export interface PngChunk {
  /** Four-letter chunk type, e.g. "IHDR". */
  type: string;
  /** Byte offset of the chunk's length field in the file. */
  offset: number;
  /** The chunk data (without length, type and CRC). */
  data: Uint8Array;
  /** The CRC stored in the file. */
  crc: number;
  /** Whether the stored CRC matches the type and data. */
  crcOk: boolean;
}

/** A PNG split into chunks. */
export interface PngFile {
  /** Chunks in file order, up to and including IEND (when present). */
  chunks: PngChunk[];
  /** Bytes after IEND (normally empty). */
  trailing: Uint8Array;
  /** Problems found and tolerated (only non-empty in lenient mode, or for trailing bytes). */
  warnings: string[];
}

/** Options for {@linkcode readPngChunks}. */
export interface ReadPngOptions {
  /** Report damage (bad CRC, truncation) as warnings and keep what was read, instead of throwing. */
  lenient?: boolean;
}

/** True when `bytes` starts with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  if (bytes.length < 8) return false;
  for (let i = 0; i < 8; i++) if (bytes[i] !== PNG_SIGNATURE[i]) return false;
  return true;
}

function u32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>>
    0;
}

function isChunkType(bytes: Uint8Array, at: number): boolean {
  for (let i = 0; i < 4; i++) {
    const c = bytes[at + i]!;
    if (!((c >= 65 && c <= 90) || (c >= 97 && c <= 122))) return false;
  }
  return true;
}

/**
 * Splits a PNG into chunks, checking structure and every CRC. Throws `SyntaxError` for a file
 * that is not a PNG, is truncated, has a chunk longer than the file, a bad chunk type or a bad
 * CRC; with `lenient`, damage after the signature becomes a warning and reading stops at the
 * first unreadable chunk. Runs in time linear in the file size whatever the chunk count.
 *
 * @example
 * ```ts
 * import { encodeChunk, PNG_SIGNATURE, readPngChunks } from "./png.ts";
 * const ihdr = encodeChunk("IHDR", Uint8Array.of(0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0));
 * const file = new Uint8Array([...PNG_SIGNATURE, ...ihdr, ...encodeChunk("IEND", new Uint8Array())]);
 * console.assert(readPngChunks(file).chunks[1]?.type === "IEND");
 * ```
 */
export function readPngChunks(bytes: Uint8Array, options: ReadPngOptions = {}): PngFile {
  if (!isPng(bytes)) throw new SyntaxError("not a PNG file (the 8-byte signature is missing)");
  const lenient = options.lenient ?? false;
  const chunks: PngChunk[] = [];
  const warnings: string[] = [];
  const problem = (message: string): void => {
    if (!lenient) throw new SyntaxError(message);
    warnings.push(message);
  };
  let at = 8;
  let sawEnd = false;
  let badCrcs = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 12) {
      problem(`PNG is truncated: ${bytes.length - at} stray bytes at byte ${at}, no whole chunk`);
      break;
    }
    const length = u32(bytes, at);
    if (!isChunkType(bytes, at + 4)) {
      problem(`PNG chunk at byte ${at} has an invalid type (not four ASCII letters)`);
      break;
    }
    const type = decodeLatin1(bytes.subarray(at + 4, at + 8));
    if (length > 0x7fffffff || at + 12 + length > bytes.length) {
      problem(
        `PNG chunk "${type}" at byte ${at} claims ${length} bytes but only ${
          Math.max(0, bytes.length - at - 12)
        } remain (truncated or corrupt file)`,
      );
      break;
    }
    const data = bytes.subarray(at + 8, at + 8 + length);
    const crc = u32(bytes, at + 8 + length);
    const actual = crc32(bytes.subarray(at + 4, at + 8 + length));
    const crcOk = actual === crc;
    if (!crcOk) {
      badCrcs++;
      // One warning per bad chunk would be unbounded output for a hostile file.
      if (!lenient || badCrcs <= 20) {
        problem(
          `PNG chunk "${type}" at byte ${at} fails its CRC check (stored 0x${hex8(crc)}, ` +
            `computed 0x${hex8(actual)})`,
        );
      }
    }
    if (chunks.length === 0 && type !== "IHDR") {
      problem(`PNG's first chunk is "${type}", expected "IHDR"`);
    }
    chunks.push({ type, offset: at, data, crc, crcOk });
    at += 12 + length;
    if (type === "IEND") {
      sawEnd = true;
      break;
    }
  }
  if (badCrcs > 20) warnings.push(`${badCrcs - 20} more chunks fail their CRC check`);
  if (!sawEnd && chunks.length > 0 && at >= bytes.length) {
    problem("PNG is truncated: the IEND chunk is missing");
  }
  if (chunks.length === 0 && warnings.length === 0) {
    problem("PNG has no chunks after its signature");
  }
  const trailing = bytes.subarray(at);
  if (sawEnd && trailing.length > 0) {
    warnings.push(`${trailing.length} bytes follow the IEND chunk`);
  }
  return { chunks, trailing, warnings };
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** The whole bytes of `chunk` as stored in `file` (length, type, data, CRC). */
export function rawChunk(file: Uint8Array, chunk: PngChunk): Uint8Array {
  return file.subarray(chunk.offset, chunk.offset + 12 + chunk.data.length);
}

/**
 * Encodes one chunk: 4-byte big-endian length, type, data and CRC-32 over type and data.
 */
export function encodeChunk(type: string, data: Uint8Array): Uint8Array {
  if (!/^[A-Za-z]{4}$/.test(type)) {
    throw new RangeError(`PNG chunk type "${type}" must be four ASCII letters`);
  }
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(encodeLatin1(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A decoded text chunk. */
export interface PngText {
  /** Which chunk type held it. */
  type: PngTextType;
  /** The keyword (Latin-1, 1-79 characters). */
  keyword: string;
  /** The text (Latin-1 for tEXt/zTXt, UTF-8 for iTXt). */
  text: string;
  /** Whether the text was zlib-compressed in the file. */
  compressed: boolean;
  /** iTXt language tag (may be empty). */
  language?: string;
  /** iTXt translated keyword (UTF-8, may be empty). */
  translatedKeyword?: string;
}

/** Options for {@linkcode decodeTextChunk}. */
export interface DecodeTextOptions {
  /** Largest decompressed text accepted, in bytes (decompression-bomb guard). */
  maxBytes: number;
}

/** Default per-chunk cap on decompressed text: 16 MiB. */
export const MAX_TEXT_CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * Decodes a tEXt, zTXt or iTXt chunk's data. Throws `SyntaxError` for a malformed chunk and
 * `RangeError` when compressed text inflates past `maxBytes`.
 *
 * @example
 * ```ts
 * import { decodeTextChunk } from "./png.ts";
 * const data = new TextEncoder().encode("parameters\0a cat");
 * const text = decodeTextChunk("tEXt", data, { maxBytes: 1 << 20 });
 * console.assert(text.keyword === "parameters" && text.text === "a cat");
 * ```
 */
export function decodeTextChunk(
  type: PngTextType,
  data: Uint8Array,
  options: DecodeTextOptions = { maxBytes: MAX_TEXT_CHUNK_BYTES },
): PngText {
  const nul = data.indexOf(0);
  if (nul < 1) throw new SyntaxError(`${type} chunk has no keyword`);
  const keyword = decodeLatin1(data.subarray(0, nul));
  if (type === "tEXt") {
    const body = data.subarray(nul + 1);
    if (body.length > options.maxBytes) throw tooLong(type, keyword, options.maxBytes);
    return { type, keyword, text: decodeLatin1(body), compressed: false };
  }
  if (type === "zTXt") {
    if (nul + 1 >= data.length) throw new SyntaxError(`zTXt chunk "${keyword}" is truncated`);
    if (data[nul + 1] !== 0) {
      throw new SyntaxError(`zTXt chunk "${keyword}" uses unknown compression ${data[nul + 1]}`);
    }
    const body = inflateText(type, keyword, data.subarray(nul + 2), options.maxBytes);
    return { type, keyword, text: decodeLatin1(body), compressed: true };
  }
  // iTXt: keyword \0 flag method language \0 translated \0 text
  if (nul + 3 > data.length) throw new SyntaxError(`iTXt chunk "${keyword}" is truncated`);
  const flag = data[nul + 1]!;
  const method = data[nul + 2]!;
  const langEnd = data.indexOf(0, nul + 3);
  if (langEnd < 0) throw new SyntaxError(`iTXt chunk "${keyword}" has no language tag end`);
  const transEnd = data.indexOf(0, langEnd + 1);
  if (transEnd < 0) throw new SyntaxError(`iTXt chunk "${keyword}" has no translated keyword end`);
  const language = decodeLatin1(data.subarray(nul + 3, langEnd));
  const translatedKeyword = decodeUtf8(data.subarray(langEnd + 1, transEnd));
  let body = data.subarray(transEnd + 1);
  if (flag === 1) {
    if (method !== 0) {
      throw new SyntaxError(`iTXt chunk "${keyword}" uses unknown compression ${method}`);
    }
    body = inflateText(type, keyword, body, options.maxBytes);
  } else if (flag !== 0) {
    throw new SyntaxError(`iTXt chunk "${keyword}" has compression flag ${flag}, expected 0 or 1`);
  } else if (body.length > options.maxBytes) {
    throw tooLong(type, keyword, options.maxBytes);
  }
  return {
    type,
    keyword,
    text: decodeUtf8(body),
    compressed: flag === 1,
    language,
    translatedKeyword,
  };
}

function tooLong(type: string, keyword: string, max: number): RangeError {
  return new RangeError(`${type} chunk "${keyword}" holds more than ${max} bytes of text`);
}

function inflateText(type: string, keyword: string, data: Uint8Array, max: number): Uint8Array {
  try {
    return inflateCapped(data, { maxBytes: max });
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    if (error instanceof RangeError) throw new RangeError(`${type} chunk "${keyword}": ${why}`);
    throw new SyntaxError(`${type} chunk "${keyword}": ${why}`);
  }
}

/** Options for {@linkcode encodeTextChunk}. */
export interface EncodeTextOptions {
  /** Store the text zlib-compressed (zTXt for Latin-1 text, compressed iTXt otherwise). */
  compress?: boolean;
  /** Always write iTXt (UTF-8), even for Latin-1 text. */
  international?: boolean;
}

/**
 * Checks a PNG keyword: 1-79 printable Latin-1 characters, no leading, trailing or double
 * spaces (PNG spec 11.3.3.2). Throws `RangeError` saying what is wrong.
 */
export function checkKeyword(keyword: string): void {
  if (keyword.length < 1 || keyword.length > 79) {
    throw new RangeError(`PNG text keyword "${keyword}" must be 1 to 79 characters long`);
  }
  for (let i = 0; i < keyword.length; i++) {
    const c = keyword.charCodeAt(i);
    if (c < 32 || (c > 126 && c < 161) || c > 255) {
      throw new RangeError(
        `PNG text keyword "${keyword}" may hold only printable Latin-1 characters`,
      );
    }
  }
  if (/^ | $| {2}/.test(keyword)) {
    throw new RangeError(
      `PNG text keyword "${keyword}" may not have leading, trailing or double spaces`,
    );
  }
}

/**
 * Encodes a text chunk (with length and CRC): Latin-1 text as tEXt (zTXt when compressed),
 * anything else (or anything, with `international`) as iTXt with UTF-8 text. Throws `RangeError` for a bad keyword or a text with
 * a NUL character.
 *
 * @example
 * ```ts
 * import { encodeTextChunk } from "./png.ts";
 * const chunk = encodeTextChunk("Title", "日本", { compress: false });
 * console.assert(new TextDecoder().decode(chunk.subarray(4, 8)) === "iTXt");
 * ```
 */
export function encodeTextChunk(
  keyword: string,
  text: string,
  options: EncodeTextOptions = {},
): Uint8Array {
  checkKeyword(keyword);
  if (text.includes("\0")) {
    throw new RangeError(`PNG text "${keyword}" contains a NUL character, which PNG forbids`);
  }
  const key = encodeLatin1(keyword);
  const compress = options.compress ?? false;
  if (isLatin1(text) && !options.international) {
    const body = encodeLatin1(text);
    if (compress) {
      return encodeChunk("zTXt", concatBytes([key, Uint8Array.of(0, 0), deflateZlib(body)]));
    }
    return encodeChunk("tEXt", concatBytes([key, Uint8Array.of(0), body]));
  }
  const utf8 = encodeUtf8(text);
  const body = compress ? deflateZlib(utf8) : utf8;
  // keyword \0, compression flag, method 0, empty language \0, empty translated keyword \0
  const header = Uint8Array.of(0, compress ? 1 : 0, 0, 0, 0);
  return encodeChunk("iTXt", concatBytes([key, header, body]));
}

/** True for the chunk types that hold text. */
export function isTextChunkType(type: string): type is PngTextType {
  return type === "tEXt" || type === "zTXt" || type === "iTXt";
}
