/**
 * Latent Consistency Model multistep sampling (Luo et al. 2023, Algorithm 3), step-exact with
 * Diffusers 0.27 `schedulers/scheduling_lcm.py`.
 *
 * @module
 */
import { checkIndex, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { drawNoise } from "./noise.ts";
import { numpyLinspace, sqrt32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { AlphaScheduler, clipOriginal, predictOriginalAndNoise } from "./alpha_scheduler.ts";

const f32 = Math.fround;

/**
 * The LCM / TCD timestep schedule: the `originalInferenceSteps` distillation timesteps
 * (k - 1, 2k - 1, ..., with k = numTrain // original) from the top, every (len / n)-th of them.
 * With `strength` < 1 (Diffusers `set_timesteps(strength=...)`, used by
 * LatentConsistencyModelImg2ImgPipeline) only the first `int(original * strength)` of the
 * distillation timesteps are drawn from.
 */
export function lcmTimesteps(
  name: string,
  numTrainTimesteps: number,
  originalInferenceSteps: number,
  n: number,
  strength = 1,
): Float64Array {
  if (originalInferenceSteps > numTrainTimesteps) {
    throw new RangeError(
      `${name}: original_inference_steps ${originalInferenceSteps} exceeds num_train_timesteps ${numTrainTimesteps}`,
    );
  }
  if (n > originalInferenceSteps) {
    throw new RangeError(
      `${name}: ${n} steps exceed original_inference_steps ${originalInferenceSteps}; use at most ${originalInferenceSteps} steps`,
    );
  }
  const k = Math.floor(numTrainTimesteps / originalInferenceSteps);
  // Python's int(original_steps * strength), on the same double product.
  const count = Math.trunc(originalInferenceSteps * strength);
  if (strength !== 1 && Math.floor(count / n) < 1) {
    throw new RangeError(
      `${name}: ${n} steps at strength ${strength} exceed the ${count} distillation timesteps ` +
        `left (original_inference_steps ${originalInferenceSteps} x strength); use at most ` +
        `${count} steps or raise the strength`,
    );
  }
  const origin = Array.from({ length: count }, (_, j) => (j + 1) * k - 1).reverse();
  const idx = numpyLinspace(0, origin.length, n + 1).subarray(0, n); // endpoint=False
  return Float64Array.from(idx, (v) => origin[Math.floor(v)]!);
}

/**
 * LCM boundary-condition scalings (Song et al. 2023, consistency models, with sigma_data = 0.5):
 * c_skip = sigma_data^2 / ((t s)^2 + sigma_data^2), c_out = t s / sqrt((t s)^2 + sigma_data^2).
 */
export function lcmScalings(t: number, timestepScaling: number): { cSkip: number; cOut: number } {
  const scaled = f32(f32(t) * f32(timestepScaling));
  const d = f32(f32(scaled * scaled) + 0.25);
  return { cSkip: f32(0.25 / d), cOut: f32(scaled / sqrt32(d)) };
}

/**
 * One LCM step: denoised = c_out x0 + c_skip x, then re-noise to a_prev unless it is the last
 * step (`noise` undefined): x_prev = sqrt(a_prev) denoised + sqrt(1 - a_prev) noise.
 *
 * @example
 * ```ts
 * import { lcmStep } from "./lcm.ts";
 * lcmStep(new Float32Array([1]), new Float32Array([2]), 0, 1, 0.5);
 * ```
 */
export function lcmStep(
  x0: Float32Array,
  sample: Float32Array,
  cSkip: number,
  cOut: number,
  alphaProdPrev: number,
  noise?: Float32Array,
): Float32Array {
  const out = new Float32Array(sample.length);
  for (let k = 0; k < out.length; k++) out[k] = f32(cOut * x0[k]!) + f32(cSkip * sample[k]!);
  if (noise === undefined) return out;
  const sa = sqrt32(alphaProdPrev);
  const sb = sqrt32(f32(1 - alphaProdPrev));
  for (let k = 0; k < out.length; k++) out[k] = f32(sa * out[k]!) + f32(sb * noise[k]!);
  return out;
}

/** Diffusers LCMScheduler `__init__` defaults. */
export const LCM_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: "scaled_linear",
  originalInferenceSteps: 50,
  clipSample: false,
  setAlphaToOne: true,
  timestepSpacing: "leading",
  timestepScaling: 10.0,
};

/** Diffusers `LCMScheduler` (sampler `lcm`). */
export class LCMScheduler extends AlphaScheduler {
  constructor(config: Record<string, unknown>) {
    super("LCMScheduler", parseSchedulerConfig(config, LCM_DEFAULTS));
  }

  /**
   * Diffusers `set_timesteps(num_inference_steps, strength=strength)`; `strength` < 1 is what
   * LatentConsistencyModelImg2ImgPipeline passes (every step then runs, no `get_timesteps` tail).
   */
  setTimesteps(numInferenceSteps: number, strength = 1): void {
    const c = this.config;
    checkSteps("LCMScheduler", numInferenceSteps, c.numTrainTimesteps);
    this.timesteps = lcmTimesteps(
      "LCMScheduler",
      c.numTrainTimesteps,
      c.originalInferenceSteps,
      numInferenceSteps,
      strength,
    );
  }

  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    const c = this.config;
    checkIndex("LCMScheduler", i, this.timesteps.length);
    const t = this.timesteps[i]!;
    const last = i === this.timesteps.length - 1;
    const prevT = last ? t : this.timesteps[i + 1]!;
    const a = this.alphasCumprod[t]!;
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : this.finalAlphaCumprod;
    const { cSkip, cOut } = lcmScalings(t, c.timestepScaling);
    const pred = predictOriginalAndNoise(c.predictionType, modelOutput, sample, a);
    const x0 = clipOriginal(pred.x0, c, this.noiseShape?.[0] ?? 1);
    const noise = last ? undefined : drawNoise(rng, sample.length, this.noiseShape, "LCMScheduler");
    return lcmStep(x0, sample, cSkip, cOut, aPrev, noise);
  }
}
