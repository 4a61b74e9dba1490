/**
 * `readMetadata`: everything an image says about how it was made, as one JSON-ready object.
 * Reads PNG text chunks and eXIf, JPEG EXIF/XMP/COM segments, WebP EXIF/XMP chunks and the
 * GIF header; parses A1111 infotext, ComfyUI prompt/workflow JSON, InvokeAI, NovelAI and
 * Fooocus JSON, and denoise's own Job chunk (keyword "denoise").
 *
 * @module
 */
import {
  type InfotextSummary,
  type ParsedInfotext,
  parseInfotext,
  summarizeInfotext,
} from "./a1111.ts";
import { type ExifFields, parseExif, readExifFields } from "./exif.ts";
import { EXIF_HEADER, isApp1, isJpeg, jpegSize, readJpegSegments, XMP_HEADER } from "./jpeg.ts";
import { looksLikeJson, parseJsonText } from "./json_text.ts";
import { readGifComments } from "./gif.ts";
import {
  decodeTextChunk,
  isPng,
  isTextChunkType,
  MAX_TEXT_CHUNK_BYTES,
  type PngText,
  readPngChunks,
} from "./png.ts";
import { decodeLatin1, decodeUtf8 } from "./text.ts";
import { decodeStealthInfo, type StealthInfo } from "./stealth.ts";
import { decodeImage } from "../image/codec.ts";
import { isWebp, readWebpChunks, webpSize } from "./webp.ts";

/** Keyword of the PNG text chunk that holds denoise's Job JSON. */
export const DENOISE_JOB_KEYWORD = "denoise";

/** Image container formats readMetadata understands. */
export type ImageFormat = "png" | "jpeg" | "webp" | "gif";

/** Tools whose metadata readMetadata recognises. */
export type Generator =
  | "denoise"
  | "a1111"
  | "comfyui"
  | "invokeai"
  | "novelai"
  | "fooocus"
  | "kohya";

/**
 * A1111 infotext found in an image, with where it came from: prompts and parameters as A1111
 * reads them, and `raw`, the text as found.
 */
export interface A1111Metadata extends ParsedInfotext {
  /** "parameters" (PNG text chunk), "exif.userComment" (JPEG/WebP) or "stealth" (pixel LSBs). */
  source: "parameters" | "exif.userComment" | "stealth";
  /** Typed well-known fields (steps, seed, width, height, hires, loraHashes ...). */
  summary: InfotextSummary;
}

/** What {@linkcode readMetadata} returns. */
export interface ImageMetadata {
  format: ImageFormat;
  width?: number;
  height?: number;
  /** PNG chunk list (type and data length), in file order; capped, see warnings. */
  chunks?: Array<{ type: string; length: number }>;
  /** Every text chunk (PNG tEXt/zTXt/iTXt), in file order; JPEG COM comments as type "COM". */
  texts: PngText[] | Array<PngText | { type: "COM"; keyword: ""; text: string; compressed: false }>;
  /** Texts whose value is JSON, parsed, by keyword (or "exif.make" etc. for EXIF). */
  json: Record<string, unknown>;
  /** A1111 infotext, parsed. */
  a1111?: A1111Metadata;
  /** ComfyUI's API-format prompt graph and UI workflow, parsed. */
  comfyui?: { prompt?: unknown; workflow?: unknown };
  /** denoise's own Job, parsed from the "denoise" chunk. */
  job?: unknown;
  /** The tools that evidently wrote the metadata. */
  generators: Generator[];
  /** EXIF text fields. */
  exif?: ExifFields;
  /** Raw XMP packet text. */
  xmp?: string;
  /** Text hidden in pixel LSBs (stealth pnginfo); only set by `addStealthInfo`. */
  stealth?: StealthInfo;
  /** Recoverable problems: damaged chunks (lenient), undecodable text, invalid JSON, caps hit. */
  warnings: string[];
}

/** Options for {@linkcode readMetadata}. */
export interface ReadMetadataOptions {
  /** Read what can be read from a damaged file (bad CRC, truncation) instead of throwing. */
  lenient?: boolean;
  /** Most text chunks decoded (default 1024); the rest are counted in a warning. */
  maxTexts?: number;
  /** Decompressed-size cap per compressed chunk (default 16 MiB). */
  maxTextBytes?: number;
  /** Cap on all text decoded together (default 64 MiB). */
  maxTotalTextBytes?: number;
}

const MAX_CHUNK_LIST = 1024;

