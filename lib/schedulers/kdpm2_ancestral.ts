/**
 * Ancestral DPM-Solver-2 in k-diffusion form (`sample_dpm_2_ancestral`), step-exact with Diffusers
 * 0.27 `schedulers/scheduling_k_dpm_2_ancestral_discrete.py`.
 *
 * @module
 */
import { checkIndex, checkSteps } from "./checks.ts";
import { NO_SIGMA_RANGE, parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { kDenoised, kInitNoiseSigma, kSigmaSchedule, scaleBySigma } from "./k_sigmas.ts";
import { addNoiseSigma, drawNoise } from "./noise.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { sigmaToT } from "./training_sigmas.ts";
import { ancestralSigmas } from "./euler_ancestral.ts";
import { interleaveSigmas, logMidpoint32 } from "./kdpm2.ts";
import {
  derivativeOf,
  eulerMove,
  rejectSamplePrediction,
  SigmaScheduler,
} from "./sigma_scheduler.ts";

const f32 = Math.fround;

/** Diffusers KDPM2AncestralDiscreteScheduler `__init__` defaults. */
export const KDPM2_ANCESTRAL_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  betaStart: 0.00085,
  betaEnd: 0.012,
  timestepSpacing: "linspace",
};

/** Diffusers `KDPM2AncestralDiscreteScheduler` (sampler `dpm2-a`). */
export class KDPM2AncestralDiscreteScheduler extends SigmaScheduler {
  readonly order = 2;
  /** Interleaved Diffusers `sigmas_interpol`, `sigmas_up`, `sigmas_down`. */
  sigmasInterpol: Float64Array = new Float64Array(0);
  sigmasUp: Float64Array = new Float64Array(0);
  sigmasDown: Float64Array = new Float64Array(0);
  #sample: Float32Array | undefined;

  constructor(config: Record<string, unknown>) {
    const c = parseSchedulerConfig(config, KDPM2_ANCESTRAL_DEFAULTS);
    // Diffusers' KDPM2 ancestral has no rescale_betas_zero_snr.
    super("KDPM2AncestralDiscreteScheduler", {
      ...c,
      rescaleBetasZeroSnr: false,
      ...NO_SIGMA_RANGE,
    });
  }

  // Same layout as KDPM2DiscreteScheduler.setTimesteps in kdpm2.ts; kept separate because the
  // ancestral midpoints lie toward sigma_down and Diffusers interleaves other timestep slices.
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("KDPM2AncestralDiscreteScheduler", numInferenceSteps, c.numTrainTimesteps);
    const sched = kSigmaSchedule(c, this.alphasCumprod, numInferenceSteps, true);
    const s = [...sched.sigmas.map(f32), 0];
    const n = s.length;
    const up: number[] = [];
    const down: number[] = [];
    for (let k = 0; k < n; k++) {
      const next = k + 1 < n ? s[k + 1]! : 0;
      const a = ancestralSigmas(s[k]!, next);
      up.push(a.sigmaUp);
      down.push(k === n - 1 ? 0 : a.sigmaDown);
    }
    // Midpoint between sigma and sigma_down; Diffusers zeroes the last two.
    const si = s.map((v, k) => (k >= n - 2 ? 0 : logMidpoint32(v, down[k]!)));
    const t = Array.from(sched.timesteps, f32);
    const ti = si.map((v) => f32(sigmaToT(v, sched.logSigmas, true)));
    this.sigmas = interleaveSigmas(s);
    this.sigmasInterpol = interleaveSigmas(si);
    this.sigmasUp = interleaveSigmas(up);
    this.sigmasDown = interleaveSigmas(down);
    // cat(t[:1], stack(ti[:-2], t[1:]).flatten())
    const ts = [t[0]!];
    for (let k = 1; k < t.length; k++) ts.push(ti[k - 1]!, t[k]!);
    this.timesteps = Float64Array.from(ts);
    this.initNoiseSigma = kInitNoiseSigma(c.timestepSpacing, this.sigmas);
    this.#sample = undefined;
  }

  override scaleModelInput(sample: Float32Array, i: number): Float32Array {
    checkIndex("KDPM2AncestralDiscreteScheduler", i, this.timesteps.length);
    const sigma = this.#sample === undefined ? this.sigmas[i]! : this.sigmasInterpol[i - 1]!;
    return scaleBySigma(sample, sigma);
  }

  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    const c = this.config;
    checkIndex("KDPM2AncestralDiscreteScheduler", i, this.timesteps.length);
    rejectSamplePrediction("KDPM2AncestralDiscreteScheduler", c.predictionType);
    // Diffusers draws noise on both halves of the step; only the second one uses it.
    const noise = drawNoise(rng, sample.length, this.noiseShape, "KDPM2AncestralDiscreteScheduler");
    if (this.#sample === undefined) {
      const sigma = this.sigmas[i]!;
      const sigmaInterpol = this.sigmasInterpol[i]!;
      const denoised = kDenoised(c.predictionType, modelOutput, sample, sigma);
      const d = derivativeOf(sample, denoised, sigma);
      this.#sample = sample;
      return eulerMove(sample, d, f32(sigmaInterpol - sigma));
    }
    const sigma = this.sigmas[i - 1]!;
    const sigmaInterpol = this.sigmasInterpol[i - 1]!;
    const sigmaUp = f32(this.sigmasUp[i - 1]!);
    const sigmaDown = this.sigmasDown[i - 1]!;
    const denoised = kDenoised(c.predictionType, modelOutput, sample, sigmaInterpol);
    const d = derivativeOf(sample, denoised, sigmaInterpol);
    const x0 = this.#sample;
    this.#sample = undefined;
    // k-diffusion: x = x + noise * sigma_up (fresh noise for the ancestral part).
    return addNoiseSigma(eulerMove(x0, d, f32(sigmaDown - sigma)), noise, sigmaUp);
  }
}
