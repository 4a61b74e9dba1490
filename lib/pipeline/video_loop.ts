/**
 * The denoising loop of text-to-video (Diffusers' AnimateDiffPipeline, 0.27): the latents stay
 * in the video layout `[1, C, F, h, w]` for the scheduler (its steps and ancestral noise draws
 * see that shape), and each model evaluation converts them to the motion UNet's frames-as-batch
 * layout `[clips * L, C, h, w]` and back.
 *
 * One step: scale the input; split the frames into context windows (one window of every frame
 * without `context`); evaluate every (pass, window) clip — the unconditional pass first, as
 * Diffusers' `torch.cat([latents] * 2)` — `windowsPerCall` windows per UNet call; give
 * each frame the mean of its windows' predictions (AnimateDiff-Evolved's "flat" fuse: the sum
 * over windows divided by their count, so one window is the plain run exactly); classifier-free
 * guidance; scheduler step.
 *
 * @module
 */
import type { ProgressCallback } from "../io/progress.ts";
import type { NoiseGenerator } from "../rng/mod.ts";
import type { Scheduler } from "../schedulers/mod.ts";
import { framesToVideo, videoToFrames } from "../tensor/frames.ts";
import { type ContextOptions, contextWindows } from "./context_windows.ts";
import { type Cond, guide, type NamedInput, type UnetCall } from "./denoise.ts";

/** A sub-prompt's conditioning for every frame (one entry: the same for all frames). */
export interface FrameConds {
  /** A1111 AND weight (1 for a plain prompt). */
  weight: number;
  /** One Cond per frame, or a single Cond shared by every frame. */
  frames: readonly Cond[];
}

/** What guides one step of a clip: the unconditional input and the (per-frame) sub-prompts. */
export interface VideoStepConditioning {
  uncond: Cond;
  conds: readonly FrameConds[];
}