/** Sniffs the container format from the first bytes, or undefined. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (isPng(bytes)) return "png";
  if (isJpeg(bytes)) return "jpeg";
  if (isWebp(bytes)) return "webp";
  const head = decodeLatin1(bytes.subarray(0, 6));
  if (head === "GIF87a" || head === "GIF89a") return "gif";
  return undefined;
}

/**
 * Reads an image's metadata. Throws `SyntaxError` for bytes that are not a PNG, JPEG, WebP or
 * GIF, or (unless `lenient`) a structurally damaged file; content problems (bad JSON, a
 * decompression bomb, an undecodable chunk) become warnings. Output is bounded whatever the
 * input: capped text-chunk count, per-chunk and total decompressed size.
 *
 * @example
 * ```ts
 * import { readMetadata } from "./read.ts";
 * import { writeMetadata } from "./write.ts";
 * import { encodeChunk, PNG_SIGNATURE } from "./png.ts";
 * const ihdr = encodeChunk("IHDR", Uint8Array.of(0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0));
 * const png = new Uint8Array([...PNG_SIGNATURE, ...ihdr, ...encodeChunk("IEND", new Uint8Array())]);
 * const tagged = writeMetadata(png, { set: { parameters: "a cat\nSteps: 20, Seed: 1, Size: 1x1" } });
 * const meta = readMetadata(tagged);
 * console.assert(meta.a1111?.summary.seed === 1 && meta.width === 1);
 * ```
 */
export function readMetadata(bytes: Uint8Array, options: ReadMetadataOptions = {}): ImageMetadata {
  const format = sniffImageFormat(bytes);
  if (format === undefined) {
    throw new SyntaxError("not a PNG, JPEG, WebP or GIF image (unrecognised first bytes)");
  }
  const out: ImageMetadata = { format, texts: [], json: {}, generators: [], warnings: [] };
  if (format === "png") readPng(bytes, options, out);
  else if (format === "jpeg") readJpeg(bytes, out);
  else if (format === "webp") readWebp(bytes, out);
  else readGif(bytes, out);
  interpret(out);
  return ordered(out);
}

/** The same object with its keys in reading order (summary first, bulky lists last). */
function ordered(m: ImageMetadata): ImageMetadata {
  return {
    format: m.format,
    ...(m.width !== undefined ? { width: m.width } : {}),
    ...(m.height !== undefined ? { height: m.height } : {}),
    generators: m.generators,
    ...(m.a1111 !== undefined ? { a1111: m.a1111 } : {}),
    ...(m.comfyui !== undefined ? { comfyui: m.comfyui } : {}),
    ...(m.job !== undefined ? { job: m.job } : {}),
    ...(m.exif !== undefined ? { exif: m.exif } : {}),
    ...(m.xmp !== undefined ? { xmp: m.xmp } : {}),
    ...(m.stealth !== undefined ? { stealth: m.stealth } : {}),
    texts: m.texts,
    json: m.json,
    ...(m.chunks !== undefined ? { chunks: m.chunks } : {}),
    warnings: m.warnings,
  };
}

function readPng(bytes: Uint8Array, options: ReadMetadataOptions, out: ImageMetadata): void {
  const file = readPngChunks(bytes, { lenient: options.lenient ?? false });
  out.warnings.push(...file.warnings);
  const maxTexts = options.maxTexts ?? 1024;
  const maxBytes = options.maxTextBytes ?? MAX_TEXT_CHUNK_BYTES;
  let budget = options.maxTotalTextBytes ?? 64 * 1024 * 1024;
  let skipped = 0;
  const texts: PngText[] = [];
  out.chunks = [];
  for (const chunk of file.chunks) {
    if (out.chunks.length < MAX_CHUNK_LIST) {
      out.chunks.push({ type: chunk.type, length: chunk.data.length });
    }
    if (chunk.type === "IHDR" && chunk.data.length >= 8) {
      const v = new DataView(chunk.data.buffer, chunk.data.byteOffset, 8);
      out.width = v.getUint32(0);
      out.height = v.getUint32(4);
    } else if (isTextChunkType(chunk.type)) {
      if (texts.length >= maxTexts) {
        skipped++;
        continue;
      }
      if (!chunk.crcOk) continue; // already reported; its content cannot be trusted
      try {
        const text = decodeTextChunk(chunk.type, chunk.data, {
          maxBytes: Math.max(0, Math.min(maxBytes, budget)),
        });
        budget -= text.text.length;
        texts.push(text);
      } catch (error) {
        out.warnings.push(`skipped a ${chunk.type} chunk at byte ${chunk.offset}: ${msg(error)}`);
      }
    } else if (chunk.type === "eXIf") {
      readExifInto(chunk.data, out);
    }
  }
  if (file.chunks.length > MAX_CHUNK_LIST) {
    out.warnings.push(
      `the PNG has ${file.chunks.length} chunks; only the first ${MAX_CHUNK_LIST} are listed`,
    );
  }
  if (skipped > 0) {
    out.warnings.push(`${skipped} text chunks beyond the first ${maxTexts} were not read`);
  }
  out.texts = texts;
  const xmp = texts.find((t) => t.keyword === "XML:com.adobe.xmp");
  if (xmp) out.xmp = xmp.text;
}

