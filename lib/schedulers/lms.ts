/**
 * Linear multistep sampler (k-diffusion `sample_lms`), step-exact with Diffusers 0.27
 * `schedulers/scheduling_lms_discrete.py`.
 *
 * @module
 */
import { checkIndex, checkSteps } from "./checks.ts";
import { NO_SIGMA_RANGE, parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { kDenoised, kInitNoiseSigma, kSigmaSchedule } from "./k_sigmas.ts";
import { derivativeOf, SigmaScheduler } from "./sigma_scheduler.ts";

const f32 = Math.fround;

// 4-point Gauss-Legendre nodes and weights on [-1, 1]: exact for the cubic (order <= 4)
// Lagrange basis polynomials that Diffusers integrates with scipy.integrate.quad.
const GL_X = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
const GL_W = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];

/**
 * LMS coefficient: the integral from sigmas[i] to sigmas[i + 1] of the Lagrange basis polynomial
 * through sigmas[i], ..., sigmas[i - order + 1] that is 1 at sigmas[i - current] (Diffusers
 * `get_lms_coefficient`).
 */
export function lmsCoefficient(
  sigmas: ArrayLike<number>,
  order: number,
  i: number,
  current: number,
): number {
  const basis = (tau: number) => {
    let prod = 1;
    for (let k = 0; k < order; k++) {
      if (k === current) continue;
      prod *= (tau - sigmas[i - k]!) / (sigmas[i - current]! - sigmas[i - k]!);
    }
    return prod;
  };
  const a = sigmas[i]!;
  const b = sigmas[i + 1]!;
  const half = (b - a) / 2;
  const mid = (a + b) / 2;
  let sum = 0;
  for (let k = 0; k < 4; k++) sum += GL_W[k]! * basis(mid + half * GL_X[k]!);
  return sum * half;
}

/**
 * x' = x + sum_j c_j * d_{n-j}: the LMS update with derivatives newest first (Diffusers sums them
 * left to right, starting from 0).
 *
 * @example
 * ```ts
 * import { lmsStep } from "./lms.ts";
 * lmsStep(new Float32Array([1]), [new Float32Array([1])], [-0.5]); // [0.5]
 * ```
 */
export function lmsStep(
  x: Float32Array,
  derivativesNewestFirst: readonly Float32Array[],
  coefficients: readonly number[],
): Float32Array {
  const n = Math.min(derivativesNewestFirst.length, coefficients.length);
  const acc = new Float32Array(x.length);
  for (let j = 0; j < n; j++) {
    const d = derivativesNewestFirst[j]!;
    const c = coefficients[j]!;
    for (let k = 0; k < acc.length; k++) acc[k] = acc[k]! + f32(c * d[k]!);
  }
  const out = new Float32Array(x.length);
  for (let k = 0; k < out.length; k++) out[k] = x[k]! + acc[k]!;
  return out;
}

/** Diffusers LMSDiscreteScheduler `__init__` defaults. */
export const LMS_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  timestepSpacing: "linspace",
};

/** Diffusers `LMSDiscreteScheduler` (sampler `lms`), order 4 as in its `step()` default. */
export class LMSDiscreteScheduler extends SigmaScheduler {
  readonly order = 1;
  /** LMS order used by `step()` (Diffusers' `order=4` argument). */
  readonly lmsOrder = 4;
  #derivatives: Float32Array[] = [];

  constructor(config: Record<string, unknown>) {
    // Diffusers' LMS has no rescale_betas_zero_snr.
    super("LMSDiscreteScheduler", {
      ...parseSchedulerConfig(config, LMS_DEFAULTS),
      rescaleBetasZeroSnr: false,
      ...NO_SIGMA_RANGE,
    });
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("LMSDiscreteScheduler", numInferenceSteps, c.numTrainTimesteps);
    const sched = kSigmaSchedule(c, this.alphasCumprod, numInferenceSteps);
    // With a converted schedule Diffusers keeps the float64 timesteps of _sigma_to_t.
    this.timesteps = c.sigmaSchedule === "default" ? sched.timesteps.map(f32) : sched.timesteps;
    this.sigmas = Float64Array.from([...sched.sigmas.map(f32), 0]);
    this.initNoiseSigma = kInitNoiseSigma(c.timestepSpacing, this.sigmas);
    this.#derivatives = [];
  }

  step(modelOutput: Float32Array, i: number, sample: Float32Array): Float32Array {
    checkIndex("LMSDiscreteScheduler", i, this.timesteps.length);
    const sigma = this.sigmas[i]!;
    const denoised = kDenoised(this.config.predictionType, modelOutput, sample, sigma);
    this.#derivatives.push(derivativeOf(sample, denoised, sigma));
    if (this.#derivatives.length > this.lmsOrder) this.#derivatives.shift();
    // Diffusers takes the order from the step index, not from the history length (img2img).
    const order = Math.min(i + 1, this.lmsOrder);
    const coeffs: number[] = [];
    for (let j = 0; j < order; j++) coeffs.push(lmsCoefficient(this.sigmas, order, i, j));
    return lmsStep(sample, [...this.#derivatives].reverse(), coeffs);
  }
}
