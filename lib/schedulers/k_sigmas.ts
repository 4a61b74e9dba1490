/**
 * The k-diffusion (sigma) parametrisation that the sigma-based schedulers share: the sigma table
 * of `set_timesteps` with the configured sigma schedule, `init_noise_sigma`, the input scaling
 * 1 / sqrt(sigma^2 + 1) and the denoised estimate of a model output.
 *
 * @module
 */
import { checkSameLength } from "./checks.ts";
import type { PredictionType, SchedulerConfig, TimestepSpacing } from "./config.ts";
import { arrayMax, interp, roundHalfEven, sqrt32 } from "./numpy.ts";
import {
  betaSigmas,
  exponentialSigmas,
  karrasSigmas,
  sgmUniformSigmas,
  simpleSigmas,
} from "./sigma_schedules.ts";
import { spacedTimesteps } from "./timesteps.ts";
import { logSigmasF32, sigmasFromAlphasCumprod, sigmaToT } from "./training_sigmas.ts";

const f32 = Math.fround;

/**
 * Replaces the default (interpolated, descending) sigmas by the configured schedule, as the
 * Diffusers `_convert_to_karras` / `_convert_to_exponential` / `_convert_to_beta` calls do, with
 * `sigma_min` / `sigma_max` from the config when set, else the ends of `inSigmas`.
 * Returns `inSigmas` itself for "default".
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { convertSigmas, kSigmaSchedule } from "./k_sigmas.ts";
 * import { computeAlphasCumprod } from "./betas.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const config = parseSchedulerConfig({ use_karras_sigmas: true });
 * const s = kSigmaSchedule({ ...config, sigmaSchedule: "default" }, computeAlphasCumprod(config), 4);
 * const karras = convertSigmas(s.sigmas, 4, config, s.trainingSigmas, s.logSigmas);
 * assert.ok(Math.abs(karras[0]! - s.sigmas[0]!) < 1e-9); // same ends, Karras spacing between
 * ```
 */
export function convertSigmas(
  inSigmas: Float64Array,
  n: number,
  config: SchedulerConfig,
  trainingSigmas: Float32Array,
  logSigmas: ArrayLike<number>,
): Float64Array {
  const sigmaMin = config.sigmaMin ?? inSigmas[inSigmas.length - 1]!;
  const sigmaMax = config.sigmaMax ?? inSigmas[0]!;
  switch (config.sigmaSchedule) {
    case "default":
      return inSigmas;
    case "karras":
      return karrasSigmas(sigmaMin, sigmaMax, n);
    case "exponential":
      return exponentialSigmas(sigmaMin, sigmaMax, n);
    case "beta":
      return betaSigmas(sigmaMin, sigmaMax, n, config.betaSigmaAlpha, config.betaSigmaBeta);
    case "sgm_uniform":
      return sgmUniformSigmas(
        trainingSigmas[0]!,
        trainingSigmas[trainingSigmas.length - 1]!,
        n,
        logSigmas,
      );
    case "simple":
      return simpleSigmas(n, trainingSigmas);
  }
}

/**
 * Float32 `1 / (sigma ** 2 + 1) ** 0.5` input scaling of the k-diffusion schedulers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { scaleBySigma } from "./k_sigmas.ts";
 * assert.deepEqual(Array.from(scaleBySigma(new Float32Array([2]), Math.sqrt(3))), [1]);
 * ```
 */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const s = f32(sigma);
  const denom = sqrt32(f32(f32(s * s) + 1));
  const out = new Float32Array(sample.length);
  for (let k = 0; k < out.length; k++) out[k] = sample[k]! / denom;
  return out;
}

