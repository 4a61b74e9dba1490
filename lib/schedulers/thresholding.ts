/**
 * Dynamic thresholding of a predicted x0 (Saharia et al. 2022), as Diffusers' schedulers apply it.
 *
 * @module
 */

const f32 = Math.fround;

/**
 * Diffusers `_threshold_sample` (dynamic thresholding, Saharia et al. 2022): per batch item, clamp
 * to the `ratio` quantile of |x| (at least 1, at most maxValue) and divide by it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { thresholdSample } from "./thresholding.ts";
 * // the 0.5 quantile of |x| is 2.5, capped at sample_max_value 2
 * const x = thresholdSample(new Float32Array([4, -4, 0.5, 1]), 0.5, 2);
 * assert.deepEqual(Array.from(x), [1, -1, 0.25, 0.5]);
 * ```
 */
export function thresholdSample(
  sample: Float32Array,
  ratio: number,
  maxValue: number,
  batch = 1,
): Float32Array {
  const out = new Float32Array(sample.length);
  const per = sample.length / batch;
  for (let b = 0; b < batch; b++) {
    const part = sample.subarray(b * per, (b + 1) * per);
    const abs = Float32Array.from(part, Math.abs).sort();
    // torch.quantile, linear interpolation between the two nearest ranks.
    const pos = ratio * (per - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, per - 1);
    const w = pos - lo;
    const a = abs[lo]!;
    const c = abs[hi]!;
    let s = w < 0.5 ? f32(a + f32(w * f32(c - a))) : f32(c - f32(f32(c - a) * (1 - w)));
    s = Math.min(Math.max(s, 1), maxValue);
    for (let k = 0; k < per; k++) {
      const v = Math.min(Math.max(part[k]!, -s), s);
      out[b * per + k] = f32(v / s);
    }
  }
  return out;
}
