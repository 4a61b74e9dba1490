/**
 * Encoding an image with the metadata every image denoise writes: an A1111-compatible
 * `parameters` text and, in PNGs, the full Job as JSON (the "denoise" chunk), so `meta read`
 * shows it and `--job image.png` replays it.
 *
 * @module
 */
import {
  encodeFloatImage,
  encodeImage,
  type FloatImage,
  type ImageFormat,
  type RawImage,
} from "../image/codec.ts";
import { DENOISE_JOB_KEYWORD } from "./read.ts";
import { writeMetadata } from "./write.ts";

/** What {@linkcode encodeWithMetadata} stores. */
export interface ImageMetadataToWrite {
  /** The A1111 `parameters` text. */
  infotext: string;
  /** The Job, stored as JSON in PNGs (JPEG/WebP hold the infotext only). */
  job: unknown;
}

/**
 * Encodes an image and attaches the infotext and the Job (JPEG/WebP hold the infotext only).
 *
 * @example
 * ```ts
 * import { encodeWithMetadata } from "./encode.ts";
 * import { readMetadata } from "./read.ts";
 * const image = { width: 2, height: 2, channels: 3 as const, data: new Uint8Array(12) };
 * const png = await encodeWithMetadata(image, "png", { infotext: "a fox\nSteps: 2", job: { command: "x" } });
 * console.assert(readMetadata(png).job !== undefined);
 * ```
 */
export async function encodeWithMetadata(
  image: RawImage,
  format: ImageFormat,
  metadata: ImageMetadataToWrite,
  options: { quality?: number } = {},
): Promise<Uint8Array> {
  const bytes = await encodeImage(image, format, options);
  const set: Record<string, string> = { parameters: metadata.infotext };
  if (format === "png") set[DENOISE_JOB_KEYWORD] = JSON.stringify(metadata.job);
  return writeMetadata(bytes, { set });
}

/**
 * Encodes a float image keeping its layout (grey, alpha, 16-bit PNG: see `encodeFloatImage`) and
 * attaches the infotext (when given) and the Job (PNG only).
 *
 * @example
 * ```ts
 * import { encodeFloatWithMetadata } from "./encode.ts";
 * import { readMetadata } from "./read.ts";
 * const image = { width: 1, height: 1, channels: 1, bitDepth: 16, data: Float32Array.of(0.5) } as const;
 * const png = await encodeFloatWithMetadata(image, "png", { job: { command: "x" } });
 * console.assert(readMetadata(png).job !== undefined);
 * ```
 */
export async function encodeFloatWithMetadata(
  image: FloatImage,
  format: ImageFormat,
  metadata: { infotext?: string | undefined; job: unknown },
  options: { quality?: number } = {},
): Promise<Uint8Array> {
  const bytes = await encodeFloatImage(image, format, options);
  const set: Record<string, string> = {};
  if (metadata.infotext !== undefined) set.parameters = metadata.infotext;
  if (format === "png") set[DENOISE_JOB_KEYWORD] = JSON.stringify(metadata.job);
  return Object.keys(set).length === 0 ? bytes : writeMetadata(bytes, { set });
}
