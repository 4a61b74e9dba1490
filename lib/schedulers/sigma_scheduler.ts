/**
 * What the k-diffusion-style Diffusers schedulers (Euler, Euler ancestral, LMS, Heun, KDPM2,
 * KDPM2 ancestral) share: the float32 alpha_bar table, input scaling by sigma, noising at a sigma
 * and the img2img slice, plus the derivative and Euler move that their steps are built from.
 * Each sampler keeps its own file with its `setTimesteps` and `step`.
 *
 * @module
 */
import { finiteAlphasCumprod } from "./betas.ts";
import { checkIndex, checkSameLength } from "./checks.ts";
import type { PredictionType, SchedulerConfig } from "./config.ts";
import { scaleBySigma } from "./k_sigmas.ts";
import { addNoiseSigma } from "./noise.ts";
import type { Img2ImgTimesteps, NoiseGenerator, Scheduler } from "./scheduler.ts";
import { img2imgSlice } from "./timesteps.ts";

const f32 = Math.fround;

/**
 * (x - denoised) / sigma in float32: the ODE derivative dx/dsigma (Karras et al. 2022, Eq. 1).
 *
 * @example
 * ```ts
 * import { derivativeOf } from "./sigma_scheduler.ts";
 * derivativeOf(new Float32Array([1]), new Float32Array([0]), 2); // [0.5]
 * ```
 */
export function derivativeOf(x: Float32Array, denoised: Float32Array, sigma: number): Float32Array {
  checkSameLength("derivative", x, denoised);
  const s = f32(sigma);
  const out = new Float32Array(x.length);
  for (let k = 0; k < out.length; k++) out[k] = f32(x[k]! - denoised[k]!) / s;
  return out;
}

/**
 * x' = x + d * dt in float32 (an Euler move with a precomputed derivative).
 *
 * @example
 * ```ts
 * import { eulerMove } from "./sigma_scheduler.ts";
 * eulerMove(new Float32Array([1]), new Float32Array([2]), -0.25); // [0.5]
 * ```
 */
export function eulerMove(x: Float32Array, d: Float32Array, dt: number): Float32Array {
  const h = f32(dt);
  const out = new Float32Array(x.length);
  for (let k = 0; k < out.length; k++) out[k] = x[k]! + f32(d[k]! * h);
  return out;
}

/**
 * Throws the RangeError Diffusers raises for `prediction_type: "sample"` in the schedulers that do
 * not implement it (Euler ancestral, KDPM2, KDPM2 ancestral).
 */
export function rejectSamplePrediction(name: string, predictionType: PredictionType): void {
  if (predictionType === "sample") {
    throw new RangeError(
      `${name}: prediction_type "sample" is not implemented in Diffusers; use epsilon or v_prediction`,
    );
  }
}

/**
 * Base of the k-diffusion-style Diffusers schedulers: holds the parsed config and the float32
 * alpha_bar table, and implements `scaleModelInput` (x / sqrt(sigma^2 + 1)), `addNoise`
 * (x0 + sigma * noise) and `img2imgTimesteps` on `sigmas`. Subclasses fill `timesteps`, `sigmas`
 * and `initNoiseSigma` in `setTimesteps` and implement `step`.
 */
export abstract class SigmaScheduler implements Scheduler {
  /** The parsed config. */
  readonly config: SchedulerConfig;
  /** Model evaluations per step. */
  abstract readonly order: number;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array = new Float64Array(0);
  initNoiseSigma = 1;
  noiseShape?: number[];
  /** float32 alpha_bar per training timestep. */
  protected readonly alphasCumprod: Float32Array;
  /** The class name used in error messages. */
  protected readonly schedulerName: string;

  /**
   * `config` is already parsed (with the class's own overrides); `name` prefixes error messages.
   */
  constructor(name: string, config: SchedulerConfig) {
    this.schedulerName = name;
    this.config = config;
    this.alphasCumprod = finiteAlphasCumprod(config);
  }

  /** Computes `timesteps`, `sigmas` and `initNoiseSigma` and resets history. */
  abstract setTimesteps(numInferenceSteps: number): void;

  /** One update from `timesteps[i]`; returns the new sample. */
  abstract step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array;

  /** Float32 x / sqrt(sigma^2 + 1) at `sigmas[i]`. */
  scaleModelInput(sample: Float32Array, i: number): Float32Array {
    checkIndex(this.schedulerName, i, this.timesteps.length);
    return scaleBySigma(sample, this.sigmas[i]!);
  }

  /** Diffusers `add_noise` at `sigmas[i]`: x0 + sigma * noise. */
  addNoise(original: Float32Array, noise: Float32Array, i: number): Float32Array {
    checkIndex(this.schedulerName, i, this.timesteps.length);
    return addNoiseSigma(original, noise, this.sigmas[i]!);
  }

  /** `setTimesteps(n)` then StableDiffusionImg2ImgPipeline.get_timesteps. */
  img2imgTimesteps(numInferenceSteps: number, strength: number): Img2ImgTimesteps {
    this.setTimesteps(numInferenceSteps);
    return img2imgSlice(this.timesteps, numInferenceSteps, strength, this.order);
  }
}
