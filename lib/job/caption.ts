/**
 * The Job of `denoise caption`.
 *
 * @module
 */
import { z } from "zod";
import { defineJob } from "./define.ts";

/**
 * `denoise caption [FILE|DIR...|-] --model PATH|ALIAS ...`: inputs (files and folders; none or
 * `-` reads one image from stdin), the model, what to ask (task or prompt), how to generate
 * (length, beams, sampling with a seed), and where the captions go besides stdout (the image's
 * metadata, a `.txt` sidecar).
 *
 * @example
 * ```ts
 * import { CaptionJob } from "./caption.ts";
 * const job = CaptionJob.parse({ command: "caption", inputs: ["photos/"], model: "blip-base" });
 * console.assert(job.task === "caption" && job.batchSize === 8 && !job.sidecar);
 * ```
 */
export const CaptionJob = defineJob("caption", {
  /** Image files and folders (walked for images); empty or `["-"]` reads stdin. */
  inputs: z.array(z.string().min(1)).default([]),
  /** A model folder or an alias from models.lock.json. */
  model: z.string().min(1).optional(),
  /** Text that conditions the caption (BLIP continues it; Florence-2 and LLaVA take it instead of the task). */
  prompt: z.string().optional(),
  /** How much to say (Florence-2's caption tasks; a chat model's request). */
  task: z.enum(["caption", "detailed", "more-detailed"]).default("caption"),
  /** New tokens at most (transformers' max_new_tokens); default from the model. */
  maxTokens: z.number().int().positive().optional(),
  /** Beams; default from the model (BLIP 1, Florence-2 3). */
  beams: z.number().int().positive().optional(),
  /** Sample instead of searching (seeded: image k of the run uses seed + k). */
  sample: z.boolean().default(false),
  /** Sampling temperature. */
  temperature: z.number().positive().optional(),
  /** Sampling: keep the k most likely tokens (0 = all). */
  topK: z.number().int().nonnegative().optional(),
  /** Sampling: keep the smallest set with this much probability. */
  topP: z.number().gt(0).lte(1).optional(),
  /** Sampling seed of the first image. */
  seed: z.number().int().nonnegative().max(2 ** 32 - 1).default(0),
  /** Images encoded and decoded together. */
  batchSize: z.number().int().positive().default(8),
  /** One JSON object per image on stdout. */
  json: z.boolean().default(false),
  /** Store the caption in each image file's metadata (pixels untouched). */
  writeMeta: z.boolean().default(false),
  /** Write `name.txt` beside each image. */
  sidecar: z.boolean().default(false),
  /** Execution provider. */
  device: z.enum(["cpu", "cuda"]).default("cpu"),
  /** Threads per model evaluation. */
  threads: z.number().int().positive().optional(),
});

/** A resolved `caption` Job. */
export type CaptionJob = z.infer<typeof CaptionJob>;
