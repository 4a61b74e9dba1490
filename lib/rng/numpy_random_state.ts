/**
 * numpy's legacy global generator (`np.random.seed(seed)` then `np.random.uniform` /
 * `np.random.random_sample`), which controlnet_aux's and the A1111 ControlNet extension's
 * preprocessors draw from (the content-shuffle noise, for instance).
 *
 * Ported from numpy 1.24 `numpy/random/src/mt19937/mt19937.c` (`mt19937_seed`: Knuth's
 * initialisation of the 624-word state from a 32-bit seed, the same as `init_genrand`) and
 * `numpy/random/src/legacy/legacy-distributions.c` / `mt19937.h` (`mt19937_next_double`:
 * `((a >> 5) * 2^26 + (b >> 6)) / 2^53` from two successive 32-bit outputs a, b).
 * `uniform(low, high)` is `low + (high - low) * next_double()`.
 *
 * @module
 */
import { Mt19937 } from "./mt19937.ts";

/**
 * `np.random.RandomState(seed)` for the draws preprocessors need. Seeds are numpy's legacy range,
 * integers in [0, 2^32 - 1].
 *
 * @example
 * ```ts
 * import { NumpyRandomState } from "./numpy_random_state.ts";
 * // np.random.seed(0); np.random.random_sample(2)
 * const draws = new NumpyRandomState(0).randomSample(2);
 * console.assert(draws[0] === 0.5488135039273248 && draws[1] === 0.7151893663724195);
 * ```
 */
export class NumpyRandomState {
  readonly #engine: Mt19937;

  /** Seeds as `np.random.seed(seed)`; throws RangeError outside [0, 2^32 - 1]. */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(
        `Seed ${seed} is invalid for numpy's generator: use an integer in [0, 4294967295]`,
      );
    }
    this.#engine = new Mt19937(seed);
  }

  /** `random_sample(count)`: doubles in [0, 1) with 53 random bits each. */
  randomSample(count: number): Float64Array {
    const out = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      const a = this.#engine.nextUint32() >>> 5;
      const b = this.#engine.nextUint32() >>> 6;
      out[i] = (a * 67108864 + b) / 9007199254740992;
    }
    return out;
  }

  /** `uniform(low, high, count)`: `low + (high - low) * random_sample()`, element by element. */
  uniform(low: number, high: number, count: number): Float64Array {
    const range = high - low;
    if (!Number.isFinite(range)) {
      throw new RangeError(`uniform(${low}, ${high}): the range must be finite`);
    }
    const out = this.randomSample(count);
    for (let i = 0; i < count; i++) out[i] = low + range * out[i]!;
    return out;
  }
}
