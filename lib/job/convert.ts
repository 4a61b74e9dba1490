/**
 * The Job of `denoise convert-ckpt`.
 *
 * @module
 */
import { z } from "zod";
import { CHECKPOINT_CONFIGS } from "../convert/detect.ts";
import { defineJob } from "./define.ts";

/** The Job of `denoise convert-ckpt` (flags as fields; `--job` replays it). */
export const ConvertCkptJob = defineJob("convert-ckpt", {
  input: z.string().min(1),
  output: z.string().min(1),
  to: z.enum(["diffusers", "onnx", "single-file"]).default("diffusers"),
  dtype: z.enum(["fp32", "fp16", "bf16"]).optional(),
  config: z.enum([...CHECKPOINT_CONFIGS, "auto"]).default("auto"),
  originalConfig: z.string().optional(),
  configFrom: z.string().optional(),
  vae: z.string().optional(),
  tokenizer: z.string().optional(),
  extractEma: z.boolean().default(false),
  overwrite: z.boolean().default(false),
});

/** A resolved `convert-ckpt` Job. */
export type ConvertCkptJob = z.infer<typeof ConvertCkptJob>;
