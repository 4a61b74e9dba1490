/**
 * The 32-bit Mersenne Twister exactly as PyTorch's CPU generator runs it.
 *
 * Ported from PyTorch v1.13.0 `aten/src/ATen/core/MT19937RNGEngine.h`
 * (https://github.com/pytorch/pytorch/blob/v1.13.0/aten/src/ATen/core/MT19937RNGEngine.h), which is
 * Matsumoto & Nishimura's mt19937ar-cok.c: the state is seeded from the low 32 bits of the 64-bit
 * seed, and the whole 624-word state is regenerated lazily when `left` reaches zero.
 *
 * @module
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** Largest seed torch accepts: 2^64 - 1. */
export const MAX_SEED: bigint = (1n << 64n) - 1n;

/**
 * Validates a seed the way `torch.Generator.manual_seed` treats it (an unsigned 64-bit integer)
 * and returns it as a bigint.
 *
 * @example
 * ```ts
 * import { normalizeSeed } from "./mt19937.ts";
 * normalizeSeed(42); // 42n
 * ```
 */
export function normalizeSeed(seed: number | bigint): bigint {
  if (typeof seed === "bigint") {
    if (seed < 0n || seed > MAX_SEED) {
      throw new RangeError(`Seed ${seed} is out of range: use an integer in [0, 2^64 - 1]`);
    }
    return seed;
  }
  if (typeof seed !== "number") {
    throw new TypeError(`Seed must be a number or bigint, got ${typeof seed}`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 64) {
    throw new RangeError(
      `Seed ${seed} is invalid: use an integer in [0, 2^64 - 1] (a bigint above 2^53)`,
    );
  }
  return BigInt(seed);
}

/**
 * mt19937 engine; `nextUint32()` equals one call of `at::mt19937::operator()`.
 *
 * @example
 * ```ts
 * import { Mt19937 } from "./mt19937.ts";
 * const engine = new Mt19937(5489n);
 * engine.nextUint32(); // 3499211612, the reference first output for seed 5489
 * ```
 */
export class Mt19937 {
  #state = new Uint32Array(N);
  #left = 1;
  #next = 0;

  /** Seeds from the low 32 bits of `seed`, as `init_with_uint32` does. */
  constructor(seed: number | bigint) {
    const s = this.#state;
    s[0] = Number(normalizeSeed(seed) & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const prev = s[j - 1]!;
      // 1812433253 * (prev ^ (prev >>> 30)) + j, modulo 2^32
      s[j] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + j) >>> 0;
    }
  }

  /** Next tempered 32-bit output as an unsigned integer in [0, 2^32). */
  nextUint32(): number {
    if (--this.#left === 0) this.#regenerate();
    let y = this.#state[this.#next++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Fills `out` with successive outputs (faster than calling `nextUint32` in a loop). */
  fillUint32(out: Uint32Array): void {
    const s = this.#state;
    let left = this.#left;
    let next = this.#next;
    for (let i = 0; i < out.length; i++) {
      if (--left === 0) {
        this.#regenerate();
        left = N;
        next = 0;
      }
      let y = s[next++]!;
      y ^= y >>> 11;
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= y >>> 18;
      out[i] = y;
    }
    this.#left = left;
    this.#next = next;
  }

  #regenerate(): void {
    const s = this.#state;
    this.#left = N;
    this.#next = 0;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (s[k]! & UPPER_MASK) | (s[k + 1]! & LOWER_MASK);
      s[k] = s[k + M]! ^ (y >>> 1) ^ (s[k + 1]! & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (s[k]! & UPPER_MASK) | (s[k + 1]! & LOWER_MASK);
      s[k] = s[k + M - N]! ^ (y >>> 1) ^ (s[k + 1]! & 1 ? MATRIX_A : 0);
    }
    const y = (s[N - 1]! & UPPER_MASK) | (s[0]! & LOWER_MASK);
    s[N - 1] = s[M - 1]! ^ (y >>> 1) ^ (s[0]! & 1 ? MATRIX_A : 0);
  }
}
