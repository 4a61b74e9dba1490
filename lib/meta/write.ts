/**
 * `writeMetadata`: set, delete or strip an image's text metadata without re-encoding pixels.
 * PNG: text chunks are rewritten (Latin-1 as tEXt, anything else as iTXt; zTXt/compressed iTXt
 * with `compress`), IDAT and every other chunk are copied byte for byte, new chunks go right
 * before the first IDAT. JPEG and WebP: the `parameters` key is the EXIF UserComment, written
 * the way A1111 does (piexif layout); the rest of the file is copied unchanged.
 *
 * A `description` (what `denoise caption --write-meta` stores) is the PNG text keyword
 * `Description` (one of the PNG specification's predefined keywords), always as iTXt (UTF-8),
 * and in JPEG and WebP the EXIF IFD0 `ImageDescription` tag.
 *
 * @module
 */
import { buildExif, type ExifData, type ExifEdit, ExifTag, parseExif } from "./exif.ts";
import {
  encodeSegment,
  EXIF_HEADER,
  isApp1,
  isJpeg,
  type JpegSegment,
  readJpegSegments,
  XMP_HEADER,
} from "./jpeg.ts";
import {
  checkKeyword,
  encodeTextChunk,
  isPng,
  isTextChunkType,
  PNG_SIGNATURE,
  rawChunk,
  readPngChunks,
} from "./png.ts";
import { concatBytes, decodeLatin1, encodeLatin1 } from "./text.ts";
import { isWebp, readWebpChunks, type WebpChunk, writeWebpChunks } from "./webp.ts";

/** What to change. Order of application: strip, delete, set. */
export interface MetadataEdit {
  /** Keyword -> text to store; replaces every existing chunk with that keyword. */
  set?: Record<string, string>;
  /** Keywords to remove (a keyword that is absent is ignored). */
  delete?: readonly string[];
  /** Remove all text and EXIF/XMP metadata first. */
  strip?: boolean;
  /**
   * The image's description (a caption): PNG `Description` iTXt chunk, JPEG/WebP EXIF
   * ImageDescription. Replaces any existing one.
   */
  description?: string;
}

/** Options for {@linkcode writeMetadata}. */
export interface WriteMetadataOptions {
  /** PNG: store new text compressed (zTXt, or compressed iTXt for non-Latin-1 text). */
  compress?: boolean;
}

/** The one key JPEG and WebP can hold (as EXIF UserComment). */
export const EXIF_PARAMETERS_KEY = "parameters";

/** The PNG text keyword of {@linkcode MetadataEdit.description}. */
export const PNG_DESCRIPTION_KEY = "Description";

/**
 * Applies `edit` to a PNG, JPEG or WebP image and returns the new file. Throws `SyntaxError`
 * for a file that is not a supported image (GIF included) or is damaged (a bad CRC or
 * truncation: the writer never copies corrupt data), `RangeError` for a bad keyword or a key
 * JPEG/WebP cannot hold.
 *
 * @example
 * ```ts
 * import { writeMetadata } from "./write.ts";
 * import { readMetadata } from "./read.ts";
 * import { encodeChunk, PNG_SIGNATURE } from "./png.ts";
 * const ihdr = encodeChunk("IHDR", Uint8Array.of(0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0));
 * const png = new Uint8Array([...PNG_SIGNATURE, ...ihdr, ...encodeChunk("IEND", new Uint8Array())]);
 * const out = writeMetadata(png, { set: { Title: "ok" } }, { compress: true });
 * console.assert(readMetadata(out).texts[0]?.type === "zTXt");
 * ```
 */
export function writeMetadata(
  bytes: Uint8Array,
  edit: MetadataEdit,
  options: WriteMetadataOptions = {},
): Uint8Array {
  for (const key of Object.keys(edit.set ?? {})) checkKeyword(key);
  if (isPng(bytes)) return writePng(bytes, edit, options);
  if (isJpeg(bytes)) return writeJpeg(bytes, edit);
  if (isWebp(bytes)) return writeWebp(bytes, edit);
  const head = decodeLatin1(bytes.subarray(0, 6));
  if (head === "GIF87a" || head === "GIF89a") {
    throw new SyntaxError("Writing metadata to GIF is not supported; convert the image to PNG");
  }
  throw new SyntaxError("not a PNG, JPEG or WebP image (unrecognised first bytes)");
}

function chunkKeyword(data: Uint8Array): string {
  const nul = data.indexOf(0);
  return decodeLatin1(data.subarray(0, nul < 0 ? Math.min(data.length, 79) : nul));
}

