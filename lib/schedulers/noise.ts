/**
 * Noise: drawing the noise of a stochastic step, and noising a clean sample to a noise level
 * (img2img) in the alpha_bar (DDPM) and the sigma (k-diffusion) parametrisations.
 *
 * @module
 */
import { checkSameLength } from "./checks.ts";
import { sqrt32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";

const f32 = Math.fround;

/**
 * Draws the step noise; `what` names the caller for the error raised when no generator is given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { drawNoise } from "./noise.ts";
 * import { TorchCpuGenerator } from "../rng/mod.ts";
 * assert.equal(drawNoise(new TorchCpuGenerator(0), 8, [1, 2, 2, 2], "euler-a").length, 8);
 * assert.throws(() => drawNoise(undefined, 8, undefined, "euler-a"), TypeError);
 * ```
 */
export function drawNoise(
  rng: NoiseGenerator | undefined,
  length: number,
  shape: number[] | undefined,
  what: string,
): Float32Array {
  if (rng === undefined) {
    throw new TypeError(
      `${what} is stochastic and needs a NoiseGenerator: pass rng (e.g. new TorchCpuGenerator(seed))`,
    );
  }
  const s = shape ?? [length];
  const noise = rng.randn(s);
  if (noise.length !== length) {
    throw new TypeError(
      `${what}: noiseShape [${
        s.join(", ")
      }] has ${noise.length} values but the sample has ${length}`,
    );
  }
  return noise;
}

/**
 * Noising of the DDPM family at training timestep `t` (`add_noise` of DDPM / DDIM / PNDM / LCM):
 * sqrt(a_t) * x0 + sqrt(1 - a_t) * noise, Ho et al. 2020 Eq. (4), in float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { addNoiseAlphas } from "./noise.ts";
 * const alphasCumprod = new Float32Array([0.25, 1]);
 * const x = addNoiseAlphas(alphasCumprod, new Float32Array([2]), new Float32Array([4]), 0);
 * assert.deepEqual(Array.from(x), [Math.fround(1 + Math.fround(Math.sqrt(0.75)) * 4)]);
 * ```
 */
export function addNoiseAlphas(
  alphasCumprod: Float32Array,
  original: Float32Array,
  noise: Float32Array,
  t: number,
): Float32Array {
  checkSameLength("addNoise", original, noise);
  const a = alphasCumprod[t];
  if (a === undefined) {
    throw new RangeError(`addNoise: timestep ${t} is outside [0, ${alphasCumprod.length})`);
  }
  const sa = sqrt32(a);
  const sb = sqrt32(f32(1 - a));
  const out = new Float32Array(original.length);
  for (let k = 0; k < out.length; k++) out[k] = f32(sa * original[k]!) + f32(sb * noise[k]!);
  return out;
}

/**
 * Noising of the sigma (k-diffusion) family: x0 + sigma * noise, in float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { addNoiseSigma } from "./noise.ts";
 * assert.deepEqual(Array.from(addNoiseSigma(new Float32Array([1]), new Float32Array([2]), 0.5)), [2]);
 * ```
 */
export function addNoiseSigma(
  original: Float32Array,
  noise: Float32Array,
  sigma: number,
): Float32Array {
  checkSameLength("addNoise", original, noise);
  const out = new Float32Array(original.length);
  for (let k = 0; k < out.length; k++) out[k] = original[k]! + f32(noise[k]! * sigma);
  return out;
}
