/**
 * Euler ancestral sampler (k-diffusion `sample_euler_ancestral`), step-exact with Diffusers 0.27
 * `schedulers/scheduling_euler_ancestral_discrete.py`.
 *
 * @module
 */
import { checkIndex, checkSteps } from "./checks.ts";
import { NO_SIGMA_RANGE, parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { kDenoised, kInitNoiseSigma, kSigmaSchedule } from "./k_sigmas.ts";
import { addNoiseSigma, drawNoise } from "./noise.ts";
import { sqrt32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { eulerStep } from "./euler.ts";
import { rejectSamplePrediction, SigmaScheduler } from "./sigma_scheduler.ts";

const f32 = Math.fround;

/**
 * Splits a step from `sigmaFrom` to `sigmaTo` into a deterministic part down to `sigmaDown` and
 * fresh noise of size `sigmaUp` (k-diffusion `get_ancestral_step` with eta = 1), in float32:
 * sigma_up = sqrt(to^2 (from^2 - to^2) / from^2), sigma_down = sqrt(to^2 - sigma_up^2).
 * Same split as `ancestralStep` in k_diffusion_sampler.ts; kept separate because Diffusers has no
 * eta and no min(sigma_up, sigmaTo), and a float32 min could change the last bit.
 */
export function ancestralSigmas(
  sigmaFrom: number,
  sigmaTo: number,
): { sigmaUp: number; sigmaDown: number } {
  const from2 = f32(sigmaFrom * sigmaFrom);
  const to2 = f32(sigmaTo * sigmaTo);
  const sigmaUp = sqrt32(f32(f32(to2 * f32(from2 - to2)) / from2));
  const sigmaDown = sqrt32(f32(to2 - f32(sigmaUp * sigmaUp)));
  return { sigmaUp, sigmaDown };
}

/**
 * One Euler ancestral step: Euler to sigma_down, then x += noise * sigma_up.
 *
 * @example
 * ```ts
 * import { eulerAncestralStep } from "./euler_ancestral.ts";
 * const x = eulerAncestralStep(new Float32Array([1]), new Float32Array([0]), 1, 0, new Float32Array([0.5]));
 * ```
 */
export function eulerAncestralStep(
  x: Float32Array,
  denoised: Float32Array,
  sigma: number,
  sigmaNext: number,
  noise: Float32Array,
): Float32Array {
  const { sigmaUp, sigmaDown } = ancestralSigmas(sigma, sigmaNext);
  // x + noise * sigma_up: the same float32 sum as Diffusers' add_noise at sigma_up.
  return addNoiseSigma(eulerStep(x, denoised, sigma, sigmaDown), noise, sigmaUp);
}

/** Diffusers EulerAncestralDiscreteScheduler `__init__` defaults. */
export const EULER_ANCESTRAL_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  timestepSpacing: "linspace",
};

/**
 * Diffusers `EulerAncestralDiscreteScheduler` (sampler `euler-a`). Diffusers 0.27 has no Karras
 * option for it, so `use_karras_sigmas` is ignored as Diffusers does; denoise's `sigma_schedule`
 * key selects any schedule.
 */
export class EulerAncestralDiscreteScheduler extends SigmaScheduler {
  readonly order = 1;

  constructor(config: Record<string, unknown>) {
    const c = parseSchedulerConfig(config, EULER_ANCESTRAL_DEFAULTS);
    // Nor sigma_min / sigma_max: unknown keys to its Diffusers class.
    const own = { ...c, ...NO_SIGMA_RANGE };
    super(
      "EulerAncestralDiscreteScheduler",
      config["sigma_schedule"] === undefined ? { ...own, sigmaSchedule: "default" } : own,
    );
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("EulerAncestralDiscreteScheduler", numInferenceSteps, c.numTrainTimesteps);
    const sched = kSigmaSchedule(c, this.alphasCumprod, numInferenceSteps);
    this.timesteps = sched.timesteps.map(f32);
    this.sigmas = Float64Array.from([...sched.sigmas.map(f32), 0]);
    this.initNoiseSigma = kInitNoiseSigma(c.timestepSpacing, this.sigmas);
  }

  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    checkIndex("EulerAncestralDiscreteScheduler", i, this.timesteps.length);
    rejectSamplePrediction("EulerAncestralDiscreteScheduler", this.config.predictionType);
    const sigma = this.sigmas[i]!;
    const denoised = kDenoised(this.config.predictionType, modelOutput, sample, sigma);
    const noise = drawNoise(rng, sample.length, this.noiseShape, "EulerAncestralDiscreteScheduler");
    return eulerAncestralStep(sample, denoised, sigma, this.sigmas[i + 1]!, noise);
  }
}