function writePng(bytes: Uint8Array, edit: MetadataEdit, options: WriteMetadataOptions) {
  const file = readPngChunks(bytes);
  if (file.chunks[file.chunks.length - 1]?.type !== "IEND") {
    throw new SyntaxError("PNG is truncated: the IEND chunk is missing");
  }
  const set = edit.set ?? {};
  const removed = new Set([...(edit.delete ?? []), ...Object.keys(set)]);
  const fresh = Object.entries(set).map(([k, v]) =>
    encodeTextChunk(k, v, { compress: options.compress ?? false })
  );
  if (edit.description !== undefined) {
    removed.add(PNG_DESCRIPTION_KEY);
    fresh.push(
      encodeTextChunk(PNG_DESCRIPTION_KEY, edit.description, {
        compress: options.compress ?? false,
        international: true,
      }),
    );
  }
  const parts: Uint8Array[] = [PNG_SIGNATURE];
  let inserted = false;
  for (const chunk of file.chunks) {
    if (!inserted && (chunk.type === "IDAT" || chunk.type === "IEND")) {
      parts.push(...fresh);
      inserted = true;
    }
    if (isTextChunkType(chunk.type)) {
      if (edit.strip || removed.has(chunkKeyword(chunk.data))) continue;
    } else if (chunk.type === "eXIf" && edit.strip) {
      continue;
    }
    parts.push(rawChunk(bytes, chunk));
  }
  parts.push(file.trailing);
  return concatBytes(parts);
}

/** Reads the first EXIF block of a JPEG/WebP (undefined when absent or stripped). */
function baseExif(tiff: Uint8Array | undefined): ExifData | undefined {
  if (tiff === undefined) return undefined;
  try {
    return parseExif(tiff);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new SyntaxError(`the image's EXIF block is unreadable (${why}); use --strip to drop it`);
  }
}

/**
 * The new EXIF block for an edit: undefined = leave the existing one alone, null = remove it.
 */
function editedExif(
  edit: MetadataEdit,
  format: string,
  tiff: Uint8Array | undefined,
): Uint8Array | null | undefined {
  const set = edit.set ?? {};
  for (const key of Object.keys(set)) {
    if (key !== EXIF_PARAMETERS_KEY) {
      throw new RangeError(
        `${format} cannot hold "${key}": only "parameters" (the EXIF UserComment) can be ` +
          `written to JPEG and WebP; write a PNG to keep other keys`,
      );
    }
  }
  const base = edit.strip ? undefined : baseExif(tiff);
  const value = set[EXIF_PARAMETERS_KEY];
  const drop = (edit.delete ?? []).includes(EXIF_PARAMETERS_KEY);
  const description = edit.description;
  if (value === undefined && !drop && description === undefined) {
    return edit.strip && tiff !== undefined ? null : undefined;
  }
  const exifEdit: ExifEdit = {};
  if (value !== undefined || drop) exifEdit.userComment = value ?? null;
  if (description !== undefined) exifEdit.imageDescription = description;
  const rebuilt = buildExif(base, exifEdit);
  const hasEntries = value !== undefined || description !== undefined ||
    (base?.entries ?? []).some((e) =>
      !(e.ifd === "exif" && e.tag === ExifTag.userComment) && e.tag !== ExifTag.exifIfd
    );
  return hasEntries ? rebuilt : null;
}

function writeJpeg(bytes: Uint8Array, edit: MetadataEdit): Uint8Array {
  const file = readJpegSegments(bytes);
  const exifSegments = file.segments.filter((s) => isApp1(s, EXIF_HEADER));
  const first = exifSegments[0];
  const tiff = first?.data.subarray(EXIF_HEADER.length);
  const exif = editedExif(edit, "JPEG", tiff);
  const isMeta = (s: JpegSegment) =>
    isApp1(s, XMP_HEADER) || isApp1(s, "http://ns.adobe.com/xmp/extension/\0") ||
    s.marker === 0xfe;
  const newSegment = exif
    ? encodeSegment(0xe1, concatBytes([encodeLatin1(EXIF_HEADER), exif]))
    : undefined;
  const parts: Uint8Array[] = [bytes.subarray(0, 2)];
  let placed = false;
  const place = () => {
    if (!placed && newSegment) parts.push(newSegment);
    placed = true;
  };
  file.segments.forEach((s, i) => {
    const raw = bytes.subarray(s.offset, s.offset + s.size);
    if (isApp1(s, EXIF_HEADER)) {
      if (exif === undefined) parts.push(raw);
      else if (s === first) place();
      return;
    }
    // EXIF belongs right after SOI, or after a leading JFIF APP0.
    if (!(i === 0 && s.marker === 0xe0)) place();
    if (edit.strip && isMeta(s)) return;
    parts.push(raw);
  });
  place();
  parts.push(bytes.subarray(file.scanOffset));
  return concatBytes(parts);
}

function writeWebp(bytes: Uint8Array, edit: MetadataEdit): Uint8Array {
  const chunks = readWebpChunks(bytes);
  const old = chunks.find((c) => c.fourcc === "EXIF");
  let tiff = old?.data;
  if (tiff && decodeLatin1(tiff.subarray(0, 6)) === EXIF_HEADER) tiff = tiff.subarray(6);
  const exif = editedExif(edit, "WebP", tiff);
  const kept: WebpChunk[] = chunks.filter((c) => {
    if (c.fourcc === "EXIF") return exif === undefined;
    if (c.fourcc === "XMP ") return !edit.strip;
    return true;
  });
  if (exif) kept.push({ fourcc: "EXIF", data: exif });
  return writeWebpChunks(kept);
}
