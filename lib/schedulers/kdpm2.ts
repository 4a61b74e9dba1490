/**
 * DPM-Solver-2 in k-diffusion form (`sample_dpm_2`, Karras et al. 2022 Algorithm 1 with the
 * midpoint sigma), step-exact with Diffusers 0.27 `schedulers/scheduling_k_dpm_2_discrete.py`.
 *
 * @module
 */
import { checkIndex, checkSteps } from "./checks.ts";
import { NO_SIGMA_RANGE, parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { kDenoised, kInitNoiseSigma, kSigmaSchedule, scaleBySigma } from "./k_sigmas.ts";
import { lerpHalf32 } from "./numpy.ts";
import { sigmaToT } from "./training_sigmas.ts";
import {
  derivativeOf,
  eulerMove,
  rejectSamplePrediction,
  SigmaScheduler,
} from "./sigma_scheduler.ts";

const f32 = Math.fround;

/** Geometric midpoint exp(lerp(log a, log b, 0.5)) in float32, as torch computes it. */
export function logMidpoint32(a: number, b: number): number {
  return f32(Math.exp(lerpHalf32(f32(Math.log(a)), f32(Math.log(b)))));
}

/** [v0, v1, v1, v2, v2, ..., vN, vN, vN]: Diffusers' cat(v[:1], v[1:].repeat_interleave(2), v[-1:]). */
export function interleaveSigmas(v: readonly number[]): Float64Array {
  return Float64Array.from([v[0]!, ...v.slice(1).flatMap((x) => [x, x]), v.at(-1)!]);
}

/** Diffusers KDPM2DiscreteScheduler `__init__` defaults. */
export const KDPM2_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  betaStart: 0.00085,
  betaEnd: 0.012,
  timestepSpacing: "linspace",
};

/** Diffusers `KDPM2DiscreteScheduler` (sampler `dpm2`). */
export class KDPM2DiscreteScheduler extends SigmaScheduler {
  readonly order = 2;
  /** Interleaved midpoint sigmas (Diffusers `sigmas_interpol`). */
  sigmasInterpol: Float64Array = new Float64Array(0);
  #sample: Float32Array | undefined;

  constructor(config: Record<string, unknown>) {
    // Diffusers' KDPM2 has no rescale_betas_zero_snr.
    super("KDPM2DiscreteScheduler", {
      ...parseSchedulerConfig(config, KDPM2_DEFAULTS),
      rescaleBetasZeroSnr: false,
      ...NO_SIGMA_RANGE,
    });
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("KDPM2DiscreteScheduler", numInferenceSteps, c.numTrainTimesteps);
    const sched = kSigmaSchedule(c, this.alphasCumprod, numInferenceSteps, true);
    const s = [...sched.sigmas.map(f32), 0];
    // sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp(): midpoint with the previous sigma.
    const si = s.map((v, k) => logMidpoint32(v, s[(k - 1 + s.length) % s.length]!));
    const t = Array.from(sched.timesteps, f32);
    const ti = si.map((v) => f32(sigmaToT(v, sched.logSigmas, true)));
    this.sigmas = interleaveSigmas(s);
    this.sigmasInterpol = interleaveSigmas(si);
    // cat(t[:1], stack(ti[1:-1], t[1:]).flatten())
    const ts = [t[0]!];
    for (let k = 1; k < t.length; k++) ts.push(ti[k]!, t[k]!);
    this.timesteps = Float64Array.from(ts);
    this.initNoiseSigma = kInitNoiseSigma(c.timestepSpacing, this.sigmas);
    this.#sample = undefined;
  }

  override scaleModelInput(sample: Float32Array, i: number): Float32Array {
    checkIndex("KDPM2DiscreteScheduler", i, this.timesteps.length);
    const sigma = this.#sample === undefined ? this.sigmas[i]! : this.sigmasInterpol[i]!;
    return scaleBySigma(sample, sigma);
  }

  step(modelOutput: Float32Array, i: number, sample: Float32Array): Float32Array {
    const c = this.config;
    checkIndex("KDPM2DiscreteScheduler", i, this.timesteps.length);
    rejectSamplePrediction("KDPM2DiscreteScheduler", c.predictionType);
    if (this.#sample === undefined) {
      // First half: Euler from sigma to the midpoint sigma_interpol.
      const sigma = this.sigmas[i]!;
      const sigmaInterpol = this.sigmasInterpol[i + 1]!;
      const denoised = kDenoised(c.predictionType, modelOutput, sample, sigma);
      const d = derivativeOf(sample, denoised, sigma);
      this.#sample = sample;
      return eulerMove(sample, d, f32(sigmaInterpol - sigma));
    }
    // Second half: the derivative at the midpoint carries the full step from sigma to sigma_next.
    const sigma = this.sigmas[i - 1]!;
    const sigmaInterpol = this.sigmasInterpol[i]!;
    const sigmaNext = this.sigmas[i]!;
    const denoised = kDenoised(c.predictionType, modelOutput, sample, sigmaInterpol);
    const d = derivativeOf(sample, denoised, sigmaInterpol);
    const x0 = this.#sample;
    this.#sample = undefined;
    return eulerMove(x0, d, f32(sigmaNext - sigma));
  }
}
