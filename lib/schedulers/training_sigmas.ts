/**
 * The training sigmas of a k-diffusion-style schedule (`((1 - a) / a) ** 0.5` per training
 * timestep) and the maps between a fractional timestep and a sigma (Diffusers `_sigma_to_t`,
 * k-diffusion `t_to_sigma`).
 *
 * @module
 */

const f32 = Math.fround;

/**
 * Training sigmas `((1 - a) / a) ** 0.5` in float32, ascending in t (index = timestep).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sigmasFromAlphasCumprod } from "./training_sigmas.ts";
 * assert.deepEqual(Array.from(sigmasFromAlphasCumprod(new Float32Array([0.5, 0.2]))), [1, 2]);
 * ```
 */
export function sigmasFromAlphasCumprod(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
}

/**
 * `np.log` of float32 sigmas, kept as float32 like numpy does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { logSigmasF32 } from "./training_sigmas.ts";
 * assert.deepEqual(Array.from(logSigmasF32(new Float32Array([1]))), [0]);
 * ```
 */
export function logSigmasF32(sigmas: Float32Array): Float32Array {
  return sigmas.map((s) => Math.log(s));
}

/**
 * Diffusers `_sigma_to_t`: the (fractional) training timestep whose sigma is `sigma`, by linear
 * interpolation of log-sigma between the two neighbouring training steps.
 * With `float32`, the log and the weight are rounded to float32 as numpy does for float32 input.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sigmaToT } from "./training_sigmas.ts";
 * assert.equal(sigmaToT(Math.sqrt(10), [0, Math.log(10), Math.log(100)]), 0.5);
 * ```
 */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>, float32 = false): number {
  // float32: the sigma is a float32 tensor (KDPM2's interpolated sigmas), so numpy computes the
  // log and the weight in float32.
  const f = float32 ? f32 : (x: number) => x;
  const logSigma = f(Math.log(Math.max(sigma, 1e-10)));
  const n = logSigmas.length;
  // low_idx = last index whose log-sigma is <= log_sigma (cumsum(dists >= 0).argmax()).
  let count = 0;
  let lowIdx = 0;
  let best = -1;
  for (let i = 0; i < n; i++) {
    if (logSigma - logSigmas[i]! >= 0) count++;
    if (count > best) {
      best = count;
      lowIdx = i;
    }
  }
  lowIdx = Math.min(lowIdx, n - 2);
  const highIdx = lowIdx + 1;
  const low = logSigmas[lowIdx]!;
  const high = logSigmas[highIdx]!;
  let w = f(f(low - logSigma) / f(low - high));
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * lowIdx + w * highIdx;
}

/**
 * k-diffusion `DiscreteSchedule.t_to_sigma` in float32: log-linear interpolation of sigmas.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tToSigma } from "./training_sigmas.ts";
 * assert.equal(tToSigma(0.5, [0, Math.log(100)]), 10);
 * ```
 */
export function tToSigma(t: number, logSigmas: ArrayLike<number>): number {
  const tt = f32(t);
  const lo = Math.floor(tt);
  const hi = Math.ceil(tt);
  const w = f32(tt - lo);
  const ls = f32(f32(f32(1 - w) * logSigmas[lo]!) + f32(w * logSigmas[hi]!));
  return f32(Math.exp(ls));
}
