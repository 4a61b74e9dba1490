/**
 * The forward diffusion of training: Diffusers' `DDPMScheduler.add_noise` and `get_velocity`
 * with one timestep per batch item, from the model's scheduler config (whatever its class:
 * train_text_to_image_lora.py builds a DDPMScheduler from it), in float32 as torch computes them.
 *
 * @module
 */
import { computeAlphasCumprod } from "../schedulers/betas.ts";
import { parseSchedulerConfig, type PredictionType } from "../schedulers/config.ts";
import { addNoiseAlphas } from "../schedulers/noise.ts";
import { sqrt32 } from "../schedulers/numpy.ts";
import { DDPM_DEFAULTS } from "../schedulers/ddpm.ts";

const f32 = Math.fround;

/** What training needs of a scheduler config. */
export interface TrainingSchedule {
  /** `alphas_cumprod[t]` for t = 0 .. num_train_timesteps - 1 (float32). */
  alphasCumprod: Float32Array;
  /** The config's `prediction_type` (default epsilon). */
  predictionType: PredictionType;
}

/**
 * The DDPM training schedule of a Diffusers `scheduler_config.json`.
 *
 * @example
 * ```ts
 * import { trainingSchedule } from "./noising.ts";
 * const s = trainingSchedule({ beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 });
 * console.assert(s.alphasCumprod.length === 1000 && s.predictionType === "epsilon");
 * ```
 */
export function trainingSchedule(config: Record<string, unknown>): TrainingSchedule {
  const parsed = parseSchedulerConfig(config, DDPM_DEFAULTS);
  return { alphasCumprod: computeAlphasCumprod(parsed), predictionType: parsed.predictionType };
}

function checkBatch(
  what: string,
  alphasCumprod: Float32Array,
  x: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): number {
  if (x.length !== noise.length) {
    throw new RangeError(`${what}: latents have ${x.length} values but noise has ${noise.length}`);
  }
  if (timesteps.length === 0 || x.length % timesteps.length !== 0) {
    throw new RangeError(
      `${what}: ${timesteps.length} timesteps do not divide ${x.length} latent values; pass one per batch item`,
    );
  }
  for (const t of timesteps) {
    if (!Number.isInteger(t) || t < 0 || t >= alphasCumprod.length) {
      throw new RangeError(
        `${what}: timestep ${t} is not an integer in [0, ${alphasCumprod.length})`,
      );
    }
  }
  return x.length / timesteps.length;
}

/**
 * `sqrt(a_t) x0 + sqrt(1 - a_t) noise` per batch item (Ho et al. 2020 Eq. 4; Diffusers
 * `add_noise`).
 */
export function addNoisePerItem(
  alphasCumprod: Float32Array,
  latents: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  const per = checkBatch("addNoise", alphasCumprod, latents, noise, timesteps);
  const out = new Float32Array(latents.length);
  timesteps.forEach((t, b) => {
    const range = [b * per, (b + 1) * per] as const;
    out.set(
      addNoiseAlphas(alphasCumprod, latents.subarray(...range), noise.subarray(...range), t),
      b * per,
    );
  });
  return out;
}

/**
 * The v-prediction target `sqrt(a_t) noise - sqrt(1 - a_t) x0` per batch item (Salimans & Ho
 * 2022; Diffusers `get_velocity`).
 */
export function velocityPerItem(
  alphasCumprod: Float32Array,
  latents: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  const per = checkBatch("getVelocity", alphasCumprod, latents, noise, timesteps);
  const out = new Float32Array(latents.length);
  timesteps.forEach((t, b) => {
    const a = alphasCumprod[t]!;
    const sa = sqrt32(a);
    const sb = sqrt32(f32(1 - a));
    for (let k = b * per; k < (b + 1) * per; k++) {
      out[k] = f32(sa * noise[k]!) - f32(sb * latents[k]!);
    }
  });
  return out;
}

/** The regression target of a prediction type: the noise (epsilon) or the velocity. */
export function trainingTarget(
  predictionType: PredictionType,
  alphasCumprod: Float32Array,
  latents: Float32Array,
  noise: Float32Array,
  timesteps: readonly number[],
): Float32Array {
  switch (predictionType) {
    case "epsilon":
      checkBatch("trainingTarget", alphasCumprod, latents, noise, timesteps);
      return noise;
    case "v_prediction":
      return velocityPerItem(alphasCumprod, latents, noise, timesteps);
    default:
      throw new RangeError(
        `Cannot train for prediction type "${predictionType}"; use epsilon or v_prediction`,
      );
  }
}
