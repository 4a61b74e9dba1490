/**
 * The denoising loop shared by txt2img, img2img and inpainting: for each entry of the scheduler's
 * timesteps, scale the input, evaluate the guided model, and step — the call order and RNG draws
 * of a Diffusers pipeline, so stochastic samplers consume the generator identically.
 *
 * @module
 */
import type { ProgressCallback } from "../io/progress.ts";
import type { NoiseGenerator } from "../rng/mod.ts";
import type { Scheduler } from "../schedulers/mod.ts";

/** A conditioning tensor `[1, tokens, dim]` for the UNet's `encoder_hidden_states`. */
export interface Embedding {
  data: Float32Array;
  tokens: number;
  dim: number;
}

/** The SDXL extras for one conditioning: pooled text embeds and the size/crop time ids. */
export interface AddedConditioning {
  textEmbeds: Float32Array;
  timeIds: Float32Array;
}

/** One conditioning: the embedding and, for SDXL, its pooled extras. */
export interface Cond {
  embedding: Embedding;
  added?: AddedConditioning;
}

/** What guides one step: the unconditional input and the weighted sub-prompts (AND). */
export interface StepConditioning {
  uncond: Cond;
  conds: Array<{ cond: Cond; weight: number }>;
}

/** One UNet evaluation on a batch (the caller concatenates along the batch axis). */
export type UnetCall = (input: {
  sample: Float32Array;
  sampleShape: [number, number, number, number];
  timestep: number;
  hiddenStates: Float32Array;
  hiddenShape: [number, number, number];
  textEmbeds?: Float32Array;
  timeIds?: Float32Array;
  /** LCM guidance embedding `[batch, time_cond_proj_dim]` (the UNet's `timestep_cond`). */
  timestepCond?: Float32Array;
}) => Promise<Float32Array>;

/** Options for {@linkcode denoiseLatents}. */
export interface DenoiseOptions {
  scheduler: Scheduler;
  /** Latents `[N, C, H, W]` at the start index's noise level (N images, one prompt). */
  latents: Float32Array;
  shape: [number, number, number, number];
  /** Index into `scheduler.timesteps` to start from (img2img), default 0. */
  startIndex?: number;
  /** Index into `scheduler.timesteps` to stop before (SDXL `denoising_end`), default all. */
  endIndex?: number;
  /** Conditioning for step `i` (step index counts model evaluations). */
  conditioning: (i: number) => StepConditioning;
  /** Classifier-free guidance scale; 1 or less skips the unconditional pass (as Diffusers). */
  guidanceScale: number;
  /** Guidance rescale (Diffusers `guidance_rescale`, 0 = off). */
  guidanceRescale?: number;
  unet: UnetCall;
  rng: NoiseGenerator;
  /** Called after each step with the new latents (inpainting blends known regions here). */
  afterStep?: (latents: Float32Array, i: number) => Float32Array;
  onProgress?: ProgressCallback;
  /** Extra channels concatenated to the scaled input (9-channel inpainting: mask + masked latents). */
  extraChannels?: { data: Float32Array; channels: number };
  /**
   * LCM guidance embedding `[N, dim]`, one row per image (lib/pipeline/lcm.ts). When set, the
   * guidance scale is already in it: no unconditional pass and no CFG combination, as Diffusers'
   * LatentConsistencyModelPipeline; each pass of a step gets these rows.
   */
  timestepCond?: Float32Array;
}

function concatEmbeddings(
  embeddings: Embedding[],
): { data: Float32Array; tokens: number; dim: number } {
  const tokens = Math.max(...embeddings.map((e) => e.tokens));
  const dim = embeddings[0]!.dim;
  for (const e of embeddings) {
    if (e.tokens !== tokens || e.dim !== dim) {
      throw new TypeError(
        `Cannot batch conditionings of shapes [${e.tokens}, ${e.dim}] and [${tokens}, ${dim}]`,
      );
    }
  }
  const data = new Float32Array(embeddings.length * tokens * dim);
  embeddings.forEach((e, k) => data.set(e.data, k * tokens * dim));
  return { data, tokens, dim };
}

function concatArrays(arrays: Float32Array[]): Float32Array {
  const out = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const a of arrays) {
    out.set(a, offset);
    offset += a.length;
  }
  return out;
}

/** Joins the latent input with extra channels per batch item: `[N, C+E, H, W]`. */
function withExtraChannels(
  x: Float32Array,
  n: number,
  channels: number,
  plane: number,
  extra: { data: Float32Array; channels: number },
): Float32Array {
  const e = extra.channels;
  const out = new Float32Array(n * (channels + e) * plane);
  for (let k = 0; k < n; k++) {
    const base = k * (channels + e) * plane;
    out.set(x.subarray(k * channels * plane, (k + 1) * channels * plane), base);
    out.set(extra.data.subarray(k * e * plane, (k + 1) * e * plane), base + channels * plane);
  }
  return out;
}

/** Repeats each array `times` times, in order: [a, a, b, b] for times 2. */
function repeatEach(arrays: Float32Array[], times: number): Float32Array[] {
  return arrays.flatMap((a) => Array.from({ length: times }, () => a));
}

/**
 * Runs the loop and returns the final latents. Guidance follows Diffusers:
 * `eps = uncond + g * (cond - uncond)`; with several AND sub-prompts (composable diffusion,
 * A1111): `eps = uncond + g * Σ wᵢ (condᵢ - uncond)`. All passes of a step run as one batched
 * UNet call, unconditional first.
 */
