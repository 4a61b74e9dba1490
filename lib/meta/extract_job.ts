/**
 * Finds denoise's stored Job in image bytes, for `--job image.png` (lib/job.ts's
 * `ImageJobExtractor`).
 *
 * @module
 */
import { readMetadata } from "./read.ts";

/**
 * The Job object stored in an image's "denoise" chunk, or undefined when there is none (or
 * the bytes are not a readable image).
 *
 * @example
 * ```ts
 * import { extractJob } from "./extract_job.ts";
 * console.assert(extractJob(new Uint8Array([1, 2, 3])) === undefined);
 * ```
 */
export function extractJob(bytes: Uint8Array): Record<string, unknown> | undefined {
  let job: unknown;
  try {
    job = readMetadata(bytes, { lenient: true }).job;
  } catch {
    return undefined;
  }
  if (typeof job !== "object" || job === null || Array.isArray(job)) return undefined;
  return job as Record<string, unknown>;
}
