/**
 * What the alpha_bar-based (DDPM-family) Diffusers schedulers (DDIM, DDPM, PNDM, LCM, TCD) share:
 * integer timesteps, the float32 alpha_bar table, the x0 / eps conversion of a model output,
 * clipping, and the `Scheduler` methods that do not depend on the sampler (no input scaling,
 * `add_noise` at a training timestep, the img2img slice). Each sampler keeps its own file with its
 * `setTimesteps` and `step`.
 *
 * @module
 */
import { computeAlphasCumprod } from "./betas.ts";
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import type { PredictionType, SchedulerConfig, TimestepSpacing } from "./config.ts";
import { addNoiseAlphas } from "./noise.ts";
import { numpyLinspace, roundHalfEven, sqrt32 } from "./numpy.ts";
import type { Img2ImgTimesteps, NoiseGenerator, Scheduler } from "./scheduler.ts";
import { thresholdSample } from "./thresholding.ts";
import { img2imgSlice, spacedTimesteps } from "./timesteps.ts";

const f32 = Math.fround;

/**
 * Integer timesteps of the DDPM-family schedulers (DDIM, DDPM): like `spacedTimesteps`, but
 * linspace is rounded (numpy round half to even) before the int64 cast.
 */
export function integerTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  n: number,
  stepsOffset: number,
): Float64Array {
  if (spacing === "linspace") {
    return numpyLinspace(0, numTrainTimesteps - 1, n).map(roundHalfEven).reverse();
  }
  return spacedTimesteps(spacing, numTrainTimesteps, n, stepsOffset);
}

/**
 * The clean-sample and noise estimates from a model output at alpha_bar `alphaProd`, in float32
 * (DDIM Eq. 12 for epsilon; Salimans & Ho 2022 for v): epsilon: x0 = (x - sqrt(1 - a) eps) /
 * sqrt(a); sample: eps = (x - sqrt(a) x0) / sqrt(1 - a); v: x0 = sqrt(a) x - sqrt(1 - a) v,
 * eps = sqrt(a) v + sqrt(1 - a) x.
 */
export function predictOriginalAndNoise(
  predictionType: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  alphaProd: number,
): { x0: Float32Array; eps: Float32Array } {
  checkSameLength("step", modelOutput, sample);
  const sa = sqrt32(alphaProd);
  const sb = sqrt32(f32(1 - alphaProd));
  const n = sample.length;
  const x0 = new Float32Array(n);
  let eps: Float32Array = new Float32Array(n);
  if (predictionType === "epsilon") {
    for (let k = 0; k < n; k++) x0[k] = f32(sample[k]! - f32(sb * modelOutput[k]!)) / sa;
    eps = modelOutput;
  } else if (predictionType === "sample") {
    x0.set(modelOutput);
    for (let k = 0; k < n; k++) eps[k] = f32(sample[k]! - f32(sa * modelOutput[k]!)) / sb;
  } else {
    for (let k = 0; k < n; k++) {
      x0[k] = f32(sa * sample[k]!) - f32(sb * modelOutput[k]!);
      eps[k] = f32(sa * modelOutput[k]!) + f32(sb * sample[k]!);
    }
  }
  return { x0, eps };
}

/** Applies Diffusers' `thresholding` / `clip_sample` to a predicted x0. */
export function clipOriginal(
  x0: Float32Array,
  config: SchedulerConfig,
  batch = 1,
): Float32Array {
  if (config.thresholding) {
    return thresholdSample(x0, config.dynamicThresholdingRatio, config.sampleMaxValue, batch);
  }
  if (config.clipSample) {
    const r = config.clipSampleRange;
    return x0.map((v) => Math.min(Math.max(v, -r), r));
  }
  return x0;
}

/**
 * Base of the alpha_bar-based Diffusers schedulers: holds the parsed config, the float32
 * alpha_bar table and `final_alpha_cumprod`, and implements `scaleModelInput` (identity),
 * `addNoise` / `addNoiseAtTimestep` (Ho et al. 2020 Eq. 4) and `img2imgTimesteps`. Subclasses
 * fill `timesteps` in `setTimesteps` and implement `step`.
 */
export abstract class AlphaScheduler implements Scheduler {
  /** The parsed config. */
  readonly config: SchedulerConfig;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: Float64Array = new Float64Array(0);
  noiseShape?: number[];
  /** float32 alpha_bar per training timestep. */
  readonly alphasCumprod: Float32Array;
  /** Diffusers `final_alpha_cumprod`: alpha_bar "before" t = 0 (1 with `set_alpha_to_one`). */
  protected readonly finalAlphaCumprod: number;
  /** The class name used in error messages. */
  protected readonly schedulerName: string;
  #numInferenceSteps = 0;

  /**
   * `config` is already parsed (with the class's own overrides); `name` prefixes error messages.
   */
  constructor(name: string, config: SchedulerConfig) {
    this.schedulerName = name;
    this.config = config;
    this.alphasCumprod = computeAlphasCumprod(config);
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0]!;
  }

  /** Computes `timesteps` and resets history. */
  abstract setTimesteps(numInferenceSteps: number): void;

  /** The `set_timesteps` of DDIM and DDPM: `integerTimesteps` for `numInferenceSteps` steps. */
  protected setIntegerTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps(this.schedulerName, numInferenceSteps, c.numTrainTimesteps);
    this.#numInferenceSteps = numInferenceSteps;
    this.timesteps = integerTimesteps(
      c.timestepSpacing,
      c.numTrainTimesteps,
      numInferenceSteps,
      c.stepsOffset,
    );
  }

  /** Diffusers' `prev_timestep` of DDIM and DDPM: t - num_train_timesteps // num_inference_steps. */
  protected previousTimestep(t: number): number {
    return t - Math.floor(this.config.numTrainTimesteps / this.#numInferenceSteps);
  }

  /** One update from `timesteps[i]`; returns the new sample. */
  abstract step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array;

  /** No input scaling; returns `sample` itself. */
  scaleModelInput(sample: Float32Array, i: number): Float32Array {
    checkIndex(this.schedulerName, i, this.timesteps.length);
    return sample;
  }

  /** Diffusers `add_noise` at `timesteps[i]`. */
  addNoise(original: Float32Array, noise: Float32Array, i: number): Float32Array {
    checkIndex(this.schedulerName, i, this.timesteps.length);
    return addNoiseAlphas(this.alphasCumprod, original, noise, this.timesteps[i]!);
  }

  /** Diffusers `add_noise` at an arbitrary training timestep `t`. */
  addNoiseAtTimestep(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return addNoiseAlphas(this.alphasCumprod, original, noise, t);
  }

  /** `setTimesteps(n)` then StableDiffusionImg2ImgPipeline.get_timesteps. */
  img2imgTimesteps(numInferenceSteps: number, strength: number): Img2ImgTimesteps {
    this.setTimesteps(numInferenceSteps);
    return img2imgSlice(this.timesteps, numInferenceSteps, strength, this.order);
  }
}
