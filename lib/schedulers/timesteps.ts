/**
 * Timestep spacing of the sigma-based schedulers and the img2img slice of a timestep table.
 *
 * @module
 */
import type { TimestepSpacing } from "./config.ts";
import { numpyArange, numpyLinspace, roundHalfEven } from "./numpy.ts";
import type { Img2ImgTimesteps } from "./scheduler.ts";

/**
 * Timesteps as Diffusers' sigma-based schedulers (Euler, LMS, Heun, ...) space them, in float64
 * before their cast to float32: linspace (not rounded), leading (+ steps_offset) or trailing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { spacedTimesteps } from "./timesteps.ts";
 * assert.deepEqual(Array.from(spacedTimesteps("leading", 1000, 4, 1)), [751, 501, 251, 1]);
 * ```
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  n: number,
  stepsOffset: number,
): Float64Array {
  if (spacing === "linspace") {
    return numpyLinspace(0, numTrainTimesteps - 1, n).reverse();
  }
  if (spacing === "leading") {
    const ratio = Math.floor(numTrainTimesteps / n);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = (n - 1 - i) * ratio + stepsOffset;
    return out;
  }
  const ratio = numTrainTimesteps / n;
  return numpyArange(numTrainTimesteps, 0, -ratio).map((t) => roundHalfEven(t) - 1);
}

/**
 * StableDiffusionImg2ImgPipeline.get_timesteps: keeps the last int(N * strength) steps.
 * `startIndex` is t_start * order (what Diffusers passes to set_begin_index).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { img2imgSlice } from "./timesteps.ts";
 * const r = img2imgSlice(new Float64Array([999, 666, 333, 0]), 4, 0.5, 1);
 * assert.deepEqual(r, { timesteps: new Float64Array([333, 0]), startIndex: 2 });
 * ```
 */
export function img2imgSlice(
  timesteps: Float64Array,
  numInferenceSteps: number,
  strength: number,
  order: number,
): Img2ImgTimesteps {
  if (!(strength >= 0 && strength <= 1)) {
    throw new RangeError(`img2img strength must be in [0, 1], got ${strength}`);
  }
  const initTimestep = Math.min(Math.trunc(numInferenceSteps * strength), numInferenceSteps);
  const tStart = Math.max(numInferenceSteps - initTimestep, 0);
  const startIndex = tStart * order;
  return { timesteps: timesteps.slice(startIndex), startIndex };
}
