/**
 * DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"), step-exact with Diffusers 0.27
 * `schedulers/scheduling_ddim.py`, including `eta` (stochastic DDIM), clipping and dynamic
 * thresholding.
 *
 * @module
 */
import { checkIndex } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { drawNoise } from "./noise.ts";
import { sqrt32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import {
  AlphaScheduler,
  clipOriginal,
  integerTimesteps,
  predictOriginalAndNoise,
} from "./alpha_scheduler.ts";

export { clipOriginal, integerTimesteps, predictOriginalAndNoise };

const f32 = Math.fround;

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
export class DDIMScheduler extends AlphaScheduler {
  constructor(config: Record<string, unknown>) {
    super("DDIMScheduler", parseSchedulerConfig(config, DDIM_DEFAULTS));
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
    checkIndex("DDIMScheduler", i, this.timesteps.length);
    const t = this.timesteps[i]!;
    const prevT = this.previousTimestep(t);
    const a = this.alphasCumprod[t]!;
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : this.finalAlphaCumprod;
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
}
