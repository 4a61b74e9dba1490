/**
 * EXIF (a TIFF structure) as found in JPEG APP1 segments, WebP EXIF chunks and PNG eXIf
 * chunks: a bounded reader for the tags that carry generation metadata, and a writer that
 * rebuilds the structure with a new UserComment, A1111/piexif style (big-endian "MM" TIFF,
 * "UNICODE\0" + UTF-16BE text).
 * References: EXIF 2.32 (CIPA DC-008) sections 4.6.2-4.6.5 for IFD layout and UserComment;
 * piexif `helper.py` (`UserComment.dump/load`, UTF-16BE) for what A1111 writes.
 *
 * @module
 */
import {
  concatBytes,
  decodeLatin1,
  decodeUtf16,
  decodeUtf8,
  encodeUtf16,
  encodeUtf8,
} from "./text.ts";

/** Which IFD an entry came from. */
export type IfdName = "ifd0" | "exif" | "gps" | "interop";

/** One IFD entry with its value bytes (in the source byte order). */
export interface ExifEntry {
  ifd: IfdName;
  tag: number;
  type: number;
  count: number;
  value: Uint8Array;
}

/** A parsed TIFF/EXIF structure. */
export interface ExifData {
  littleEndian: boolean;
  entries: ExifEntry[];
  /** Whether IFD0 links to a further IFD (IFD1, the thumbnail). */
  hasThumbnail: boolean;
}

/** Tag numbers used here. */
export const ExifTag = {
  imageDescription: 0x010e,
  make: 0x010f,
  model: 0x0110,
  software: 0x0131,
  dateTime: 0x0132,
  artist: 0x013b,
  copyright: 0x8298,
  exifIfd: 0x8769,
  gpsIfd: 0x8825,
  interopIfd: 0xa005,
  dateTimeOriginal: 0x9003,
  userComment: 0x9286,
  xpTitle: 0x9c9b,
  xpComment: 0x9c9c,
} as const;

const TYPE_SIZE: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
};
// Byte-swap unit per type (rationals are two 4-byte integers).
const SWAP_UNIT: Record<number, number> = { 3: 2, 4: 4, 5: 4, 8: 2, 9: 4, 10: 4, 11: 4, 12: 8 };

const MAX_ENTRIES_PER_IFD = 1024;

/**
 * Parses a TIFF header and its IFD0, Exif, GPS and Interop IFDs. Throws `SyntaxError` when the
 * header is wrong; damaged entries (offsets outside the data, loops) are skipped and reported
 * in `warnings`. Bounded: at most 1024 entries per IFD, each IFD visited once.
 *
 * @example
 * ```ts
 * import { buildExif, parseExif, readExifFields } from "./exif.ts";
 * const tiff = buildExif(undefined, { userComment: "Steps: 20" });
 * console.assert(readExifFields(parseExif(tiff)).userComment === "Steps: 20");
 * ```
 */