function readExifInto(tiff: Uint8Array, out: ImageMetadata): void {
  try {
    const exif = parseExif(tiff, out.warnings);
    const fields = readExifFields(exif);
    if (Object.keys(fields).length > 0) out.exif = fields;
  } catch (error) {
    out.warnings.push(`skipped unreadable EXIF data: ${msg(error)}`);
  }
}

function readJpeg(bytes: Uint8Array, out: ImageMetadata): void {
  const file = readJpegSegments(bytes);
  const size = jpegSize(file);
  if (size) Object.assign(out, size);
  const comments: Array<{ type: "COM"; keyword: ""; text: string; compressed: false }> = [];
  for (const s of file.segments) {
    if (isApp1(s, EXIF_HEADER) && out.exif === undefined) {
      readExifInto(s.data.subarray(EXIF_HEADER.length), out);
    } else if (isApp1(s, XMP_HEADER) && out.xmp === undefined) {
      out.xmp = decodeUtf8(s.data.subarray(XMP_HEADER.length));
    } else if (s.marker === 0xfe) {
      comments.push({ type: "COM", keyword: "", text: decodeUtf8(s.data), compressed: false });
    }
  }
  out.texts = comments;
}

function readWebp(bytes: Uint8Array, out: ImageMetadata): void {
  const chunks = readWebpChunks(bytes);
  const size = webpSize(chunks);
  if (size) Object.assign(out, size);
  for (const c of chunks) {
    if (c.fourcc === "EXIF" && out.exif === undefined) {
      // Some writers keep the JPEG "Exif\0\0" header inside the chunk.
      const tiff = decodeLatin1(c.data.subarray(0, 6)) === EXIF_HEADER
        ? c.data.subarray(6)
        : c.data;
      readExifInto(tiff, out);
    } else if (c.fourcc === "XMP " && out.xmp === undefined) {
      out.xmp = decodeUtf8(c.data);
    }
  }
}

function readGif(bytes: Uint8Array, out: ImageMetadata): void {
  if (bytes.length < 10) throw new SyntaxError("GIF is truncated: no logical screen descriptor");
  out.width = bytes[6]! | (bytes[7]! << 8);
  out.height = bytes[8]! | (bytes[9]! << 8);
  try {
    out.texts = readGifComments(bytes).map((text) => ({
      type: "COM" as const,
      keyword: "" as const,
      text,
      compressed: false as const,
    }));
  } catch (error) {
    out.warnings.push(`skipped the GIF's comments: ${msg(error)}`);
  }
}

