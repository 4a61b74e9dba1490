/**
 * Heun's 2nd-order sampler (Karras et al. 2022, Algorithm 1), step-exact with Diffusers 0.27
 * `schedulers/scheduling_heun_discrete.py`: every step but the last takes two model evaluations,
 * so `timesteps` repeats each inner timestep.
 *
 * @module
 */
import { checkIndex, checkSteps } from "./checks.ts";
import { NO_SIGMA_RANGE, parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { kDenoised, kInitNoiseSigma, kSigmaSchedule } from "./k_sigmas.ts";
import { derivativeOf, eulerMove, SigmaScheduler } from "./sigma_scheduler.ts";

const f32 = Math.fround;

/**
 * Heun's correction (Karras et al. 2022, Algorithm 1, line 8): x' = x0 + (d0 + d1) / 2 * dt, where
 * x0 and d0 are from the Euler predictor.
 *
 * @example
 * ```ts
 * import { heunCorrect } from "./heun.ts";
 * heunCorrect(new Float32Array([1]), new Float32Array([1]), new Float32Array([3]), -0.5); // [0]
 * ```
 */
export function heunCorrect(
  x0: Float32Array,
  d0: Float32Array,
  d1: Float32Array,
  dt: number,
): Float32Array {
  const h = f32(dt);
  const out = new Float32Array(x0.length);
  for (let k = 0; k < out.length; k++) {
    out[k] = x0[k]! + f32(f32(f32(d0[k]! + d1[k]!) / 2) * h);
  }
  return out;
}

/** Diffusers HeunDiscreteScheduler `__init__` defaults. */
export const HEUN_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  betaStart: 0.00085,
  betaEnd: 0.012,
  clipSample: false,
  timestepSpacing: "linspace",
};

/** Diffusers `HeunDiscreteScheduler` (sampler `heun`). */
export class HeunDiscreteScheduler extends SigmaScheduler {
  readonly order = 2;
  #first: { derivative: Float32Array; dt: number; sample: Float32Array } | undefined;

  constructor(config: Record<string, unknown>) {
    // Diffusers' Heun has no rescale_betas_zero_snr.
    super("HeunDiscreteScheduler", {
      ...parseSchedulerConfig(config, HEUN_DEFAULTS),
      rescaleBetasZeroSnr: false,
      ...NO_SIGMA_RANGE,
    });
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("HeunDiscreteScheduler", numInferenceSteps, c.numTrainTimesteps);
    const sched = kSigmaSchedule(c, this.alphasCumprod, numInferenceSteps);
    const s = [...sched.sigmas.map(f32), 0];
    const t = Array.from(sched.timesteps, f32);
    // cat(s[:1], s[1:-1].repeat_interleave(2), s[-1:]) and cat(t[:1], t[1:].repeat_interleave(2))
    this.sigmas = Float64Array.from([s[0]!, ...s.slice(1, -1).flatMap((v) => [v, v]), s.at(-1)!]);
    this.timesteps = Float64Array.from([t[0]!, ...t.slice(1).flatMap((v) => [v, v])]);
    this.initNoiseSigma = kInitNoiseSigma(c.timestepSpacing, this.sigmas);
    this.#first = undefined;
  }

  step(modelOutput: Float32Array, i: number, sample: Float32Array): Float32Array {
    const c = this.config;
    checkIndex("HeunDiscreteScheduler", i, this.timesteps.length);
    const first = this.#first === undefined;
    const sigma = first ? this.sigmas[i]! : this.sigmas[i - 1]!;
    const sigmaNext = first ? this.sigmas[i + 1]! : this.sigmas[i]!;
    let denoised = kDenoised(c.predictionType, modelOutput, sample, first ? sigma : sigmaNext);
    if (c.clipSample) {
      const r = c.clipSampleRange;
      denoised = denoised.map((v) => Math.min(Math.max(v, -r), r));
    }
    if (this.#first === undefined) {
      // Algorithm 1, lines 3-5: Euler predictor.
      const derivative = derivativeOf(sample, denoised, sigma);
      const dt = f32(sigmaNext - sigma);
      this.#first = { derivative, dt, sample };
      return eulerMove(sample, derivative, dt);
    }
    // Algorithm 1, lines 6-8: trapezoidal corrector.
    const d1 = derivativeOf(sample, denoised, sigmaNext);
    const { derivative, dt, sample: x0 } = this.#first;
    this.#first = undefined;
    return heunCorrect(x0, derivative, d1, dt);
  }
}