export function parseExif(tiff: Uint8Array, warnings: string[] = []): ExifData {
  if (tiff.length < 8) throw new SyntaxError("EXIF data is shorter than a TIFF header");
  const order = decodeLatin1(tiff.subarray(0, 2));
  if (order !== "II" && order !== "MM") {
    throw new SyntaxError(`EXIF data has byte order "${order}", expected "II" or "MM"`);
  }
  const le = order === "II";
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  if (view.getUint16(2, le) !== 42) throw new SyntaxError("EXIF data has a bad TIFF magic number");
  const entries: ExifEntry[] = [];
  const visited = new Set<number>();
  let hasThumbnail = false;

  const readIfd = (offset: number, ifd: IfdName): number => {
    if (visited.has(offset)) {
      warnings.push(`EXIF ${ifd} IFD at ${offset} is referenced twice; skipped`);
      return 0;
    }
    visited.add(offset);
    if (offset < 8 || offset + 2 > tiff.length) {
      warnings.push(`EXIF ${ifd} IFD offset ${offset} is outside the data; skipped`);
      return 0;
    }
    const count = view.getUint16(offset, le);
    if (count > MAX_ENTRIES_PER_IFD || offset + 2 + count * 12 > tiff.length) {
      warnings.push(`EXIF ${ifd} IFD at ${offset} claims ${count} entries; skipped`);
      return 0;
    }
    for (let i = 0; i < count; i++) {
      const at = offset + 2 + i * 12;
      const tag = view.getUint16(at, le);
      const type = view.getUint16(at + 2, le);
      const n = view.getUint32(at + 4, le);
      const size = TYPE_SIZE[type];
      if (size === undefined) continue; // unknown type: skip, as the spec asks readers to
      const bytes = size * n;
      let start = at + 8;
      if (bytes > 4) start = view.getUint32(at + 8, le);
      if (bytes > tiff.length || start + bytes > tiff.length) {
        warnings.push(`EXIF tag 0x${tag.toString(16)} points outside the data; skipped`);
        continue;
      }
      entries.push({ ifd, tag, type, count: n, value: tiff.subarray(start, start + bytes) });
    }
    const nextAt = offset + 2 + count * 12;
    return nextAt + 4 <= tiff.length ? view.getUint32(nextAt, le) : 0;
  };

  const next = readIfd(view.getUint32(4, le), "ifd0");
  hasThumbnail = next !== 0;
  const pointer = (ifd: IfdName, tag: number): number | undefined => {
    const e = entries.find((x) => x.ifd === ifd && x.tag === tag);
    if (!e || (e.type !== 4 && e.type !== 13) || e.value.length < 4) return undefined;
    return new DataView(e.value.buffer, e.value.byteOffset, 4).getUint32(0, le);
  };
  const exifAt = pointer("ifd0", ExifTag.exifIfd);
  if (exifAt !== undefined) readIfd(exifAt, "exif");
  const gpsAt = pointer("ifd0", ExifTag.gpsIfd);
  if (gpsAt !== undefined) readIfd(gpsAt, "gps");
  const interopAt = pointer("exif", ExifTag.interopIfd);
  if (interopAt !== undefined) readIfd(interopAt, "interop");
  return { littleEndian: le, entries, hasThumbnail };
}

/** The text-bearing EXIF fields denoise reports. */
export interface ExifFields {
  userComment?: string;
  imageDescription?: string;
  make?: string;
  model?: string;
  software?: string;
  artist?: string;
  copyright?: string;
  dateTime?: string;
  dateTimeOriginal?: string;
  xpTitle?: string;
  xpComment?: string;
}

function asciiValue(value: Uint8Array): string {
  // EXIF says ASCII, but ComfyUI and others store UTF-8 there.
  let end = value.length;
  while (end > 0 && value[end - 1] === 0) end--;
  return decodeUtf8(value.subarray(0, end));
}

function utf16leValue(value: Uint8Array): string {
  return decodeUtf16(value, true).replace(/\0+$/, "");
}

/**
 * Picks the text fields out of parsed EXIF: ImageDescription, Make, Model, Software, Artist,
 * Copyright, DateTime(Original), UserComment (any charset prefix) and Windows XPTitle/XPComment.
 */
export function readExifFields(exif: ExifData): ExifFields {
  const out: ExifFields = {};
  const ascii: Array<[keyof ExifFields, number]> = [
    ["imageDescription", ExifTag.imageDescription],
    ["make", ExifTag.make],
    ["model", ExifTag.model],
    ["software", ExifTag.software],
    ["artist", ExifTag.artist],
    ["copyright", ExifTag.copyright],
    ["dateTime", ExifTag.dateTime],
  ];
  for (const [name, tag] of ascii) {
    const e = exif.entries.find((x) => x.ifd === "ifd0" && x.tag === tag);
    if (e) out[name] = asciiValue(e.value);
  }
  const dto = exif.entries.find((x) => x.ifd === "exif" && x.tag === ExifTag.dateTimeOriginal);
  if (dto) out.dateTimeOriginal = asciiValue(dto.value);
  const uc = exif.entries.find((x) => x.ifd === "exif" && x.tag === ExifTag.userComment);
  if (uc) out.userComment = decodeUserComment(uc.value, exif.littleEndian);
  const xpTitle = exif.entries.find((x) => x.ifd === "ifd0" && x.tag === ExifTag.xpTitle);
  if (xpTitle) out.xpTitle = utf16leValue(xpTitle.value);
  const xpComment = exif.entries.find((x) => x.ifd === "ifd0" && x.tag === ExifTag.xpComment);
  if (xpComment) out.xpComment = utf16leValue(xpComment.value);
  return out;
}

const PREFIX_UNICODE = "UNICODE\0";
const PREFIX_ASCII = "ASCII\0\0\0";
const PREFIX_JIS = "JIS\0\0\0\0\0";

