/**
 * Turning Jobs into image tasks: seeds, deterministic file names, batches and shards. Image k
 * of a run uses seed + k, and its own Job (seed + k, one image) remakes it alone, so names can
 * be derived from that Job and a rerun can skip what already exists.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { UsageError } from "../errors.ts";

/** The fields of a diffusion Job that batching reads. */
export interface BatchableJob {
  command: string;
  prompt: string;
  seed?: number | string | undefined;
  batchSize: number;
  batchCount: number;
}

/** One image to make. */
export interface ImageTask<J extends BatchableJob> {
  /** Index of the image within its Job (0-based). */
  index: number;
  /** Its seed. */
  seed: bigint;
  /** The Job that remakes this image alone (seed fixed, one image). */
  job: J;
  /** The file name stem, deterministic from `job`. */
  name: string;
}

/** A group of images denoised together (one `--batch-size` batch). */
export interface BatchTask<J extends BatchableJob> {
  /** The Job it came from, with its seed fixed. */
  job: J;
  /** Index of the Job in a jobs file (0 for a single job). */
  jobIndex: number;
  /** The images, `batchSize` of them (fewer never happens). */
  images: ImageTask<J>[];
}

/** A JSON value with its object keys sorted, for stable hashes. */
function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === "object") {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => [k, sort(o[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sort(value));
}

/** A short hash of a Job, stable across key order. */
export function jobHash(job: unknown): string {
  return createHash("sha256").update(canonicalJson(job)).digest("hex").slice(0, 10);
}

/** A file-name-safe slug of a prompt's first words (at most 40 characters). */
export function promptSlug(prompt: string): string {
  const slug = prompt.toLowerCase()
    .replace(/<[^>]*>/g, " ")
    .replace(/[^\p{L}\p{N}]+/gu, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/g, "");
  return slug || "image";
}

/** Seeds as a JSON value: a number when exact, else a decimal string. */
export function seedValue(seed: bigint): number | string {
  return seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seed) : seed.toString();
}

/**
 * Splits a Job (whose seed is already fixed) into batches of images. Image k gets seed + k and
 * a name `<slug>-<seed>-<hash of its own job>`.
 */
export function planBatches<J extends BatchableJob>(job: J, jobIndex = 0): BatchTask<J>[] {
  if (job.seed === undefined) throw new RangeError("Cannot plan a job without a seed");
  const seed0 = BigInt(job.seed);
  const batches: BatchTask<J>[] = [];
  for (let b = 0; b < job.batchCount; b++) {
    const images: ImageTask<J>[] = [];
    for (let j = 0; j < job.batchSize; j++) {
      const index = b * job.batchSize + j;
      const seed = (seed0 + BigInt(index)) % (2n ** 64n);
      const single = { ...job, seed: seedValue(seed), batchSize: 1, batchCount: 1 };
      images.push({
        index,
        seed,
        job: single,
        name: `${promptSlug(job.prompt)}-${seed}-${jobHash(single)}`,
      });
    }
    batches.push({ job, jobIndex, images });
  }
  return batches;
}

/** A parsed `--shard i/n` (1-based i). */
export interface Shard {
  index: number;
  count: number;
}

/** Parses `i/n` with 1 <= i <= n. */
export function parseShard(text: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) {
    throw new UsageError(`"--shard" must be i/n with 1 <= i <= n, got "${text}"`, {
      hint: "e.g. --shard 2/4 runs the second of four shards",
    });
  }
  return { index, count };
}

/**
 * The batches of shard i/n: batch g (counting across every job in order) belongs to shard
 * `g mod n + 1`, so n shards together make every image exactly once.
 */
export function shardBatches<T>(batches: readonly T[], shard: Shard | undefined): T[] {
  if (shard === undefined) return [...batches];
  return batches.filter((_, g) => g % shard.count === shard.index - 1);
}
