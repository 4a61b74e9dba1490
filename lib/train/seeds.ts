/**
 * The randomness of a training run, derived from one seed so that any step can be replayed on
 * its own: every draw of step k (noise, timesteps, flips) comes from generators seeded with
 * `deriveSeed(seed, stream, k)`, and the data order of epoch e from `deriveSeed(seed, "order",
 * e)`. A resumed run therefore needs no generator state, only the step it stopped at, and a run
 * of N steps and one of N/2 + N/2 resumed draw exactly the same numbers.
 *
 * Seeds are mixed with splitmix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom
 * number generators"), whose output is a bijection of its input, so different (stream, index)
 * pairs give unrelated generators.
 *
 * @module
 */
import { Mt19937 } from "../rng/mt19937.ts";

const MASK64 = (1n << 64n) - 1n;

/** One splitmix64 output for state `x` (the state after adding the golden gamma). */
function splitmix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

function streamId(stream: string): bigint {
  // FNV-1a over the stream name: a fixed 64-bit tag per stream.
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(stream)) {
    h = ((h ^ BigInt(byte)) * 0x100000001b3n) & MASK64;
  }
  return h;
}

/**
 * The seed of draw `index` of `stream` in a run seeded `seed`: a 64-bit integer.
 *
 * @example
 * ```ts
 * import { deriveSeed } from "./seeds.ts";
 * console.assert(deriveSeed(7n, "noise", 3) === deriveSeed(7n, "noise", 3));
 * console.assert(deriveSeed(7n, "noise", 3) !== deriveSeed(7n, "noise", 4));
 * ```
 */
export function deriveSeed(seed: bigint | number, stream: string, index: number): bigint {
  const s = BigInt(seed) & MASK64;
  return splitmix64(splitmix64(s ^ streamId(stream)) ^ BigInt(index));
}

/**
 * Integers from one mt19937 stream: uniform ranges, coin flips and shuffles.
 *
 * @example
 * ```ts
 * import { deriveSeed, IntegerStream } from "./seeds.ts";
 * const order = new IntegerStream(deriveSeed(0n, "order", 0)).permutation(4);
 * console.assert(order.length === 4);
 * ```
 */
export class IntegerStream {
  #engine: Mt19937;

  constructor(seed: bigint) {
    this.#engine = new Mt19937(seed);
  }

  /**
   * A uniform integer in [0, n), `n` <= 2^32 (rejection sampling, so no modulo bias).
   *
   * @example
   * ```ts
   * import { IntegerStream } from "./seeds.ts";
   * const r = new IntegerStream(1n).below(1000);
   * console.assert(Number.isInteger(r) && r >= 0 && r < 1000);
   * ```
   */
  below(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) {
      throw new RangeError(`Cannot draw an integer below ${n}; pass an integer in [1, 2^32]`);
    }
    const limit = 2 ** 32 - (2 ** 32 % n);
    while (true) {
      const x = this.#engine.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /**
   * True with probability 1/2.
   *
   * @example
   * ```ts
   * import { IntegerStream } from "./seeds.ts";
   * console.assert(typeof new IntegerStream(3n).coin() === "boolean");
   * ```
   */
  coin(): boolean {
    return (this.#engine.nextUint32() & 1) === 1;
  }

  /**
   * A permutation of 0..n-1 (Fisher-Yates).
   *
   * @example
   * ```ts
   * import { IntegerStream } from "./seeds.ts";
   * console.assert(new IntegerStream(3n).permutation(5).sort().join() === "0,1,2,3,4");
   * ```
   */
  permutation(n: number): number[] {
    const out = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.below(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}
