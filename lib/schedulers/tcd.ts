/**
 * Trajectory Consistency Distillation sampling (Zheng et al. 2024, Strategic Stochastic
 * Sampling), step-exact with Diffusers 0.27 `schedulers/scheduling_tcd.py`. The config's `eta`
 * is TCD's gamma; like a Diffusers pipeline call (eta=0.0 unless given), it defaults to 0.
 *
 * @module
 */
import { checkIndex, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { drawNoise } from "./noise.ts";
import { sqrt32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { AlphaScheduler, predictOriginalAndNoise } from "./alpha_scheduler.ts";
import { LCM_DEFAULTS, lcmTimesteps } from "./lcm.ts";

const f32 = Math.fround;

/**
 * The TCD step (SSS, Eq. 11 of Zheng et al. 2024): move to the intermediate s = floor((1 - gamma)
 * t_prev), x_s = sqrt(a_s) x0 + sqrt(1 - a_s) eps, then re-noise to t_prev:
 * x_prev = sqrt(a_prev / a_s) x_s + sqrt(1 - a_prev / a_s) noise (when `noise` is given).
 *
 * @example
 * ```ts
 * import { tcdStep } from "./tcd.ts";
 * tcdStep(new Float32Array([1]), new Float32Array([0]), 0.9, 0.9);
 * ```
 */
export function tcdStep(
  x0: Float32Array,
  eps: Float32Array,
  alphaProdS: number,
  alphaProdPrev: number,
  noise?: Float32Array,
): Float32Array {
  const sa = sqrt32(alphaProdS);
  const sb = sqrt32(f32(1 - alphaProdS));
  const out = new Float32Array(x0.length);
  for (let k = 0; k < out.length; k++) out[k] = f32(sa * x0[k]!) + f32(sb * eps[k]!);
  if (noise === undefined) return out;
  const ratio = f32(alphaProdPrev / alphaProdS);
  const ca = sqrt32(ratio);
  const cb = sqrt32(f32(1 - ratio));
  for (let k = 0; k < out.length; k++) out[k] = f32(ca * out[k]!) + f32(cb * noise[k]!);
  return out;
}

/** Diffusers TCDScheduler `__init__` defaults (the same as LCM's). */
export const TCD_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = { ...LCM_DEFAULTS };

/** Diffusers `TCDScheduler` (sampler `tcd`); `eta` (gamma, 0..1) from config. */
export class TCDScheduler extends AlphaScheduler {
  constructor(config: Record<string, unknown>) {
    super("TCDScheduler", parseSchedulerConfig(config, TCD_DEFAULTS));
    if (!(this.config.eta >= 0 && this.config.eta <= 1)) {
      throw new RangeError(`TCDScheduler: eta (gamma) must be in [0, 1], got ${this.config.eta}`);
    }
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("TCDScheduler", numInferenceSteps, c.numTrainTimesteps);
    this.timesteps = lcmTimesteps(
      "TCDScheduler",
      c.numTrainTimesteps,
      c.originalInferenceSteps,
      numInferenceSteps,
    );
  }

  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    const c = this.config;
    checkIndex("TCDScheduler", i, this.timesteps.length);
    const t = this.timesteps[i]!;
    const last = i === this.timesteps.length - 1;
    const prevT = last ? 0 : this.timesteps[i + 1]!;
    // timestep_s = floor((1 - eta) * prev_timestep), a float32 product.
    const s = Math.floor(f32(f32(1 - c.eta) * prevT));
    const a = this.alphasCumprod[t]!;
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : this.finalAlphaCumprod;
    const aS = this.alphasCumprod[s]!;
    const { x0, eps } = predictOriginalAndNoise(c.predictionType, modelOutput, sample, a);
    const noise = c.eta > 0 && !last
      ? drawNoise(rng, sample.length, this.noiseShape, "TCDScheduler with eta > 0")
      : undefined;
    return tcdStep(x0, eps, aS, aPrev, noise);
  }
}
