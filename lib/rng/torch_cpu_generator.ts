/**
 * A bit-exact copy of `torch.Generator("cpu")`: `manual_seed(seed)` followed by `torch.randn`,
 * `torch.rand` and `torch.randn(..., dtype=torch.float64)`, as PyTorch 1.13 computes them on
 * x86-64 (the build Diffusers users run).
 *
 * Ported from PyTorch v1.13.0 (https://github.com/pytorch/pytorch/tree/v1.13.0):
 * - `aten/src/ATen/CPUGeneratorImpl.cpp`: `random()` is one mt19937 output; `random64()` is two,
 *   the first in the high word; the cached second Box–Muller value `next_double_normal_sample`.
 * - `aten/src/ATen/core/TransformationHelper.h` `uniform_real`: float takes the low 24 bits of
 *   `random()`, double the low 53 bits of `random64()`, times 2^-digits.
 * - `aten/src/ATen/core/DistributionsHelper.h` `normal_distribution<double>`: u1, u2 uniform
 *   doubles, r = sqrt(-2 log(1 - u2)), theta = 2 pi u1; returns r cos(theta), caches r sin(theta).
 * - `aten/src/ATen/native/cpu/DistributionTemplates.h` `normal_kernel`: fewer than 16 elements
 *   take `normal_distribution<double>` one by one (using and refilling the cache); 16 or more fill
 *   uniforms first, then Box–Muller 16 at a time (first 8 are u1, next 8 are u2), and when the
 *   size is not a multiple of 16 draw 16 fresh uniforms for the last 16 slots and redo them. For
 *   float32 on an AVX2 CPU this is `normal_fill_AVX2` (see ./avx2_math.ts); for float64 it is
 *   `normal_fill<double>` with libm's log/cos/sin.
 * - `aten/src/ATen/native/cpu/DistributionTemplates.h` `uniform_kernel`: `rand` is serial.
 *
 * Verified against shared/golden/randn.json (torch 1.13.0a0, x86-64): every array bit-exact.
 *
 * Limits, by construction: torch builds without AVX2 (ARM, e.g. Apple silicon) run the scalar
 * `normal_fill` with libm's logf/cosf/sinf for float32 arrays of 16 or more, so their last bits
 * differ from these (and from x86 torch). The float64 path of 16 or more calls JavaScript's
 * Math.log/cos/sin where torch calls glibc's log/cos/sin; both are within an ulp and agreed on
 * every golden case, but a rare last-bit difference in float64 output cannot be ruled out.
 *
 * @module
 */

import { log256Lane, type SinCos, sincos256Lane } from "./avx2_math.ts";
import { Mt19937, normalizeSeed } from "./mt19937.ts";
import { type NoiseGenerator, shapeSize } from "./noise_generator.ts";

const TWO_POW_M24 = 2 ** -24;
const TWO_POW_M53 = 2 ** -53;
const TWO_POW_32 = 2 ** 32;
/** `_mm256_set1_ps(2.0f * c10::pi<double>)` */
const TWO_PI_F32 = Math.fround(2 * Math.PI);

/**
 * torch's CPU generator (mt19937) with `randn`, `rand` and float64 `randn`. Successive calls
 * continue one stream exactly as successive torch calls on one `torch.Generator` do.
 *
 * @example
 * ```ts
 * import { TorchCpuGenerator } from "./mod.ts";
 * // torch.randn((1, 4, 64, 64), generator=torch.Generator("cpu").manual_seed(0))
 * const latents = new TorchCpuGenerator(0).randn([1, 4, 64, 64]);
 * latents[0]; // -1.1258398294448853
 * ```
 */
export class TorchCpuGenerator implements NoiseGenerator {
  readonly #engine: Mt19937;
  readonly #seed: bigint;
  #nextDoubleNormal: number | undefined = undefined;
  readonly #sc: SinCos = { sin: 0, cos: 0 };

  /**
   * Same as `torch.Generator("cpu").manual_seed(seed)` (and `torch.manual_seed(seed)` for the
   * global generator). `seed` must be an integer in [0, 2^64 - 1]; mt19937 uses its low 32 bits.
   */
  constructor(seed: number | bigint) {
    this.#seed = normalizeSeed(seed);
    this.#engine = new Mt19937(this.#seed);
  }

