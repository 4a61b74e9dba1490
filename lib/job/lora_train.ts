/**
 * The Job of `denoise lora-train`: every choice that decides what is trained (stored in
 * checkpoints, so `--resume` replays it), but not how the machine runs it (threads, device).
 *
 * @module
 */
import { z } from "zod";
import { defineJob, Seed } from "./define.ts";

/** Learning-rate schedules (Diffusers' `get_scheduler` names). */
export const LORA_TRAIN_LR_SCHEDULERS = [
  "constant",
  "constant_with_warmup",
  "cosine",
  "linear",
] as const;

/** The Job of `denoise lora-train` (flags as fields; `--job` replays it). */
export const LoraTrainJob = defineJob("lora-train", {
  /** Dataset folder: images with .txt captions (kohya `N_name` folders) or a metadata.jsonl. */
  dataset: z.string().min(1),
  /** The LoRA file to write (.safetensors). */
  output: z.string().min(1),
  /** Base model: a Diffusers folder, single file or alias. */
  model: z.string().min(1),
  /** LoRA rank (kohya network_dim). */
  rank: z.number().int().min(1).max(1024).default(4),
  /** kohya network_alpha: modules are scaled by alpha / rank (default: the rank, scale 1). */
  alpha: z.number().positive().optional(),
  /** Learning rate. */
  lr: z.number().positive().max(1).default(1e-4),
  /** Learning rate of the text encoders (default: lr). */
  textEncoderLr: z.number().positive().max(1).optional(),
  /** Optimiser steps; or `epochs` (default 100 epochs). */
  steps: z.number().int().min(1).optional(),
  epochs: z.number().int().min(1).optional(),
  batchSize: z.number().int().min(1).max(64).default(1),
  /** Training size in pixels (square side, or the bucket area's side). */
  resolution: z.number().int().min(64).max(4096).multipleOf(8).default(512),
  seed: Seed.optional(),
  /** Train LoRA modules on the text encoder(s) too. */
  textEncoder: z.boolean().default(false),
  /** Diffusers' noise_offset (0 = off). */
  noiseOffset: z.number().min(0).max(1).default(0),
  /** Min-SNR weighting gamma (Diffusers' --snr_gamma; 5 is the paper's value). */
  snrGamma: z.number().positive().optional(),
  lrScheduler: z.enum(LORA_TRAIN_LR_SCHEDULERS).default("constant"),
  lrWarmupSteps: z.number().int().min(0).default(0),
  /** Write a checkpoint every this many steps. */
  saveEvery: z.number().int().min(1).optional(),
  /** Checkpoint folder (default: `<output stem>-checkpoints` beside the output). */
  checkpointDir: z.string().min(1).optional(),
  /** Checkpoints kept (the newest). */
  keepCheckpoints: z.number().int().min(1).default(2),
  /** Continue from a checkpoint folder (or one of its step-N folders). */
  resume: z.string().min(1).optional(),
  /** After training, make an image of this prompt with the LoRA. */
  validationPrompt: z.string().optional(),
  /** Recompute activations in the backward pass: less memory, slower steps. */
  checkpointing: z.boolean().default(false),
  /** kohya aspect-ratio buckets instead of square crops. */
  buckets: z.boolean().default(false),
  /** Where the square crop is cut (a random crop is drawn once per image: latents are cached). */
  crop: z.enum(["center", "random"]).default("center"),
  /** Random horizontal flips (the book's random_flip). */
  flip: z.boolean().default(true),
  /** Override the scheduler config's prediction type. */
  predictionType: z.enum(["epsilon", "v_prediction"]).optional(),
}).refine((j) => j.steps === undefined || j.epochs === undefined, {
  message: "pass --steps or --epochs, not both",
  path: ["steps"],
});

/** A resolved `lora-train` Job. */
export type LoraTrainJob = z.infer<typeof LoraTrainJob>;