/**
 * Decodes an EXIF UserComment. "UNICODE\0" text is UTF-16 whose byte order varies by writer
 * (piexif/A1111 always write big-endian, even inside a little-endian TIFF; others follow the
 * TIFF): a byte-order mark decides, else which byte of each pair is more often zero, else which
 * order gives more code units in common scripts, else big-endian. Trailing NULs are dropped.
 *
 * @example
 * ```ts
 * import { decodeUserComment, encodeUserComment } from "./exif.ts";
 * console.assert(decodeUserComment(encodeUserComment("テスト"), true) === "テスト");
 * ```
 */
export function decodeUserComment(value: Uint8Array, tiffLittleEndian: boolean): string {
  const prefix = decodeLatin1(value.subarray(0, 8));
  const body = value.subarray(8);
  let text: string;
  if (prefix === PREFIX_UNICODE) {
    text = decodeUtf16Guess(body, tiffLittleEndian);
  } else if (prefix === PREFIX_JIS) {
    text = new TextDecoder("shift_jis").decode(body);
  } else if (prefix === PREFIX_ASCII || prefix === "\0\0\0\0\0\0\0\0") {
    text = decodeUtf8(body);
  } else {
    text = decodeUtf8(value); // no charset prefix at all: some tools write bare text
  }
  return text.replace(/\0+$/, "");
}

function decodeUtf16Guess(body: Uint8Array, tiffLittleEndian: boolean): string {
  if (body[0] === 0xfe && body[1] === 0xff) return decodeUtf16(body.subarray(2), false);
  if (body[0] === 0xff && body[1] === 0xfe) return decodeUtf16(body.subarray(2), true);
  let evenZeros = 0;
  let oddZeros = 0;
  const n = Math.min(body.length, 4096);
  for (let i = 0; i + 1 < n; i += 2) {
    if (body[i] === 0) evenZeros++;
    if (body[i + 1] === 0) oddZeros++;
  }
  if (evenZeros !== oddZeros) return decodeUtf16(body, oddZeros > evenZeros);
  // No zero bytes (e.g. all-CJK text): pick the order whose code units look like real text.
  const be = plausibleUnits(body.subarray(0, n), false);
  const le = plausibleUnits(body.subarray(0, n), true);
  if (be !== le) return decodeUtf16(body, le > be);
  void tiffLittleEndian; // a tie goes to big-endian, what piexif (and so A1111) writes
  return decodeUtf16(body, false);
}

function plausibleUnits(bytes: Uint8Array, littleEndian: boolean): number {
  let score = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const u = littleEndian ? bytes[i]! | (bytes[i + 1]! << 8) : (bytes[i]! << 8) | bytes[i + 1]!;
    if (
      (u >= 0x09 && u <= 0x7e) || (u >= 0xa0 && u <= 0x24f) || (u >= 0x3000 && u <= 0x30ff) ||
      (u >= 0x4e00 && u <= 0x9fff) || (u >= 0xac00 && u <= 0xd7af) || (u >= 0xff00 && u <= 0xffef)
    ) score++;
  }
  return score;
}

/** Encodes a UserComment as piexif's `UserComment.dump(text, encoding="unicode")` does. */
export function encodeUserComment(text: string): Uint8Array {
  const body = encodeUtf16(text, false);
  const out = new Uint8Array(8 + body.length);
  for (let i = 0; i < 8; i++) out[i] = PREFIX_UNICODE.charCodeAt(i);
  out.set(body, 8);
  return out;
}

/** Changes for {@linkcode buildExif}. */
export interface ExifEdit {
  /** New UserComment text; `null` removes it; absent keeps the existing one. */
  userComment?: string | null;
  /**
   * New IFD0 ImageDescription (type ASCII, written as UTF-8 + NUL as exiftool and ComfyUI do);
   * `null` removes it; absent keeps the existing one.
   */
  imageDescription?: string | null;
}

// Tags whose values are offsets into the old TIFF (strips, tiles, thumbnails) or IFD pointers
// that the builder recomputes.
const DROPPED_TAGS = new Set([
  0x0111,
  0x0117,
  0x0144,
  0x0145,
  0x0201,
  0x0202,
  ExifTag.exifIfd,
  ExifTag.gpsIfd,
  ExifTag.interopIfd,
]);