/**
 * The k-diffusion denoised estimate from a model output at noise level `sigma`, in float32:
 * epsilon: x - sigma * eps; v_prediction: v * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)
 * (Salimans & Ho 2022, Eq. 2 in the sigma parametrisation); sample: the output itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kDenoised } from "./k_sigmas.ts";
 * const d = kDenoised("epsilon", new Float32Array([1]), new Float32Array([3]), 2);
 * assert.deepEqual(Array.from(d), [1]); // x - sigma * eps
 * ```
 */
export function kDenoised(
  predictionType: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
): Float32Array {
  checkSameLength("step", modelOutput, sample);
  const s = f32(sigma);
  const out = new Float32Array(sample.length);
  if (predictionType === "epsilon") {
    for (let k = 0; k < out.length; k++) out[k] = sample[k]! - f32(s * modelOutput[k]!);
  } else if (predictionType === "v_prediction") {
    const s2p1 = f32(f32(s * s) + 1);
    const c = f32(-s / sqrt32(s2p1));
    for (let k = 0; k < out.length; k++) {
      out[k] = f32(modelOutput[k]! * c) + f32(sample[k]! / s2p1);
    }
  } else {
    out.set(modelOutput);
  }
  return out;
}

/** The sigma table of a k-diffusion-style Diffusers scheduler before its per-class layout. */
export interface KSigmaSchedule {
  /** float32 timestep values (float64 from `_sigma_to_t` when a non-default schedule is used). */
  timesteps: Float64Array;
  /** `numInferenceSteps` sigmas in float64, before the cast to float32 and the appended 0. */
  sigmas: Float64Array;
  /** Training sigmas ascending in t (float32) and their float32 logs. */
  trainingSigmas: Float32Array;
  logSigmas: Float32Array;
}

/**
 * The shared `set_timesteps` body of EulerDiscrete, EulerAncestral, LMS, Heun and KDPM2(-a):
 * spaced float32 timesteps, sigmas by `np.interp` on the training sigmas, then the configured
 * sigma schedule with timesteps from `_sigma_to_t` (rounded when `roundTimesteps`, as KDPM2 does).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kSigmaSchedule } from "./k_sigmas.ts";
 * import { computeAlphasCumprod } from "./betas.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const config = parseSchedulerConfig({ beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 });
 * const s = kSigmaSchedule(config, computeAlphasCumprod(config), 4);
 * assert.deepEqual(Array.from(s.timesteps), [999, 666, 333, 0]);
 * ```
 */
export function kSigmaSchedule(
  config: SchedulerConfig,
  alphasCumprod: Float32Array,
  numInferenceSteps: number,
  roundTimesteps = false,
): KSigmaSchedule {
  const ts = spacedTimesteps(
    config.timestepSpacing,
    config.numTrainTimesteps,
    numInferenceSteps,
    config.stepsOffset,
  ).map(f32);
  const trainingSigmas = sigmasFromAlphasCumprod(alphasCumprod);
  const logSigmas = logSigmasF32(trainingSigmas);
  const index = Float64Array.from(trainingSigmas, (_, k) => k);
  let sigmas = interp(ts, index, trainingSigmas);
  let timesteps = ts;
  if (config.sigmaSchedule !== "default") {
    sigmas = convertSigmas(sigmas, numInferenceSteps, config, trainingSigmas, logSigmas);
    timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    if (roundTimesteps) timesteps = timesteps.map(roundHalfEven);
  }
  return { timesteps, sigmas, trainingSigmas, logSigmas };
}

/**
 * `init_noise_sigma` of the k-diffusion schedulers: max sigma for linspace / trailing spacing,
 * else sqrt(max^2 + 1), in float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kInitNoiseSigma } from "./k_sigmas.ts";
 * assert.equal(kInitNoiseSigma("leading", [3, 0]), Math.fround(Math.sqrt(10)));
 * ```
 */
export function kInitNoiseSigma(spacing: TimestepSpacing, sigmas: ArrayLike<number>): number {
  const m = f32(arrayMax(sigmas));
  return spacing === "leading" ? sqrt32(f32(f32(m * m) + 1)) : m;
}
