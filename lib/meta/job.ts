/**
 * Job schemas of `denoise meta read` and `denoise meta write` (re-exported by lib/job.ts).
 * Defined here with zod directly, not with lib/job.ts's `defineJob`, because lib/job.ts
 * re-exports this file and the import cycle would reach `defineJob` before it is initialised.
 * The shape is the same: `command`, `version` (1), strict fields.
 *
 * @module
 */
import { z } from "zod";

/**
 * `denoise meta read [FILE|-]`.
 *
 * @example
 * ```ts
 * import { MetaReadJob } from "./job.ts";
 * const job = MetaReadJob.parse({ command: "meta read", input: "a.png" });
 * console.assert(job.lenient === false && job.version === 1);
 * ```
 */
export const MetaReadJob = z.object({
  command: z.literal("meta read"),
  version: z.literal(1).default(1),
  /** Image path, or "-" / absent for stdin. */
  input: z.string().optional(),
  /** Read what can be read from a damaged file instead of failing. */
  lenient: z.boolean().default(false),
}).strict();

/** A resolved `meta read` Job. */
export type MetaReadJob = z.infer<typeof MetaReadJob>;

/**
 * `denoise meta write [FILE|-] --set K=V --delete K --strip --compress -o OUT`.
 *
 * @example
 * ```ts
 * import { MetaWriteJob } from "./job.ts";
 * const job = MetaWriteJob.parse({ command: "meta write", set: { note: "hi" } });
 * console.assert(job.strip === false && job.delete.length === 0);
 * ```
 */
export const MetaWriteJob = z.object({
  command: z.literal("meta write"),
  version: z.literal(1).default(1),
  /** Image path, or "-" / absent for stdin. */
  input: z.string().optional(),
  /** Output path; absent writes the image to stdout. */
  output: z.string().optional(),
  /** Keyword -> text to store. */
  set: z.record(z.string(), z.string()).default({}),
  /** Keywords to remove. */
  delete: z.array(z.string()).default([]),
  /** Remove all text and EXIF/XMP metadata first. */
  strip: z.boolean().default(false),
  /** PNG: store new text compressed (zTXt / compressed iTXt). */
  compress: z.boolean().default(false),
}).strict();

/** A resolved `meta write` Job. */
export type MetaWriteJob = z.infer<typeof MetaWriteJob>;
