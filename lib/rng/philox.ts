/**
 * AUTOMATIC1111's "NV" random source: a CPU imitation of `torch.randn(..., device="cuda")`
 * (Philox 4x32-10 plus one Box–Muller value per counter), selected in the web UI by the setting
 * "Random number generator source: NV".
 *
 * Implemented from the algorithm in AUTOMATIC1111/stable-diffusion-webui `modules/rng_philox.py`
 * (added in commit 5ef669de080814067961f28357256e8fe27544f4,
 * https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/5ef669de080814067961f28357256e8fe27544f4/modules/rng_philox.py);
 * the block function is Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11),
 * checked against Random123's known-answer vectors. Semantics reproduced from that file:
 * - key = the 64-bit seed split into (low 32 bits, high 32 bits);
 * - element i of a call uses counter (offset, 0, i, 0); each `randn` call then adds 1 to offset;
 * - of the four output words, the first two make one normal value, the others are discarded;
 * - Box–Muller in float64 (numpy promotes uint32 * float32 to float64), float32 constants:
 *   u = x * 2^-32' + 2^-32'/2, v = y * (2pi 2^-32)' + (2pi 2^-32)'/2 (' = rounded to float32),
 *   result float32(sqrt(-2 ln u) * sin v).
 *
 * @module
 */

import { normalizeSeed } from "./mt19937.ts";
import { type NoiseGenerator, shapeSize } from "./noise_generator.ts";

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
/**
 * High 32 bits of the 64-bit product a * m (both < 2^32), given its exact low 32 bits `lo`.
 * The double product is off by at most 2^11, far less than 2^31, so rounding (a*m - lo) / 2^32
 * to the nearest integer recovers the exact high word.
 */
function mulHi(a: number, m: number, lo: number): number {
  return Math.round((a * m - lo) * 2.3283064365386963e-10) >>> 0;
}

/**
 * Philox 4x32 with 10 rounds: encrypts `counter` (4 words) under `key` (2 words), in place in
 * `counter`, and returns it. Matches Random123's `philox4x32_R(10, ctr, key)`.
 *
 * @example
 * ```ts
 * import { philox4x32 } from "./philox.ts";
 * const out = philox4x32(new Uint32Array(4), 0, 0);
 * out[0]!.toString(16); // "6627e8d5" (Random123 known answer)
 * ```
 */
export function philox4x32(counter: Uint32Array, key0: number, key1: number): Uint32Array {
  let c0 = counter[0]!, c1 = counter[1]!, c2 = counter[2]!, c3 = counter[3]!;
  let k0 = key0 >>> 0, k1 = key1 >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0; // key schedule: bump by the Weyl constants
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const lo0 = Math.imul(c0, PHILOX_M0) >>> 0;
    const hi0 = mulHi(c0, PHILOX_M0, lo0);
    const lo1 = Math.imul(c2, PHILOX_M1) >>> 0;
    const hi1 = mulHi(c2, PHILOX_M1, lo1);
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  counter[0] = c0;
  counter[1] = c1;
  counter[2] = c2;
  counter[3] = c3;
  return counter;
}

/** `np.float32(2.3283064e-10)`, A1111's approximation of 2^-32 */
const TWO_POW32_INV = Math.fround(2.3283064e-10);
/** `np.float32(2.3283064e-10 * 6.2831855)`, the product taken in float64 first */
const TWO_POW32_INV_2PI = Math.fround(2.3283064e-10 * 6.2831855);

/**
 * A1111's Box–Muller on two Philox words, before the final cast to float32.
 *
 * @example
 * ```ts
 * import { philoxBoxMuller } from "./philox.ts";
 * philoxBoxMuller(0x80000000, 0x40000000); // sqrt(-2 ln(~0.5)) * sin(~pi/2)
 * ```
 */
export function philoxBoxMuller(x: number, y: number): number {
  const u = x * TWO_POW32_INV + TWO_POW32_INV / 2;
  const v = y * TWO_POW32_INV_2PI + TWO_POW32_INV_2PI / 2;
  const s = Math.sqrt(-2.0 * Math.log(u));
  return s * Math.sin(v);
}

/**
 * A1111's "NV" generator (`modules/rng_philox.py` `Generator`): float32 normals that imitate
 * `torch.randn(shape, device="cuda")` after `torch.manual_seed(seed)`, computed on the CPU. Each
 * `randn` call advances the offset by one, whatever its size, as A1111's does.
 *
 * @example
 * ```ts
 * import { PhiloxGenerator } from "./mod.ts";
 * const noise = new PhiloxGenerator(0).randn([3, 4]);
 * noise[0]; // about -0.92466259, A1111's documented first value for seed 0
 * ```
 */
export class PhiloxGenerator implements NoiseGenerator {
  readonly #key0: number;
  readonly #key1: number;
  readonly #seed: bigint;
  #offset = 0;

  /** `seed` is an integer in [0, 2^64 - 1], used as Philox's 64-bit key. */
  constructor(seed: number | bigint) {
    this.#seed = normalizeSeed(seed);
    this.#key0 = Number(this.#seed & 0xffffffffn);
    this.#key1 = Number(this.#seed >> 32n);
  }

  /** The seed given to the constructor. */
  get seed(): bigint {
    return this.#seed;
  }

  /** Number of `randn` calls so far: the first counter word of the next call. */
  get offset(): number {
    return this.#offset;
  }

  /** Standard normal float32 values for `shape`, then offset += 1. */
  randn(shape: number[]): Float32Array {
    const n = shapeSize(shape);
    if (this.#offset > 0xffffffff) {
      throw new RangeError(
        `PhiloxGenerator offset ${this.#offset} exceeds 2^32 - 1: create a new generator`,
      );
    }
    const out = new Float32Array(n);
    const counter = new Uint32Array(4);
    for (let i = 0; i < n; i++) {
      counter[0] = this.#offset;
      counter[1] = 0;
      counter[2] = i;
      counter[3] = 0;
      philox4x32(counter, this.#key0, this.#key1);
      out[i] = philoxBoxMuller(counter[0]!, counter[1]!); // words 2 and 3 are discarded
    }
    this.#offset++;
    return out;
  }
}
