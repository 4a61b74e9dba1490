/**
 * The Job of `denoise animate`: every generate field that applies to a clip (not batches or
 * guidance rescale, which Diffusers' AnimateDiffPipeline lacks), plus the motion module, its
 * motion LoRAs, the clip's length and frame rate, sliding context windows and prompt travel.
 *
 * @module
 */
import { z } from "zod";
import { defineJob } from "./define.ts";
import { diffusionFields } from "./diffusion.ts";

const {
  batchSize: _batchSize,
  batchCount: _batchCount,
  guidanceRescale: _guidanceRescale,
  ...clipFields
} = diffusionFields;

/** The Job of `denoise animate`. */
export const AnimateJob = defineJob("animate", {
  ...clipFields,
  /** A motion module: AnimateDiff file (.ckpt/.safetensors), MotionAdapter folder or alias. */
  motionModule: z.string().min(1).optional(),
  /** Frames of the clip. */
  frames: z.number().int().min(1).max(100000).default(16),
  /** Frames per second of the written animation. */
  fps: z.number().positive().max(1000).default(8),
  /** Motion LoRAs (camera motions) merged into the motion module, with their scales. */
  motionLora: z.array(
    z.object({ path: z.string().min(1), scale: z.number().default(1) }).strict(),
  ).optional(),
  /** Sliding context windows of this many frames (unset: the whole clip at once). */
  contextLength: z.number().int().min(1).max(1024).optional(),
  /** Frames shared by neighbouring windows (with contextLength; default 4). */
  contextOverlap: z.number().int().min(0).max(1023).optional(),
  /** AnimateDiff-Evolved context_stride (with contextLength; default 1). */
  contextStride: z.number().int().min(1).max(16).optional(),
  /** Window schedule (with contextLength; default standard_uniform). */
  contextSchedule: z.enum(["standard_uniform", "looped_uniform"]).optional(),
  /** looped_uniform only: windows that join the last frames to the first. */
  closedLoop: z.boolean().optional(),
  /** Prompt travel: frame number -> prompt, interpolated between keyframes. */
  promptMap: z.record(z.string(), z.string()).optional(),
});

/** A `denoise animate` Job. */
export type AnimateJob = z.infer<typeof AnimateJob>;
