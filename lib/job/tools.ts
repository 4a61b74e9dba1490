/**
 * The Jobs of the tool commands: `models list|pull|verify|where|create-random` and `samplers`.
 *
 * @module
 */
import { z } from "zod";
import { defineJob } from "./define.ts";

/** The Job of `denoise models list`. */
export const ModelsListJob = defineJob("models list", {
  lock: z.string().optional(),
  json: z.boolean().default(false),
});

/** The Job of `denoise models pull`. */
export const ModelsPullJob = defineJob("models pull", {
  alias: z.string().min(1),
  lock: z.string().optional(),
});

/** The Job of `denoise models verify` (every model when no alias is given). */
export const ModelsVerifyJob = defineJob("models verify", {
  alias: z.string().min(1).optional(),
  lock: z.string().optional(),
  json: z.boolean().default(false),
});

/** The Job of `denoise models where`. */
export const ModelsWhereJob = defineJob("models where", {
  alias: z.string().min(1),
  lock: z.string().optional(),
});

/** The Job of `denoise models create-random`. */
export const ModelsCreateRandomJob = defineJob("models create-random", {
  config: z.string().min(1),
  output: z.string().min(1),
  seed: z.number().int().nonnegative().default(0),
  tokenizer: z.string().optional(),
});

/** The Job of `denoise samplers`. */
export const SamplersJob = defineJob("samplers", {
  label: z.string().optional(),
  scheduleType: z.string().optional(),
  json: z.boolean().default(false),
});
