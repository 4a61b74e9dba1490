/**
 * The Jobs of `denoise meta read` and `denoise meta write`.
 *
 * @module
 */
import { z } from "zod";
import { defineJob } from "./define.ts";

/**
 * `denoise meta read [FILE|-]`.
 *
 * @example
 * ```ts
 * import { MetaReadJob } from "./meta.ts";
 * const job = MetaReadJob.parse({ command: "meta read", input: "a.png" });
 * console.assert(job.lenient === false && job.version === 1);
 * ```
 */
export const MetaReadJob = defineJob("meta read", {
  /** Image path, or "-" / absent for stdin. */
  input: z.string().optional(),
  /** Read what can be read from a damaged file instead of failing. */
  lenient: z.boolean().default(false),
});

/** A resolved `meta read` Job. */
export type MetaReadJob = z.infer<typeof MetaReadJob>;

/**
 * `denoise meta write [FILE|-] --set K=V --delete K --strip --compress -o OUT`.
 *
 * @example
 * ```ts
 * import { MetaWriteJob } from "./meta.ts";
 * const job = MetaWriteJob.parse({ command: "meta write", set: { note: "hi" } });
 * console.assert(job.strip === false && job.delete.length === 0);
 * ```
 */
export const MetaWriteJob = defineJob("meta write", {
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
});

/** A resolved `meta write` Job. */
export type MetaWriteJob = z.infer<typeof MetaWriteJob>;
