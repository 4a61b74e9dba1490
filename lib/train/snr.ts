/**
 * Min-SNR loss weighting (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
 * Strategy"), as Diffusers' training scripts compute it: `compute_snr` (training_utils.py) gives
 * `snr_t = alpha_t^2 / sigma_t^2` with `alpha_t = sqrt(alphas_cumprod[t])`,
 * `sigma_t = sqrt(1 - alphas_cumprod[t])`; each item's MSE is weighted by `min(snr, gamma) / snr`
 * for epsilon targets and `min(snr, gamma) / (snr + 1)` for v-prediction.
 *
 * @module
 */
import type { PredictionType } from "../schedulers/config.ts";

const f32 = Math.fround;

/**
 * `compute_snr(noise_scheduler, timesteps)` in float32.
 *
 * @example
 * ```ts
 * import { computeSnr } from "./snr.ts";
 * const snr = computeSnr(Float32Array.of(0.5, 0.25), [0, 1]);
 * console.assert(Math.abs(snr[0]! - 1) < 1e-6 && Math.abs(snr[1]! - 1 / 3) < 1e-6);
 * ```
 */
export function computeSnr(alphasCumprod: Float32Array, timesteps: readonly number[]): number[] {
  return timesteps.map((t) => {
    const a = alphasCumprod[t];
    if (a === undefined) throw new RangeError(`Cannot compute the SNR of timestep ${t}`);
    const alpha = f32(Math.sqrt(a));
    const sigma = f32(Math.sqrt(f32(1 - a)));
    const ratio = f32(alpha / sigma);
    return f32(ratio * ratio);
  });
}

/**
 * The per-item loss weights of min-SNR-gamma: `min(snr, gamma) / snr` (epsilon) or
 * `min(snr, gamma) / (snr + 1)` (v-prediction).
 *
 * @example
 * ```ts
 * import { minSnrWeights } from "./snr.ts";
 * const w = minSnrWeights(Float32Array.of(0.99, 0.01), [0, 1], 5, "epsilon");
 * console.assert(w[0]! < 1 && w[1] === 1); // high-SNR (low-noise) steps are down-weighted
 * ```
 */
export function minSnrWeights(
  alphasCumprod: Float32Array,
  timesteps: readonly number[],
  gamma: number,
  predictionType: PredictionType,
): number[] {
  if (!(gamma > 0)) throw new RangeError(`Cannot weight by min-SNR with gamma ${gamma}; pass > 0`);
  const snr = computeSnr(alphasCumprod, timesteps);
  return snr.map((s) => {
    const clipped = Math.min(s, f32(gamma));
    if (predictionType === "epsilon") return f32(clipped / s);
    if (predictionType === "v_prediction") return f32(clipped / f32(s + 1));
    throw new RangeError(`Cannot weight the loss of prediction type "${predictionType}"`);
  });
}
