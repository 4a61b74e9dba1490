/**
 * Float32 emulation of the AVX2 `log256_ps` and `sincos256_ps` that torch's CPU `randn` uses for
 * float32 tensors of 16 or more elements on x86-64.
 *
 * Source: PyTorch v1.13.0 `aten/src/ATen/native/cpu/avx_mathfun.h`
 * (https://github.com/pytorch/pytorch/blob/v1.13.0/aten/src/ATen/native/cpu/avx_mathfun.h),
 * Giovanni Garberoglio's AVX port of Julien Pommier's Cephes-based `sse_mathfun.h`. Each lane is
 * evaluated here with every float32 operation rounded by `Math.fround`.
 *
 * Why fused multiply-adds: PyTorch compiles that file with `-mavx2 -mfma` under GCC, whose default
 * `-ffp-contract=fast` turns a `_mm256_mul_ps` whose only use is a `_mm256_add_ps`/`_sub_ps` into
 * one FMA (GCC's widening_mul pass visits multiplications in statement order, so in `a*b + c*d`
 * the first product is fused and the second rounded). The lines marked "FMA" below are exactly
 * those; with plain rounding instead, 4 of the 21 golden arrays in shared/golden/randn.json differ
 * in some last bits, with this pattern all 21 match bit for bit.
 *
 * @module
 */

const f = Math.fround;

/**
 * fmaf(a, b, c): a*b + c rounded once to float32, for float32 inputs. The product is exact in a
 * double; the sum is rounded to double and then to float, which can only go wrong when the double
 * sum lies exactly halfway between two floats, so that case is resolved with the exact error of
 * the sum (Knuth's TwoSum).
 *
 * @example
 * ```ts
 * import { fmaf } from "./avx2_math.ts";
 * fmaf(3, 0.5, 1); // 2.5
 * ```
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f(s);
  const other = s + (s - r); // r's neighbour on the far side of s when s is a float midpoint
  // Kept tiny so V8 inlines it; the midpoint case is rare.
  return r !== s && f(other) === other ? fmafMidpoint(p, c, s, r, other) : r;
}

/** s = p + c (rounded to double) is halfway between floats r and other: pick by the error. */
function fmafMidpoint(p: number, c: number, s: number, r: number, other: number): number {
  const bb = s - p;
  const err = (p - (s - bb)) + (c - bb); // exact p + c - s (TwoSum)
  if (err === 0) return r;
  return (err > 0) === (other > r) ? other : r;
}

const SQRTHF = f(0.707106781186547524);
const LOG_P0 = f(7.0376836292e-2);
const LOG_P1 = f(-1.1514610310e-1);
const LOG_P2 = f(1.1676998740e-1);
const LOG_P3 = f(-1.2420140846e-1);
const LOG_P4 = f(1.4249322787e-1);
const LOG_P5 = f(-1.6668057665e-1);
const LOG_P6 = f(2.0000714765e-1);
const LOG_P7 = f(-2.4999993993e-1);
const LOG_P8 = f(3.3333331174e-1);
const LOG_Q1 = f(-2.12194440e-4);
const LOG_Q2 = f(0.693359375);

const scratchF32 = new Float32Array(1);
const scratchI32 = new Int32Array(scratchF32.buffer);

/**
 * One lane of `log256_ps` for a positive, normal float32 `x` (the only inputs torch gives it:
 * `1 - u` with `u` in [0, 1)). Returns NaN for x <= 0 like the original.
 *
 * @example
 * ```ts
 * import { log256Lane } from "./avx2_math.ts";
 * log256Lane(1); // 0
 * ```
 */
