/**
 * The Job of `denoise preprocess KIND [IMAGE|-]`: which preprocessor ran, with every option it
 * used (defaults filled in), the detect/image resolutions, the model, and the input's name and
 * SHA-256, so the control image's own metadata says how it was made and `--job` replays it.
 *
 * The kind and its options are checked against the preprocessor table (lib/preprocess) when the
 * Job runs, not here: lib/job sits below lib/preprocess.
 *
 * @module
 */
import { z } from "zod";
import { defineJob } from "./define.ts";

/**
 * `denoise preprocess KIND [IMAGE|-]`.
 *
 * @example
 * ```ts
 * import { PreprocessJob } from "./preprocess.ts";
 * const job = PreprocessJob.parse({ command: "preprocess", kind: "canny", options: { low: 50 } });
 * console.assert(job.options.low === 50 && job.version === 1);
 * ```
 */
export const PreprocessJob = defineJob("preprocess", {
  /**
   * The preprocessor: canny, tile, shuffle, scribble_xdog, lineart_standard, invert, depth,
   * openpose, softedge, lineart.
   */
  kind: z.string().min(1),
  /** The preprocessor's options by their camelCase names (all of them once resolved). */
  options: z.record(z.string(), z.union([z.number(), z.boolean()])).default({}),
  /**
   * Resize the input first so its short side is about this many pixels (sides rounded to
   * multiples of 64), as controlnet_aux's `detect_resolution`; absent: work at the input size.
   */
  detectResolution: z.number().int().min(64).max(16384).optional(),
  /**
   * Size of the control image written, as controlnet_aux's `image_resolution` (short side, sides
   * multiples of 64); absent: the input's own size.
   */
  imageResolution: z.number().int().min(64).max(16384).optional(),
  /** Model-based kinds: the model as given (an alias from models.lock.json, a folder or a file). */
  model: z.string().min(1).optional(),
  /** The input file's name as given; absent for stdin. */
  image: z.string().min(1).optional(),
  /** SHA-256 of the input file's bytes (lowercase hex). */
  imageSha256: z.string().regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex digits").optional(),
});

/** A resolved `preprocess` Job. */
export type PreprocessJob = z.infer<typeof PreprocessJob>;
