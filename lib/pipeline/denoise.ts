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

/**
 * Extra named UNet inputs that go with one conditioning, one row each (SDXL's pooled
 * `text_embeds` and `time_ids`, say): the loop repeats each row for every image of the pass
 * and feeds it under its name, `[batch, row length]`.
 */
export type AddedConditioning = Readonly<Record<string, Float32Array>>;

/** One conditioning: the embedding and its extra named inputs. */
export interface Cond {
  embedding: Embedding;
  added?: AddedConditioning;
}

/** What guides one step: the unconditional input and the weighted sub-prompts (AND). */
export interface StepConditioning {
  uncond: Cond;
  conds: Array<{ cond: Cond; weight: number }>;
}

/** A tensor fed to a named graph input. */
export interface NamedInput {
  data: Float32Array;
  dims: readonly number[];
}

/** One batched UNet evaluation (the loop concatenates its passes along the batch axis). */
export interface UnetInput {
  /** `[B, C, H, W]` scaled latents (plus any extra channels). */
  sample: Float32Array;
  sampleShape: [number, number, number, number];
  timestep: number;
  /** `[B, S, D]` encoder hidden states. */
  hiddenStates: Float32Array;
  hiddenShape: [number, number, number];
  /**
   * Every other graph input by name: SDXL `text_embeds`/`time_ids`, an LCM's `timestep_cond`,
   * ControlNet residuals (`down_block_additional_residual_k`, `mid_block_additional_residual`),
   * extra tokens. The UNet call feeds each in the type its graph declares.
   */
  extra: Record<string, NamedInput>;
  /**
   * The UNet component to run (default `"unet"`): a hook that feeds inputs the plain graph lacks
   * (ControlNet residuals) switches to the variant that takes them (`"unet_controlnet"`).
   */
  unet?: string;
}

/** Runs the UNet on one batched input and returns its output, `[B, C, H, W]`. */
export type UnetCall = (input: UnetInput) => Promise<Float32Array>;

/** Where the loop is when it calls a hook. */
export interface StepState {
  /** Index into `scheduler.timesteps`. */
  i: number;
  /** Position within this loop's timesteps (0 at the start index, as a pipeline counts). */
  loopIndex: number;
  /** Number of timesteps this loop runs (a pipeline's `len(timesteps)`). */
  loopLength: number;
  /** The timestep. */
  t: number;
  /** Images per pass. */
  n: number;
  /** The passes of this step, in batch order (the unconditional one first when present). */
  passes: readonly Cond[];
  /** True when the first pass is the unconditional one (classifier-free guidance). */
  withUncond: boolean;
  /** The scaled latents of one pass, `[n, C, H, W]`, before any extra channels. */
  latentInput: Float32Array;
}

/**
 * A plug-in of the denoising loop: what a feature adds to each step without a special case in
 * the loop. Inpainting adds mask channels or blends the known region back; an LCM adds its
 * guidance embedding; ControlNet adds residuals computed from the same step's input.
 */