export function log256Lane(x: number): number {
  if (!(x > 0)) return NaN;
  if (x < 1.1754943508222875e-38) x = 1.1754943508222875e-38; // cut off denormals
  scratchF32[0] = x;
  const bits = scratchI32[0]!;
  // x = mantissa in [0.5, 1), e = unbiased exponent + 1
  scratchI32[0] = (bits & ~0x7f800000) | 0x3f000000;
  let m = scratchF32[0]!;
  let e = ((bits >>> 23) - 0x7f) + 1;
  // if (m < SQRTHF) { e -= 1; m = m + m - 1 } else { m = m - 1 } (both exact)
  if (m < SQRTHF) {
    e -= 1;
    m = f(f(m - 1) + m);
  } else {
    m = f(m - 1);
  }
  const z = f(m * m);
  let y = LOG_P0;
  y = fmaf(y, m, LOG_P1); // FMA
  y = fmaf(y, m, LOG_P2); // FMA
  y = fmaf(y, m, LOG_P3); // FMA
  y = fmaf(y, m, LOG_P4); // FMA
  y = fmaf(y, m, LOG_P5); // FMA
  y = fmaf(y, m, LOG_P6); // FMA
  y = fmaf(y, m, LOG_P7); // FMA
  y = fmaf(y, m, LOG_P8); // FMA
  y = f(y * m);
  y = fmaf(y, z, f(e * LOG_Q1)); // FMA: y*z fused, e*q1 rounded
  y = f(y - z * 0.5); // z*0.5 is exact, fused or not
  const sum = f(m + y);
  return f(sum + e * LOG_Q2); // e*q2 is exact (q2 has 9 significant bits)
}

const MINUS_DP1 = f(-0.78515625);
const MINUS_DP2 = f(-2.4187564849853515625e-4);
const MINUS_DP3 = f(-3.77489497744594108e-8);
const SIN_P0 = f(-1.9515295891e-4);
const SIN_P1 = f(8.3321608736e-3);
const SIN_P2 = f(-1.6666654611e-1);
const COS_P0 = f(2.443315711809948e-005);
const COS_P1 = f(-1.388731625493765e-003);
const COS_P2 = f(4.166664568298827e-002);
const FOPI = f(1.27323954473516); // 4 / pi

/** Result holder for {@link sincos256Lane}, reused to avoid allocating per call. */
export interface SinCos {
  sin: number;
  cos: number;
}

/**
 * One lane of `sincos256_ps` for a float32 `theta` with |theta| < 2^24 (torch passes
 * `2*pi*u`, u in [0, 1)). Writes into `out` and returns it.
 *
 * @example
 * ```ts
 * import { sincos256Lane } from "./avx2_math.ts";
 * const { sin, cos } = sincos256Lane(Math.fround(0.5), { sin: 0, cos: 0 });
 * ```
 */
export function sincos256Lane(theta: number, out: SinCos): SinCos {
  const negative = theta < 0 || Object.is(theta, -0);
  let x = Math.abs(theta);
  // j = (int(x * 4/pi) + 1) & ~1: the octant, rounded up to even
  let j = Math.trunc(f(x * FOPI)) | 0;
  j = (j + 1) & ~1;
  const y = j;
  const sinSignFlip = (j & 4) !== 0;
  const sinPolyIsSin = (j & 2) === 0;
  const cosSignFlip = (~(j - 2) & 4) !== 0;
  // "Extended precision modular arithmetic": x = ((x - y*DP1) - y*DP2) - y*DP3
  x = fmaf(y, MINUS_DP1, x); // FMA
  x = fmaf(y, MINUS_DP2, x); // FMA
  x = fmaf(y, MINUS_DP3, x); // FMA
  const z = f(x * x);
  // cos polynomial on [0, pi/4]
  let yc = COS_P0;
  yc = fmaf(yc, z, COS_P1); // FMA
  yc = fmaf(yc, z, COS_P2); // FMA
  yc = f(yc * z);
  yc = fmaf(yc, z, -f(z * 0.5)); // FMA: second y*z fused with "- z*0.5"
  yc = f(yc + 1);
  // sin polynomial on [0, pi/4]
  let ys = SIN_P0;
  ys = fmaf(ys, z, SIN_P1); // FMA
  ys = fmaf(ys, z, SIN_P2); // FMA
  ys = f(ys * z);
  ys = fmaf(ys, x, x); // FMA
  // The original blends with masks and adds +0.0 from the unselected lane, so -0 becomes +0.
  let s = (sinPolyIsSin ? ys : yc) + 0;
  let c = (sinPolyIsSin ? yc : ys) + 0;
  if (negative !== sinSignFlip) s = -s;
  if (cosSignFlip) c = -c;
  out.sin = s;
  out.cos = c;
  return out;
}
