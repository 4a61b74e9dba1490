/**
 * DDPM ancestral sampling (Ho et al. 2020), step-exact with Diffusers 0.27
 * `schedulers/scheduling_ddpm.py`.
 *
 * @module
 */
import { checkIndex } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { drawNoise } from "./noise.ts";
import { sqrt32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { AlphaScheduler, clipOriginal, predictOriginalAndNoise } from "./alpha_scheduler.ts";

const f32 = Math.fround;

/**
 * The posterior mean of Ho et al. 2020 Eq. (7):
 * mu = sqrt(a_prev) beta_t / (1 - a_t) * x0 + sqrt(alpha_t) (1 - a_prev) / (1 - a_t) * x_t.
 *
 * @example
 * ```ts
 * import { ddpmPosteriorMean } from "./ddpm.ts";
 * ddpmPosteriorMean(new Float32Array([1]), new Float32Array([1]), 0.5, 0.9);
 * ```
 */
export function ddpmPosteriorMean(
  x0: Float32Array,
  sample: Float32Array,
  alphaProd: number,
  alphaProdPrev: number,
): Float32Array {
  const bt = f32(1 - alphaProd);
  const bPrev = f32(1 - alphaProdPrev);
  const curAlpha = f32(alphaProd / alphaProdPrev);
  const curBeta = f32(1 - curAlpha);
  const cx0 = f32(f32(sqrt32(alphaProdPrev) * curBeta) / bt);
  const cx = f32(f32(sqrt32(curAlpha) * bPrev) / bt);
  const out = new Float32Array(sample.length);
  for (let k = 0; k < out.length; k++) out[k] = f32(cx0 * x0[k]!) + f32(cx * sample[k]!);
  return out;
}

/** Diffusers DDPMScheduler `__init__` defaults. */
export const DDPM_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  clipSample: true,
  timestepSpacing: "leading",
  varianceType: "fixed_small",
};

/**
 * Diffusers `DDPMScheduler` (sampler `ddpm`) with variance_type fixed_small, fixed_small_log or
 * fixed_large. The learned variances need a model with twice the channels and are rejected.
 */
export class DDPMScheduler extends AlphaScheduler {
  constructor(config: Record<string, unknown>) {
    super("DDPMScheduler", parseSchedulerConfig(config, DDPM_DEFAULTS));
    const v = this.config.varianceType ?? "fixed_small";
    if (v !== "fixed_small" && v !== "fixed_small_log" && v !== "fixed_large") {
      throw new RangeError(
        `DDPMScheduler: variance_type "${v}" is not supported; use fixed_small, fixed_small_log or fixed_large`,
      );
    }
  }

  setTimesteps(numInferenceSteps: number): void {
    this.setIntegerTimesteps(numInferenceSteps);
  }

  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    const c = this.config;
    checkIndex("DDPMScheduler", i, this.timesteps.length);
    const t = this.timesteps[i]!;
    const prevT = this.previousTimestep(t);
    const a = this.alphasCumprod[t]!;
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : 1;
    const pred = predictOriginalAndNoise(c.predictionType, modelOutput, sample, a);
    const x0 = clipOriginal(pred.x0, c, this.noiseShape?.[0] ?? 1);
    const out = ddpmPosteriorMean(x0, sample, a, aPrev);
    if (t > 0) {
      const noise = drawNoise(rng, sample.length, this.noiseShape, "DDPMScheduler");
      // Posterior variance, Eq. (7): beta_tilde = (1 - a_prev) / (1 - a_t) * beta_t.
      const curBeta = f32(1 - f32(a / aPrev));
      const variance = Math.max(f32(f32(f32(1 - aPrev) / f32(1 - a)) * curBeta), 1e-20);
      let std: number;
      if (c.varianceType === "fixed_small_log") {
        std = f32(Math.exp(f32(0.5 * f32(Math.log(variance)))));
      } else if (c.varianceType === "fixed_large") std = sqrt32(curBeta);
      else std = sqrt32(f32(variance));
      for (let k = 0; k < out.length; k++) out[k] = out[k]! + f32(std * noise[k]!);
    }
    return out;
  }
}