export interface LoopHook {
  /** Changes the batched UNet input of a step before the call. */
  beforeUnet?(input: UnetInput, state: StepState): UnetInput | Promise<UnetInput>;
  /** Changes the latents after the scheduler's step `i`. */
  afterStep?(latents: Float32Array, i: number): Float32Array;
}

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
  /**
   * "cfg" (default): classifier-free guidance above scale 1. "embedded": the scale is already in
   * the model's input (an LCM's guidance embedding), so there is no unconditional pass and no
   * CFG combination, as Diffusers' LatentConsistencyModelPipeline.
   */
  guidance?: "cfg" | "embedded";
  /** Guidance rescale (Diffusers `guidance_rescale`, 0 = off). */
  guidanceRescale?: number;
  unet: UnetCall;
  rng: NoiseGenerator;
  /** Plug-ins, applied in order at each step. */
  hooks?: readonly LoopHook[];
  onProgress?: ProgressCallback;
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
  const useUncond = options.guidance !== "embedded" && options.guidanceScale > 1;
  const hooks = options.hooks ?? [];
  let latents = options.latents;
  scheduler.noiseShape = [...shape];
  options.onProgress?.({ task: "denoise", step: 0, total: total - start });
  for (let i = start; i < total; i++) {
    const t = scheduler.timesteps[i]!;
    const xIn = scheduler.scaleModelInput(latents, i);
    const step = options.conditioning(i);
    const passes: Cond[] = [];
    if (useUncond) passes.push(step.uncond);
    for (const c of step.conds) passes.push(c.cond);
    const batch = passes.length * n;
    // Diffusers order: every image of the unconditional pass, then every image of each prompt.
    const hidden = concatEmbeddings(
      passes.flatMap((p) => Array.from({ length: n }, () => p.embedding)),
    );
    const extra: Record<string, NamedInput> = {};
    for (const name of Object.keys(passes[0]!.added ?? {})) {
      const rows = repeatEach(passes.map((p) => p.added![name]!), n);
      extra[name] = { data: concatArrays(rows), dims: [batch, rows[0]!.length] };
    }
    let input: UnetInput = {
      sample: concatArrays(passes.map(() => xIn)),
      sampleShape: [batch, channels, height, width],
      timestep: t,
      hiddenStates: hidden.data,
      hiddenShape: [batch, hidden.tokens, hidden.dim],
      extra,
    };
    const state: StepState = {
      i,
      loopIndex: i - start,
      loopLength: total - start,
      t,
      n,
      passes,
      withUncond: useUncond,
      latentInput: xIn,
    };
    for (const hook of hooks) {
      if (hook.beforeUnet) input = await hook.beforeUnet(input, state);
    }
    const out = await options.unet(input);
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
    for (const hook of hooks) {
      if (hook.afterStep) latents = hook.afterStep(latents, i);
    }
    options.onProgress?.({ task: "denoise", step: i - start + 1, total: total - start });
    // onnxruntime-node resolves run() without giving the event loop a turn, so a whole loop
    // would run as one chain of microtasks: signals (Ctrl-C) and timers wait until it ends.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return latents;
}

/**
 * Combines the batched UNet outputs (`size` values per pass, the unconditional pass first when
 * `useUncond`) into one noise prediction: Diffusers' CFG, or A1111's composable AND sum.
 */
export function guide(
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

/**
 * A hook that appends channels to every image's UNet input: `[B, C, H, W]` becomes
 * `[B, C + E, H, W]`, pass after pass (9-channel inpainting: the mask and the masked-image
 * latents). `extra` holds `[n, E, H, W]`, one block per image of a pass.
 *
 * @example
 * ```ts
 * import { extraChannelsHook } from "./denoise.ts";
 * const hook = extraChannelsHook({ data: new Float32Array([9]), channels: 1 });
 * const input = { sample: new Float32Array([1, 2]), sampleShape: [2, 1, 1, 1] as [number, number, number, number],
 *   timestep: 1, hiddenStates: new Float32Array(2), hiddenShape: [2, 1, 1] as [number, number, number], extra: {} };
 * const state = { i: 0, loopIndex: 0, loopLength: 1, t: 1, n: 1, passes: [], withUncond: true, latentInput: new Float32Array([1]) };
 * const out = await hook.beforeUnet!(input, state);
 * console.assert(out.sample.join() === "1,9,2,9" && out.sampleShape[1] === 2);
 * ```
 */
export function extraChannelsHook(extra: { data: Float32Array; channels: number }): LoopHook {
  return {
    beforeUnet(input, state) {
      const [batch, c, h, w] = input.sampleShape;
      const plane = h * w;
      const e = extra.channels;
      const out = new Float32Array(batch * (c + e) * plane);
      for (let b = 0; b < batch; b++) {
        const k = b % state.n;
        const base = b * (c + e) * plane;
        out.set(input.sample.subarray(b * c * plane, (b + 1) * c * plane), base);
        out.set(extra.data.subarray(k * e * plane, (k + 1) * e * plane), base + c * plane);
      }
      return { ...input, sample: out, sampleShape: [batch, c + e, h, w] };
    },
  };
}

/**
 * A hook that feeds the same rows to a named UNet input in every pass: `rows` is `[n, D]`, one
 * row per image, and the input gets `[passes * n, D]` (an LCM's `timestep_cond`).
 *
 * @example
 * ```ts
 * import { passRowsHook } from "./denoise.ts";
 * const hook = passRowsHook("timestep_cond", new Float32Array([1, 2]), 2);
 * console.assert(typeof hook.beforeUnet === "function");
 * ```
 */
export function passRowsHook(name: string, rows: Float32Array, width: number): LoopHook {
  return {
    beforeUnet(input, state) {
      const data = concatArrays(state.passes.map(() => rows));
      return {
        ...input,
        extra: { ...input.extra, [name]: { data, dims: [data.length / width, width] } },
      };
    },
  };
}