function msg(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// Keys whose value is JSON by contract, so a parse failure deserves a warning. Other texts that
// merely start with "[" are often prompts ("[dog:cat:0.5]") and fail silently.
const JSON_KEYS = new Set([
  DENOISE_JOB_KEYWORD,
  "prompt",
  "workflow",
  "invokeai_metadata",
  "invokeai_graph",
  "sd-metadata",
  "Comment",
]);

function parseJsonInto(key: string, text: string, out: ImageMetadata): unknown {
  const r = parseJsonText(text);
  if (!r.ok) {
    const base = key.replace(/^exif\./, "");
    if (text.trimStart().startsWith("{") || JSON_KEYS.has(base)) {
      out.warnings.push(`"${key}" looks like JSON but does not parse (${r.error}); kept as text`);
    }
    return undefined;
  }
  if (r.note !== undefined) out.warnings.push(`"${key}": ${r.note}`);
  out.json[key] = r.value;
  return r.value;
}

/**
 * The `a1111` block of {@linkcode ImageMetadata} for a parsed infotext: typed summary added, the
 * bulky raw text last.
 *
 * @example
 * ```ts
 * import { parseInfotext } from "./a1111.ts";
 * import { a1111Metadata } from "./read.ts";
 * const a = a1111Metadata("parameters", parseInfotext("a cat \nSteps: 20, Seed: 1, Size: 8x8"));
 * console.assert(a.prompt === "a cat" && a.summary.width === 8 && a.raw.startsWith("a cat "));
 * ```
 */
export function a1111Metadata(
  source: A1111Metadata["source"],
  info: ParsedInfotext,
): A1111Metadata {
  const { raw, ...rest } = info;
  return { source, ...rest, summary: summarizeInfotext(info.params), raw };
}

function interpret(out: ImageMetadata): void {
  const gens = new Set<Generator>();
  const byKey = new Map<string, string>();
  for (const t of out.texts) {
    if (t.type === "COM") {
      // GIF (and JPEG) comments: denoise stores its Job as "denoise:{...}" there.
      const m = /^denoise:\s*(\{[\s\S]*\})$/.exec(t.text);
      const parsed = m === null
        ? undefined
        : parseJsonInto(`comment.${DENOISE_JOB_KEYWORD}`, m[1]!, out);
      if (parsed !== undefined && out.job === undefined) {
        out.job = parsed;
        gens.add("denoise");
      }
      continue;
    }
    if (!byKey.has(t.keyword)) byKey.set(t.keyword, t.text);
    if (looksLikeJson(t.text)) parseJsonInto(t.keyword, t.text, out);
  }
  // EXIF strings in the ComfyUI style, "workflow:{...}" / "prompt:{...}".
  if (out.exif) {
    for (const [field, value] of Object.entries(out.exif)) {
      if (typeof value !== "string") continue;
      const m = /^([A-Za-z_][\w-]*):\s*([[{][\s\S]*)$/.exec(value);
      if (m) {
        const parsed = parseJsonInto(`exif.${field}`, m[2]!, out);
        if (parsed !== undefined && (m[1] === "prompt" || m[1] === "workflow")) {
          out.comfyui ??= {};
          out.comfyui[m[1]] = parsed;
          gens.add("comfyui");
        } else if (parsed !== undefined && m[1] === DENOISE_JOB_KEYWORD && out.job === undefined) {
          // Animated WebP: denoise stores its Job as ImageDescription "denoise:{...}".
          out.job = parsed;
          gens.add("denoise");
        }
      } else if (looksLikeJson(value)) {
        parseJsonInto(`exif.${field}`, value, out);
      }
    }
  }
  const job = byKey.get(DENOISE_JOB_KEYWORD);
  if (job !== undefined && out.json[DENOISE_JOB_KEYWORD] !== undefined) {
    out.job = out.json[DENOISE_JOB_KEYWORD];
    gens.add("denoise");
  }
  const parameters = byKey.get("parameters");
  const isObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  if (parameters !== undefined && !isObject(out.json["parameters"])) {
    out.a1111 = a1111Metadata("parameters", parseInfotext(parameters));
    gens.add("a1111");
  } else if (
    out.exif?.userComment !== undefined && !isObject(out.json["exif.userComment"])
  ) {
    // Unlike the "parameters" chunk, a UserComment may be any caption: require a params line.
    const info = parseInfotext(out.exif.userComment);
    if (Object.keys(info.params).length > 0) {
      out.a1111 = a1111Metadata("exif.userComment", info);
      gens.add("a1111");
    }
  }
  for (const key of ["prompt", "workflow"] as const) {
    if (out.json[key] !== undefined) {
      out.comfyui ??= {};
      out.comfyui[key] = out.json[key];
      gens.add("comfyui");
    }
  }
  if (["invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"].some((k) => byKey.has(k))) {
    gens.add("invokeai");
  }
  if (byKey.get("Software") === "NovelAI") gens.add("novelai");
  const fooocus = out.json["parameters"] as { metadata_scheme?: unknown } | undefined;
  if (byKey.has("fooocus_scheme") || fooocus?.metadata_scheme === "fooocus") gens.add("fooocus");
  if (byKey.has("prompt") && byKey.has("seed") && byKey.has("sampler") && !out.json["prompt"]) {
    gens.add("kohya");
  }
  out.generators = [...gens];
}

/**
 * For a PNG with no text metadata, decodes the pixels and adds any stealth-pnginfo text to
 * `meta` (as `stealth`, and parsed into `a1111`). Problems become warnings.
 */
export async function addStealthInfo(
  bytes: Uint8Array,
  meta: ImageMetadata,
): Promise<void> {
  if (meta.format !== "png" || meta.texts.length > 0 || meta.a1111 !== undefined) return;
  try {
    const image = await decodeImage(bytes, { channels: 4 });
    const found = decodeStealthInfo(image);
    if (found === undefined) return;
    meta.stealth = found;
    meta.a1111 = a1111Metadata("stealth", parseInfotext(found.text));
    if (!meta.generators.includes("a1111")) meta.generators.push("a1111");
  } catch (error) {
    meta.warnings.push(`stealth pnginfo unreadable: ${(error as Error).message ?? error}`);
  }
}
