/**
 * DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"), step-exact with Diffusers 0.27
 * `schedulers/scheduling_ddim.py`, including `eta` (stochastic DDIM), clipping and dynamic
 * thresholding.
 *
 * @module
 */
import {
  addNoiseAlphas,
  alphasCumprodFromBetas,
  checkIndex,
  checkSameLength,
  checkSteps,
  drawNoise,
  img2imgSlice,
  type Img2ImgTimesteps,
  makeBetas,
  type NoiseGenerator,
  numpyLinspace,
  parseSchedulerConfig,
  type PredictionType,
  roundHalfEven,
  type Scheduler,
  type SchedulerConfig,
  spacedTimesteps,
  sqrt32,
  thresholdSample,
  type TimestepSpacing,
} from "./common.ts";

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

/** DDIM variance sigma_t^2 / eta^2 (Eq. 16): (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev). */
export function ddimVariance(alphaProd: number, alphaProdPrev: number): number {
  const bt = f32(1 - alphaProd);
  const bp = f32(1 - alphaProdPrev);
  return f32(f32(bp / bt) * f32(1 - f32(alphaProd / alphaProdPrev)));
}

/**
 * One DDIM update (Eq. 12): x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps
 * [+ std * noise], with std = eta * sqrt(variance).
 *
 * @example
 * ```ts
 * import { ddimStep } from "./ddim.ts";
 * ddimStep(new Float32Array([0.5]), new Float32Array([0.1]), 0.25, 0);
 * ```
 */
export function ddimStep(
  x0: Float32Array,
  eps: Float32Array,
  alphaProdPrev: number,
  std: number,
  noise?: Float32Array,
): Float32Array {
  const dirCoef = sqrt32(f32(f32(1 - alphaProdPrev) - f32(std * std)));
  const x0Coef = sqrt32(alphaProdPrev);
  const out = new Float32Array(x0.length);
  for (let k = 0; k < out.length; k++) {
    out[k] = f32(x0Coef * x0[k]!) + f32(dirCoef * eps[k]!);
  }
  if (noise !== undefined) {
    for (let k = 0; k < out.length; k++) out[k] = out[k]! + f32(std * noise[k]!);
  }
  return out;
}

/** Diffusers DDIMScheduler `__init__` defaults. */
export const DDIM_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  clipSample: true,
  setAlphaToOne: true,
  timestepSpacing: "leading",
};

/** Diffusers `DDIMScheduler` (sampler `ddim`); `eta` and `use_clipped_model_output` from config. */
export class DDIMScheduler implements Scheduler {
  readonly config: SchedulerConfig;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: Float64Array = new Float64Array(0);
  noiseShape?: number[];
  /** float32 alpha_bar per training timestep. */
  readonly alphasCumprod: Float32Array;
  #finalAlphaCumprod: number;
  #numInferenceSteps = 0;

  constructor(config: Record<string, unknown>) {
    this.config = parseSchedulerConfig(config, DDIM_DEFAULTS);
    this.alphasCumprod = alphasCumprodFromBetas(makeBetas(this.config));
    this.#finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.alphasCumprod[0]!;
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("DDIMScheduler", numInferenceSteps, c.numTrainTimesteps);
    this.#numInferenceSteps = numInferenceSteps;
    this.timesteps = integerTimesteps(
      c.timestepSpacing,
      c.numTrainTimesteps,
      numInferenceSteps,
      c.stepsOffset,
    );
  }

  scaleModelInput(sample: Float32Array, i: number): Float32Array {
    checkIndex("DDIMScheduler", i, this.timesteps.length);
    return sample;
  }

  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    const c = this.config;
    checkIndex("DDIMScheduler", i, this.timesteps.length);
    const t = this.timesteps[i]!;
    // Diffusers: prev_timestep = t - num_train_timesteps // num_inference_steps.
    const prevT = t - Math.floor(c.numTrainTimesteps / this.#numInferenceSteps);
    const a = this.alphasCumprod[t]!;
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : this.#finalAlphaCumprod;
    const pred = predictOriginalAndNoise(c.predictionType, modelOutput, sample, a);
    const x0 = clipOriginal(pred.x0, c, this.noiseShape?.[0] ?? 1);
    let eps = pred.eps;
    const std = f32(c.eta * sqrt32(ddimVariance(a, aPrev)));
    if (c.useClippedModelOutput) {
      eps = predictOriginalAndNoise("sample", x0, sample, a).eps;
    }
    const noise = c.eta > 0
      ? drawNoise(rng, sample.length, this.noiseShape, "DDIMScheduler with eta > 0")
      : undefined;
    return ddimStep(x0, eps, aPrev, std, noise);
  }

  addNoise(original: Float32Array, noise: Float32Array, i: number): Float32Array {
    checkIndex("DDIMScheduler", i, this.timesteps.length);
    return addNoiseAlphas(this.alphasCumprod, original, noise, this.timesteps[i]!);
  }

  /** Diffusers `add_noise` at an arbitrary training timestep `t`. */
  addNoiseAtTimestep(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return addNoiseAlphas(this.alphasCumprod, original, noise, t);
  }

  img2imgTimesteps(numInferenceSteps: number, strength: number): Img2ImgTimesteps {
    this.setTimesteps(numInferenceSteps);
    return img2imgSlice(this.timesteps, numInferenceSteps, strength, this.order);
  }
}
