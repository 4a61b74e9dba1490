/**
 * The interface that schedulers and pipelines take for their noise, and the shape check that all
 * generators share.
 *
 * @module
 */

/**
 * A source of standard-normal noise. `randn(shape)` returns `shape.reduce(*)` float32 values in
 * row-major order and advances the generator, so successive calls continue one stream.
 *
 * @example
 * ```ts
 * import { type NoiseGenerator, TorchCpuGenerator } from "./mod.ts";
 * const generator: NoiseGenerator = new TorchCpuGenerator(0);
 * const latents = generator.randn([1, 4, 64, 64]); // Float32Array(16384)
 * ```
 */
export interface NoiseGenerator {
  randn(shape: number[]): Float32Array;
}

/**
 * Number of elements of `shape` (1 for `[]`, like a torch scalar). Throws a TypeError when a
 * dimension is not a non-negative integer or the total is too large for one typed array.
 *
 * @example
 * ```ts
 * import { shapeSize } from "./noise_generator.ts";
 * shapeSize([1, 4, 64, 64]); // 16384
 * ```
 */
export function shapeSize(shape: readonly number[]): number {
  if (!Array.isArray(shape)) {
    throw new TypeError(`Shape must be an array of integers, got ${typeof shape}`);
  }
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TypeError(
        `Shape [${shape.join(", ")}] is invalid: every dimension must be an integer >= 0`,
      );
    }
    n *= d;
  }
  if (n > 2 ** 32 - 1) {
    throw new TypeError(
      `Shape [${shape.join(", ")}] has ${n} elements: at most 2^32 - 1 fit in one array`,
    );
  }
  return n;
}