/** Options of {@linkcode denoiseVideo}. */
export interface DenoiseVideoOptions {
  scheduler: Scheduler;
  /** Latents `[1, C, F, h, w]` at the first timestep's noise level. */
  latents: Float32Array;
  shape: [number, number, number, number, number];
  /** Conditioning for step `i` (an index into `scheduler.timesteps`). */
  conditioning: (i: number) => VideoStepConditioning;
  /** Classifier-free guidance scale; 1 or less skips the unconditional pass (as Diffusers). */
  guidanceScale: number;
  /** The motion UNet: frames as batch, `num_frames` fed by name. */
  unet: UnetCall;
  rng: NoiseGenerator;
  /** Frames the motion module's positions cover: no clip may be longer. */
  maxFrames: number;
  /** Sliding context windows; absent: one window of every frame. */
  context?: ContextOptions | undefined;
  /**
   * Windows evaluated together in one UNet call, each as its own clip (with every pass). Default
   * 1: a call holds one window, so memory stays that of one window whatever the clip's length;
   * more windows per call trade memory for fewer, larger calls.
   */
  windowsPerCall?: number | undefined;
  onProgress?: ProgressCallback | undefined;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function concatRows(rows: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let offset = 0;
  for (const r of rows) {
    out.set(r, offset);
    offset += r.length;
  }
  return out;
}

/** The batched encoder hidden states (and extra named rows) of a list of Conds, in order. */
function conditioningRows(
  rows: readonly Cond[],
): { hidden: Float32Array; shape: [number, number, number]; extra: Record<string, NamedInput> } {
  const first = rows[0]!.embedding;
  for (const r of rows) {
    if (r.embedding.tokens !== first.tokens || r.embedding.dim !== first.dim) {
      throw new TypeError(
        `Cannot batch conditionings of shapes [${r.embedding.tokens}, ${r.embedding.dim}] and ` +
          `[${first.tokens}, ${first.dim}]`,
      );
    }
  }
  const extra: Record<string, NamedInput> = {};
  for (const name of Object.keys(rows[0]!.added ?? {})) {
    const data = rows.map((r) => r.added![name]!);
    extra[name] = { data: concatRows(data), dims: [rows.length, data[0]!.length] };
  }
  return {
    hidden: concatRows(rows.map((r) => r.embedding.data)),
    shape: [rows.length, first.tokens, first.dim],
    extra,
  };
}

/** Splits `items` into chunks of at most `size`. */
function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Throws a RangeError when a clip of `frames` frames cannot be denoised in windows of at most
 * `maxFrames` (the motion module's positions): without context windows, or with longer ones.
 *
 * @example
 * ```ts
 * import { checkClipLength } from "./video_loop.ts";
 * checkClipLength(24, 16, { length: 16, overlap: 4 });
 * let message = "";
 * try { checkClipLength(24, 16, undefined); } catch (e) { message = (e as Error).message; }
 * console.assert(message.includes("--context-length 16"));
 * ```
 */
export function checkClipLength(
  frames: number,
  maxFrames: number,
  context: ContextOptions | undefined,
): void {
  const window = context === undefined ? frames : Math.min(frames, context.length);
  if (window > maxFrames) {
    throw new RangeError(
      context === undefined
        ? `A clip of ${frames} frames is longer than the motion module's ${maxFrames} frame ` +
          `positions; pass --context-length ${Math.min(16, maxFrames)} (sliding windows) or ` +
          `--frames ${maxFrames} or fewer`
        : `--context-length ${context.length} is longer than the motion module's ${maxFrames} ` +
          `frame positions; use --context-length ${maxFrames} or less`,
    );
  }
}

/**
 * Runs the loop and returns the final latents `[1, C, F, h, w]`. Guidance as Diffusers:
 * `eps = uncond + g * (cond - uncond)` (several AND sub-prompts: A1111's
 * `uncond + g * Σ wᵢ (condᵢ - uncond)`).
 *
 * @example
 * ```ts ignore
 * const latents = await denoiseVideo({
 *   scheduler, latents: noise, shape: [1, 4, 24, 64, 64], conditioning, guidanceScale: 7.5,
 *   unet: sd.unetCall("unet_motion"), rng, maxFrames: 32, context: { length: 16, overlap: 4 },
 * });
 * ```
 */
export async function denoiseVideo(options: DenoiseVideoOptions): Promise<Float32Array> {
  const { scheduler, shape } = options;
  const [batch, channels, frames, height, width] = shape;
  if (batch !== 1) {
    throw new TypeError(`Cannot denoise ${batch} videos at once; the loop takes one clip`);
  }
  checkClipLength(frames, options.maxFrames, options.context);
  const frameSize = channels * height * width;
  const size = frames * frameSize;
  const total = scheduler.timesteps.length;
  const useUncond = options.guidanceScale > 1;
  // Ancestral and SDE samplers draw their noise in the video's own shape, as Diffusers does.
  scheduler.noiseShape = [...shape];
  let latents = options.latents;
  options.onProgress?.({ task: "denoise", step: 0, total });
  for (let i = 0; i < total; i++) {
    const t = scheduler.timesteps[i]!;
    // 1. Scale the input, then to frames-as-batch: [1, C, F, h, w] -> [F, C, h, w]
    const xIn = scheduler.scaleModelInput(latents, i);
    const xFrames = videoToFrames(xIn, shape);
    // 2. The passes of this step: unconditional first, then each sub-prompt
    const step = options.conditioning(i);
    const passes: Array<readonly Cond[]> = [];
    if (useUncond) passes.push([step.uncond]);
    for (const c of step.conds) passes.push(c.frames);
    for (const p of passes) {
      if (p.length !== 1 && p.length !== frames) {
        throw new TypeError(`Expected 1 or ${frames} per-frame conditionings, got ${p.length}`);
      }
    }
    const perFrame = passes.some((p) => p.length > 1);
    // 3. Windows, grouped into calls of windows of one length
    const windows = options.context === undefined
      ? [range(frames)]
      : contextWindows(frames, i, options.context);
    const counts = new Uint32Array(frames);
    for (const w of windows) for (const f of w) counts[f]!++;
    const byLength = new Map<number, number[][]>();
    for (const w of windows) byLength.set(w.length, [...(byLength.get(w.length) ?? []), w]);
    const sums = passes.map(() => new Float32Array(size));
    for (const [length, group] of byLength) {
      const perCall = options.windowsPerCall ?? 1;
      if (!Number.isInteger(perCall) || perCall < 1) {
        throw new RangeError(`--context-batch must be a positive integer, got ${perCall}`);
      }
      for (const call of chunks(group, perCall)) {
        // [passes * windows * L, C, h, w]: pass-major, then window, then frame
        const clips = passes.length * call.length;
        const sample = new Float32Array(clips * length * frameSize);
        const rows: Cond[] = [];
        passes.forEach((pass, p) => {
          call.forEach((window, w) => {
            window.forEach((f, j) => {
              const at = ((p * call.length + w) * length + j) * frameSize;
              sample.set(xFrames.subarray(f * frameSize, (f + 1) * frameSize), at);
              if (perFrame) rows.push(pass[pass.length === 1 ? 0 : f]!);
            });
            // One row per clip: the UNet repeats it over the clip's frames.
            if (!perFrame) rows.push(pass[0]!);
          });
        });
        const cond = conditioningRows(rows);
        const out = await options.unet({
          sample,
          sampleShape: [clips * length, channels, height, width],
          timestep: t,
          hiddenStates: cond.hidden,
          hiddenShape: cond.shape,
          extra: {
            ...cond.extra,
            num_frames: { data: Float32Array.of(length), dims: [1] },
          },
        });
        // 4. Sum each frame's predictions over its windows
        passes.forEach((_, p) => {
          const sum = sums[p]!;
          call.forEach((window, w) => {
            window.forEach((f, j) => {
              const from = ((p * call.length + w) * length + j) * frameSize;
              const block = out.subarray(from, from + frameSize);
              const base = f * frameSize;
              for (let k = 0; k < frameSize; k++) sum[base + k]! += block[k]!;
            });
          });
        });
      }
    }
    // 5. Mean over windows, back to the video layout, passes concatenated
    const predictions = new Float32Array(passes.length * size);
    sums.forEach((sum, p) => {
      for (let f = 0; f < frames; f++) {
        const n = counts[f]!;
        if (n === 0) throw new RangeError(`Frame ${f} is in no context window at step ${i}`);
        const base = f * frameSize;
        for (let k = 0; k < frameSize; k++) sum[base + k] = sum[base + k]! / n;
      }
      predictions.set(framesToVideo(sum, shape), p * size);
    });
    // 6. Guidance, then the scheduler's step on the video latents
    const eps = guide(predictions, size, useUncond, {
      uncond: step.uncond,
      conds: step.conds.map((c) => ({ cond: c.frames[0]!, weight: c.weight })),
    }, options.guidanceScale);
    latents = scheduler.step(eps, i, latents, options.rng);
    options.onProgress?.({ task: "denoise", step: i + 1, total });
  }
  return latents;
}
