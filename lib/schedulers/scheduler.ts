/**
 * The `Scheduler` interface every sampler implements (Diffusers' calling convention) and the
 * noise source its stochastic steps draw from.
 *
 * @module
 */

import type { NoiseGenerator } from "../rng/mod.ts";

/** A source of standard-normal noise (`TorchCpuGenerator`, `PhiloxGenerator` from lib/rng). */
export type { NoiseGenerator };

/** What `Scheduler.img2imgTimesteps` returns. */
export interface Img2ImgTimesteps {
  /** The timesteps the img2img loop runs, `timesteps.slice(startIndex)`. */
  timesteps: Float64Array;
  /** Index into the full `timesteps` of the first img2img step (t_start * order). */
  startIndex: number;
}

/**
 * A stateful sampler with the calling convention of a Diffusers scheduler.
 *
 * The denoising loop is
 * ```ts
 * import { createScheduler } from "./mod.ts";
 * import { TorchCpuGenerator } from "../rng/mod.ts";
 * const model = (x: Float32Array, t: number) => x.map((v) => 0.1 * v + 0.05 * Math.sin(t / 100));
 * const s = createScheduler("euler-a", { beta_schedule: "scaled_linear" });
 * const rng = new TorchCpuGenerator(0);
 * s.setTimesteps(20);
 * let x: Float32Array = rng.randn([1, 4, 8, 8]).map((v) => v * s.initNoiseSigma);
 * for (let i = 0; i < s.timesteps.length; i++) {
 *   const eps = model(s.scaleModelInput(x, i), s.timesteps[i]!);
 *   x = s.step(eps, i, x, rng);
 * }
 * ```
 * `i` is always an index into the full `timesteps` array; an img2img loop runs `i` from the
 * `startIndex` returned by `img2imgTimesteps`. Stochastic steps draw their noise with
 * `rng.randn(noiseShape ?? [sample.length])`: torch's CPU `randn` stream depends only on the
 * element count, so the flat shape gives the same numbers as `[1, 4, 64, 64]`.
 */
export interface Scheduler {
  /** Computes `timesteps` (and `sigmas`) for a run of `numInferenceSteps` and resets history. */
  setTimesteps(numInferenceSteps: number): void;
  /** Exactly Diffusers' `scheduler.timesteps` after `set_timesteps`. */
  readonly timesteps: Float64Array;
  /** Diffusers' `scheduler.sigmas` (float32 values), for schedulers that have them. */
  readonly sigmas?: Float64Array;
  /** Standard deviation of the initial noise. */
  readonly initNoiseSigma: number;
  /** Model evaluations per step (2 for Heun / KDPM2). */
  readonly order: number;
  /** Shape handed to `rng.randn`; unset means `[sample.length]`. */
  noiseShape?: number[];
  /** Scales the denoising model input at `timesteps[i]`. */
  scaleModelInput(sample: Float32Array, i: number): Float32Array;
  /** One update from `timesteps[i]` to the next; returns the new sample. */
  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array;
  /** Noises a clean sample to the noise level of `timesteps[i]` (img2img start). */
  addNoise(original: Float32Array, noise: Float32Array, i: number): Float32Array;
  /**
   * Calls `setTimesteps(numInferenceSteps)` and returns the img2img tail, as
   * StableDiffusionImg2ImgPipeline.get_timesteps does (`startIndex` = t_start * order).
   */
  img2imgTimesteps(numInferenceSteps: number, strength: number): Img2ImgTimesteps;
}
