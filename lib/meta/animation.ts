/**
 * Encoding a clip with the metadata every file denoise writes carries: the A1111-style infotext
 * and the full Job as JSON, so `meta read` shows them and `--job clip.webp` replays the clip.
 * - Animated WebP (sharp): an EXIF chunk, the infotext as UserComment (as A1111 writes WebP) and
 *   the Job as ImageDescription `denoise:{...}` (the `key:{json}` form ComfyUI uses in WebP EXIF).
 * - GIF (sharp): two comment extensions, the infotext and `denoise:{...}`.
 * - APNG (assembled here from sharp's per-frame PNGs): `parameters` and `denoise` text chunks.
 *
 * @module
 */
import { encodeAnimation, encodeImage, type RawImage } from "../image/codec.ts";
import { assembleApng } from "./apng.ts";
import { buildExif, ExifTag } from "./exif.ts";
import { addGifComments } from "./gif.ts";
import { encodeTextChunk } from "./png.ts";
import { DENOISE_JOB_KEYWORD } from "./read.ts";
import { encodeUtf8 } from "./text.ts";
import { readWebpChunks, writeWebpChunks } from "./webp.ts";

/** Animated formats with metadata. */
export type AnimatedFormat = "webp" | "gif" | "apng";

/** What {@linkcode encodeAnimationWithMetadata} stores. */
export interface AnimationMetadata {
  /** The A1111-style `parameters` text. */
  infotext: string;
  /** The Job, stored as JSON. */
  job: unknown;
}

/** Options of {@linkcode encodeAnimationWithMetadata}. */
export interface EncodeAnimationMetadataOptions {
  fps: number;
  /** WebP quality 1..100 (default 95). */
  quality?: number;
}

/**
 * The `denoise:{json}` text the Job is stored as where a file has no keyed text.
 *
 * @example
 * ```ts
 * import { jobText } from "./animation.ts";
 * console.assert(jobText({ command: "animate" }) === 'denoise:{"command":"animate"}');
 * ```
 */
export function jobText(job: unknown): string {
  return `${DENOISE_JOB_KEYWORD}:${JSON.stringify(job)}`;
}

/**
 * Encodes frames as an animated WebP, GIF or APNG with the infotext and Job attached.
 *
 * @example
 * ```ts
 * import { encodeAnimationWithMetadata } from "./animation.ts";
 * import { readMetadata } from "./read.ts";
 * const frame = (v: number) => ({ width: 2, height: 2, channels: 3 as const, data: new Uint8Array(12).fill(v) });
 * const apng = await encodeAnimationWithMetadata([frame(0), frame(9)], "apng",
 *   { infotext: "a cat\nSteps: 2", job: { command: "animate" } }, { fps: 8 });
 * console.assert((readMetadata(apng).job as { command: string }).command === "animate");
 * ```
 */
export async function encodeAnimationWithMetadata(
  frames: readonly RawImage[],
  format: AnimatedFormat,
  metadata: AnimationMetadata,
  options: EncodeAnimationMetadataOptions,
): Promise<Uint8Array> {
  if (format === "apng") {
    const pngs = [];
    for (const frame of frames) pngs.push(await encodeImage(frame, "png"));
    return assembleApng(pngs, {
      fps: options.fps,
      textChunks: [
        encodeTextChunk("parameters", metadata.infotext),
        encodeTextChunk(DENOISE_JOB_KEYWORD, JSON.stringify(metadata.job)),
      ],
    });
  }
  const bytes = await encodeAnimation(frames, format, {
    fps: options.fps,
    ...(options.quality !== undefined ? { quality: options.quality } : {}),
  });
  if (format === "gif") return addGifComments(bytes, [metadata.infotext, jobText(metadata.job)]);
  const description = encodeUtf8(jobText(metadata.job) + "\0");
  const exif = buildExif({
    littleEndian: false,
    hasThumbnail: false,
    entries: [{
      ifd: "ifd0",
      tag: ExifTag.imageDescription,
      type: 2,
      count: description.length,
      value: description,
    }],
  }, { userComment: metadata.infotext });
  const chunks = readWebpChunks(bytes).filter((c) => c.fourcc !== "EXIF");
  return writeWebpChunks([...chunks, { fourcc: "EXIF", data: exif }]);
}
