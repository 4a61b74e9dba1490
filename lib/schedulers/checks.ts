/**
 * Argument checks every scheduler runs: step counts, step indices and tensor lengths.
 *
 * @module
 */

/**
 * Throws a RangeError unless `n` is a usable number of inference steps.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkSteps } from "./checks.ts";
 * assert.throws(() => checkSteps("euler", 0, 1000), RangeError);
 * ```
 */
export function checkSteps(name: string, n: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`${name}: numInferenceSteps must be a positive integer, got ${n}`);
  }
  if (n > numTrainTimesteps) {
    throw new RangeError(
      `${name}: numInferenceSteps ${n} exceeds num_train_timesteps ${numTrainTimesteps}; use fewer steps`,
    );
  }
}

/**
 * Throws a RangeError unless `i` indexes `timesteps`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkIndex } from "./checks.ts";
 * assert.throws(() => checkIndex("euler", 4, 4), RangeError);
 * ```
 */
export function checkIndex(name: string, i: number, length: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= length) {
    throw new RangeError(
      `${name}: step index ${i} is outside timesteps [0, ${length}); call setTimesteps() first`,
    );
  }
}

/**
 * Throws a TypeError unless the two arrays have the same length.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkSameLength } from "./checks.ts";
 * assert.throws(() => checkSameLength("step", new Float32Array(2), new Float32Array(3)), TypeError);
 * ```
 */
export function checkSameLength(name: string, a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length) {
    throw new TypeError(
      `${name}: model output has ${a.length} values but the sample has ${b.length}; pass tensors of one shape`,
    );
  }
}
