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
