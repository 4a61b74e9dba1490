/**
 * What the VP-ODE solvers in Diffusers' form (DPM-Solver multistep and singlestep, DEIS, UniPC)
 * share: the VP coefficients of a sigma, noising at a sigma, and the `Scheduler` bookkeeping that
 * does not depend on the solver (read-only `timesteps` / `sigmas`, no input scaling, the img2img
 * slice, and the check that `step` runs the indices in order). Each solver keeps its own file
 * with its `setTimesteps` and `step`.
 *
 * @module
 */
import { checkIndex, checkSameLength } from "./checks.ts";
import type { Img2ImgTimesteps, NoiseGenerator, Scheduler } from "./scheduler.ts";
import { img2imgSlice } from "./timesteps.ts";

const f = Math.fround;

/**
 * VP coefficients of a k-diffusion sigma, as float32: `[alpha_t, sigma_t]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sigmaToAlphaSigmaT } from "./vp_scheduler.ts";
 * assert.deepEqual(sigmaToAlphaSigmaT(0), [1, 0]);
 * ```
 */
export function sigmaToAlphaSigmaT(sigma: number): [number, number] {
  // alpha_t = 1 / (sigma^2 + 1) ** 0.5 ; sigma_t = sigma * alpha_t  (Diffusers _sigma_to_alpha_sigma_t)
  const s = f(sigma);
  const alpha = f(1 / f(Math.sqrt(f(f(s * s) + 1))));
  return [alpha, f(s * alpha)];
}

/**
 * VP noising x_t = alpha_t x0 + sigma_t noise for the k-diffusion sigma `sigma`, in float32.
 * Same noising as `addNoiseAlphas` in noise.ts; kept separate because the VP solvers take alpha_t
 * and sigma_t from the sigma, not from sqrt(alpha_bar), which rounds differently in float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { vpAddNoise } from "./vp_scheduler.ts";
 * // sigma 0 leaves the sample clean
 * const x = vpAddNoise(new Float32Array([2]), new Float32Array([3]), 0);
 * assert.deepEqual(Array.from(x), [2]);
 * ```
 */
export function vpAddNoise(
  original: Float32Array,
  noise: Float32Array,
  sigma: number,
): Float32Array {
  checkSameLength("addNoise", original, noise);
  const [alpha, sigmaT] = sigmaToAlphaSigmaT(sigma);
  const out = new Float32Array(original.length);
  for (let j = 0; j < out.length; j++) out[j] = f(alpha * original[j]!) + f(sigmaT * noise[j]!);
  return out;
}

/**
 * Base of the VP solvers: holds `timesteps` / `sigmas` (set together by `setSchedule`), the
 * index the next `step` must have, and implements `scaleModelInput` (identity), `addNoise`
 * (alpha_t x0 + sigma_t noise) and `img2imgTimesteps`.
 */
export abstract class VpScheduler implements Scheduler {
  /** Always 1, as in Diffusers. */
  readonly order = 1;
  /** Always 1 (the VP latent starts at unit variance). */
  readonly initNoiseSigma = 1;
  /** Shape handed to `rng.randn` (SDE variants) and batch split for thresholding (`[0]`). */
  noiseShape?: number[];
  readonly #name: string;
  #timesteps: Float64Array = new Float64Array(0);
  #sigmas: Float64Array = new Float64Array(0);
  #nextIndex: number | undefined;

  /** `name` prefixes error messages. */
  constructor(name: string) {
    this.#name = name;
  }

  /** Diffusers' integer `timesteps` after `setTimesteps`. */
  get timesteps(): Float64Array {
    return this.#timesteps;
  }

  /** Diffusers' `sigmas` (float32 values, one more than timesteps). */
  get sigmas(): Float64Array {
    return this.#sigmas;
  }

  /** Computes the schedule (through `setSchedule`) and resets history. */
  abstract setTimesteps(numInferenceSteps: number): void;

  /** One solver update from `timesteps[i]`; returns the new sample. */
  abstract step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array;

  /** Stores a new schedule; the next `step` may have any index. */
  protected setSchedule(timesteps: Float64Array, sigmas: Float64Array): void {
    this.#sigmas = sigmas;
    this.#timesteps = timesteps;
    this.#nextIndex = undefined;
  }

  /** Throws a RangeError unless `i` follows the previous step's index. */
  protected checkStepOrder(name: string, i: number): void {
    if (this.#nextIndex !== undefined && i !== this.#nextIndex) {
      throw new RangeError(
        `${name}: expected step index ${this.#nextIndex}, got ${i}; ` +
          "call setTimesteps() before starting a new loop",
      );
    }
  }

  /** Records that step `i` is done. */
  protected stepDone(i: number): void {
    this.#nextIndex = i + 1;
  }

  /** No input scaling; returns `sample` itself. */
  scaleModelInput(sample: Float32Array, i: number): Float32Array {
    checkIndex(`${this.#name}.scaleModelInput`, i, this.#timesteps.length);
    return sample;
  }

  /** Diffusers `add_noise` at `sigmas[i]`: alpha_t x0 + sigma_t noise. */
  addNoise(original: Float32Array, noise: Float32Array, i: number): Float32Array {
    checkIndex(`${this.#name}.addNoise`, i, this.#timesteps.length);
    return vpAddNoise(original, noise, this.#sigmas[i]!);
  }

  /** `setTimesteps(n)` then StableDiffusionImg2ImgPipeline.get_timesteps. */
  img2imgTimesteps(numInferenceSteps: number, strength: number): Img2ImgTimesteps {
    this.setTimesteps(numInferenceSteps);
    return img2imgSlice(this.#timesteps, numInferenceSteps, strength, this.order);
  }
}