function toBigEndian(entry: ExifEntry, littleEndian: boolean): Uint8Array {
  const unit = SWAP_UNIT[entry.type];
  if (!littleEndian || unit === undefined) return entry.value;
  const out = new Uint8Array(entry.value.length);
  for (let i = 0; i + unit <= out.length; i += unit) {
    for (let j = 0; j < unit; j++) out[i + j] = entry.value[i + unit - 1 - j]!;
  }
  return out;
}

/**
 * Builds a big-endian TIFF/EXIF block from `base` (the image's existing EXIF, or undefined)
 * with `edit` applied. IFD0, Exif, GPS and Interop entries are kept with their values
 * (byte-swapped when the source was little-endian); the IFD1 thumbnail and strip/tile offsets
 * are dropped because they point into the old layout. An IFD left empty is omitted.
 */
export function buildExif(base: ExifData | undefined, edit: ExifEdit): Uint8Array {
  const le = base?.littleEndian ?? false;
  const byIfd = new Map<
    IfdName,
    Array<{ tag: number; type: number; count: number; value: Uint8Array }>
  >(
    [["ifd0", []], ["exif", []], ["gps", []], ["interop", []]],
  );
  for (const e of base?.entries ?? []) {
    if (DROPPED_TAGS.has(e.tag)) continue;
    if (e.ifd === "exif" && e.tag === ExifTag.userComment && edit.userComment !== undefined) {
      continue;
    }
    if (
      e.ifd === "ifd0" && e.tag === ExifTag.imageDescription && edit.imageDescription !== undefined
    ) {
      continue;
    }
    byIfd.get(e.ifd)!.push({ tag: e.tag, type: e.type, count: e.count, value: toBigEndian(e, le) });
  }
  if (typeof edit.userComment === "string") {
    const value = encodeUserComment(edit.userComment);
    byIfd.get("exif")!.push({ tag: ExifTag.userComment, type: 7, count: value.length, value });
  }
  if (typeof edit.imageDescription === "string") {
    const value = concatBytes([encodeUtf8(edit.imageDescription), Uint8Array.of(0)]);
    byIfd.get("ifd0")!.push({
      tag: ExifTag.imageDescription,
      type: 2,
      count: value.length,
      value,
    });
  }
  const interop = byIfd.get("interop")!;
  const gps = byIfd.get("gps")!;
  const exif = byIfd.get("exif")!;
  const ifd0 = byIfd.get("ifd0")!;
  // Pointer entries get placeholder values, patched once offsets are known.
  const placeholder = () => new Uint8Array(4);
  if (interop.length > 0) {
    exif.push({ tag: ExifTag.interopIfd, type: 4, count: 1, value: placeholder() });
  }
  if (exif.length > 0) ifd0.push({ tag: ExifTag.exifIfd, type: 4, count: 1, value: placeholder() });
  if (gps.length > 0) ifd0.push({ tag: ExifTag.gpsIfd, type: 4, count: 1, value: placeholder() });

  const order: Array<[IfdName, typeof ifd0]> = [["ifd0", ifd0], ["exif", exif], ["gps", gps], [
    "interop",
    interop,
  ]];
  const offsets = new Map<IfdName, number>();
  let size = 8;
  for (const [name, list] of order) {
    if (list.length === 0 && name !== "ifd0") continue;
    list.sort((a, b) => a.tag - b.tag);
    offsets.set(name, size);
    size += 2 + list.length * 12 + 4;
    for (const e of list) if (e.value.length > 4) size += e.value.length + (e.value.length & 1);
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set([0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 8]);
  for (const [name, list] of order) {
    const at = offsets.get(name);
    if (at === undefined) continue;
    view.setUint16(at, list.length);
    let data = at + 2 + list.length * 12 + 4;
    list.forEach((e, i) => {
      const p = at + 2 + i * 12;
      view.setUint16(p, e.tag);
      view.setUint16(p + 2, e.type);
      view.setUint32(p + 4, e.count);
      const target = e.tag === ExifTag.exifIfd
        ? offsets.get("exif")
        : e.tag === ExifTag.gpsIfd
        ? offsets.get("gps")
        : e.tag === ExifTag.interopIfd
        ? offsets.get("interop")
        : undefined;
      if (target !== undefined) {
        view.setUint32(p + 8, target);
      } else if (e.value.length <= 4) {
        out.set(e.value, p + 8);
      } else {
        view.setUint32(p + 8, data);
        out.set(e.value, data);
        data += e.value.length + (e.value.length & 1);
      }
    });
    view.setUint32(at + 2 + list.length * 12, 0); // no next IFD
  }
  return out;
}