export async function denoiseLatents(options: DenoiseOptions): Promise<Float32Array> {
  const { scheduler, shape } = options;
  const [n, channels, height, width] = shape;
  const plane = height * width;
  // Guidance is elementwise, so each pass's block of n images is handled as one vector.
  const size = n * channels * plane;
  const start = options.startIndex ?? 0;
  const total = Math.min(scheduler.timesteps.length, options.endIndex ?? Infinity);
  // Diffusers: do_classifier_free_guidance = guidance_scale > 1 (turbo models run with 0).
  // LCM with a guidance embedding: one pass with the prompt only.
  const useUncond = options.timestepCond === undefined && options.guidanceScale > 1;
  let latents = options.latents;
  scheduler.noiseShape = [...shape];
  options.onProgress?.({ task: "denoise", step: 0, total: total - start });
  for (let i = start; i < total; i++) {
    const t = scheduler.timesteps[i]!;
    let xIn = scheduler.scaleModelInput(latents, i);
    if (options.extraChannels) {
      xIn = withExtraChannels(xIn, n, channels, plane, options.extraChannels);
    }
    const step = options.conditioning(i);
    const passes: Cond[] = [];
    if (useUncond) passes.push(step.uncond);
    for (const c of step.conds) passes.push(c.cond);
    const batch = passes.length * n;
    // Diffusers order: every image of the unconditional pass, then every image of each prompt.
    const hidden = concatEmbeddings(
      passes.flatMap((p) => Array.from({ length: n }, () => p.embedding)),
    );
    const sample = concatArrays(passes.map(() => xIn));
    const added = passes[0]!.added;
    const out = await options.unet({
      sample,
      sampleShape: [batch, xIn.length / (n * plane), height, width],
      timestep: t,
      hiddenStates: hidden.data,
      hiddenShape: [batch, hidden.tokens, hidden.dim],
      ...(added
        ? {
          textEmbeds: concatArrays(repeatEach(passes.map((p) => p.added!.textEmbeds), n)),
          timeIds: concatArrays(repeatEach(passes.map((p) => p.added!.timeIds), n)),
        }
        : {}),
      ...(options.timestepCond
        ? { timestepCond: concatArrays(passes.map(() => options.timestepCond!)) }
        : {}),
    });
    const eps = guide(out, size, useUncond, step, options.guidanceScale);
    if (options.guidanceRescale && options.guidanceRescale > 0 && useUncond) {
      const item = channels * plane;
      for (let k = 0; k < n; k++) {
        rescaleNoise(
          eps.subarray(k * item, (k + 1) * item),
          out.subarray(size + k * item, size + (k + 1) * item),
          options.guidanceRescale,
        );
      }
    }
    latents = scheduler.step(eps, i, latents, options.rng);
    if (options.afterStep) latents = options.afterStep(latents, i);
    options.onProgress?.({ task: "denoise", step: i - start + 1, total: total - start });
  }
  return latents;
}

/** Combines the batched UNet outputs into one noise prediction. */
function guide(
  out: Float32Array,
  size: number,
  useUncond: boolean,
  step: StepConditioning,
  g: number,
): Float32Array {
  if (!useUncond) {
    // No unconditional pass: the weighted sum of the sub-prompt predictions.
    if (step.conds.length === 1) return out.slice(0, size);
    const eps = new Float32Array(size);
    const wsum = step.conds.reduce((s, c) => s + c.weight, 0);
    step.conds.forEach((c, k) => {
      const o = out.subarray(k * size, (k + 1) * size);
      for (let j = 0; j < size; j++) eps[j]! += (c.weight / wsum) * o[j]!;
    });
    return eps;
  }
  const uncond = out.subarray(0, size);
  const eps = new Float32Array(size);
  if (step.conds.length === 1 && step.conds[0]!.weight === 1) {
    // Diffusers: noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
    const cond = out.subarray(size, 2 * size);
    for (let j = 0; j < size; j++) {
      eps[j] = Math.fround(uncond[j]! + Math.fround(g * Math.fround(cond[j]! - uncond[j]!)));
    }
    return eps;
  }
  // A1111 composable diffusion: uncond + g * Σ wᵢ (condᵢ - uncond)
  for (let j = 0; j < size; j++) {
    let acc = 0;
    step.conds.forEach((c, k) => {
      acc += c.weight * (out[(k + 1) * size + j]! - uncond[j]!);
    });
    eps[j] = uncond[j]! + g * acc;
  }
  return eps;
}

/** Diffusers `rescale_noise_cfg` (Lin et al. 2023, Sec. 3.4), in place on `eps`. */
function rescaleNoise(eps: Float32Array, cond: Float32Array, phi: number): void {
  const std = (a: Float32Array) => {
    let mean = 0;
    for (const v of a) mean += v;
    mean /= a.length;
    let s = 0;
    for (const v of a) s += (v - mean) ** 2;
    return Math.sqrt(s / (a.length - 1));
  };
  const ratio = std(cond) / std(eps);
  for (let j = 0; j < eps.length; j++) {
    const rescaled = eps[j]! * ratio;
    eps[j] = phi * rescaled + (1 - phi) * eps[j]!;
  }
}