  /** The seed given to the constructor, as `Generator.initial_seed()` reports it. */
  get initialSeed(): bigint {
    return this.#seed;
  }

  /** `torch.randn(shape, generator=g)` in float32. */
  randn(shape: number[]): Float32Array {
    const n = shapeSize(shape);
    const out = new Float32Array(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) out[i] = this.#scalarNormal();
      return out;
    }
    this.#fillUniform24(out, 0, n);
    for (let i = 0; i + 16 <= n; i += 16) this.#boxMuller16Float(out, i);
    if (n % 16 !== 0) {
      this.#fillUniform24(out, n - 16, 16);
      this.#boxMuller16Float(out, n - 16);
    }
    return out;
  }

  /**
   * `torch.randn(shape, generator=g, dtype=torch.float64)`. From 16 elements on this uses the
   * JavaScript engine's log/cos/sin where torch uses glibc's (see the module notes).
   */
  randnFloat64(shape: number[]): Float64Array {
    const n = shapeSize(shape);
    const out = new Float64Array(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) out[i] = this.#scalarNormal();
      return out;
    }
    for (let i = 0; i < n; i++) out[i] = this.#uniform53();
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16Double(out, i);
    if (n % 16 !== 0) {
      for (let i = n - 16; i < n; i++) out[i] = this.#uniform53();
      boxMuller16Double(out, n - 16);
    }
    return out;
  }

  /** `torch.rand(shape, generator=g)` in float32: uniform in [0, 1) with 24 random bits. */
  rand(shape: number[]): Float32Array {
    const n = shapeSize(shape);
    const out = new Float32Array(n);
    this.#fillUniform24(out, 0, n);
    return out;
  }

  /** `uniform_real_distribution<float>(0, 1)` for `count` slots from `start`. */
  #fillUniform24(out: Float32Array, start: number, count: number): void {
    const raw = new Uint32Array(count);
    this.#engine.fillUint32(raw);
    for (let i = 0; i < count; i++) out[start + i] = (raw[i]! & 0xffffff) * TWO_POW_M24;
  }

  /** `uniform_real_distribution<double>(0, 1)`: low 53 bits of random64() times 2^-53. */
  #uniform53(): number {
    const hi = this.#engine.nextUint32();
    const lo = this.#engine.nextUint32();
    return ((hi & 0x1fffff) * TWO_POW_32 + lo) * TWO_POW_M53;
  }

  /** `at::normal_distribution<double>(0, 1)` with the generator's cached second value. */
  #scalarNormal(): number {
    if (this.#nextDoubleNormal !== undefined) {
      const cached = this.#nextDoubleNormal;
      this.#nextDoubleNormal = undefined;
      return cached + 0; // transformation::normal(ret, mean=0, std=1): -0 becomes +0
    }
    const u1 = this.#uniform53();
    const u2 = this.#uniform53();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.#nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta) + 0;
  }

  /** `normal_fill_16_AVX2` with mean 0 and std 1, in place on out[o .. o+16). */
  #boxMuller16Float(out: Float32Array, o: number): void {
    const f = Math.fround;
    const sc = this.#sc;
    for (let j = 0; j < 8; j++) {
      const u1 = f(1 - out[o + j]!); // [0, 1) -> (0, 1] for log
      const u2 = out[o + j + 8]!;
      const radius = f(Math.sqrt(f(-2 * log256Lane(u1))));
      sincos256Lane(f(TWO_PI_F32 * u2), sc);
      // _mm256_fmadd_ps(n, std=1, mean=0): exact, but turns -0 into +0
      out[o + j] = f(radius * sc.cos) + 0;
      out[o + j + 8] = f(radius * sc.sin) + 0;
    }
  }
}

/** `normal_fill_16<double>` with mean 0 and std 1, in place on out[o .. o+16). */
function boxMuller16Double(out: Float64Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = 1 - out[o + j]!;
    const u2 = out[o + j + 8]!;
    const radius = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    out[o + j] = radius * Math.cos(theta) + 0; // "* std + mean": -0 becomes +0
    out[o + j + 8] = radius * Math.sin(theta) + 0;
  }
}
