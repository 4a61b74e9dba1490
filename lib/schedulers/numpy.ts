/**
 * numpy- and torch-compatible numerics: float32 scalar operations rounded like torch's 0-d float32
 * tensors, `torch.linspace` / `numpy.linspace` / `numpy.arange` with their own fill rules,
 * `numpy.round`, `numpy.interp`, `torch.lerp`, `max`, and `combine` (a float32 linear combination
 * of tensors in torch's operation order).
 *
 * Numbers follow Diffusers 0.27 (`src/diffusers/schedulers/scheduling_*.py`): tables that Diffusers
 * builds as float32 torch tensors are float32 here (every operation rounded with `Math.fround`),
 * tables that it builds with numpy in float64 are float64 here.
 *
 * @module
 */

const f32 = Math.fround;
/**
 * Float32 square root (correctly rounded, like torch's float32 sqrt / `** 0.5`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sqrt32 } from "./numpy.ts";
 * assert.equal(sqrt32(2), Math.fround(Math.SQRT2));
 * ```
 */
export function sqrt32(x: number): number {
  return f32(Math.sqrt(x));
}

/**
 * float32 natural logarithm (torch.log on a 0-d float32 tensor).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { log32 } from "./numpy.ts";
 * assert.equal(log32(Math.E), 1);
 * ```
 */
export function log32(x: number): number {
  return f32(Math.log(x));
}

/**
 * float32 exponential.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exp32 } from "./numpy.ts";
 * assert.equal(exp32(1), Math.fround(Math.E));
 * ```
 */
export function exp32(x: number): number {
  return f32(Math.exp(x));
}

/**
 * float32 expm1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { expm132 } from "./numpy.ts";
 * assert.equal(expm132(1e-10), Math.fround(1e-10));
 * ```
 */
export function expm132(x: number): number {
  return f32(Math.expm1(x));
}

/**
 * `torch.linspace(start, end, steps, dtype=float32)` on CPU: the step is a float32, the first half
 * counts up from `start` and the second half down from `end` (ATen RangeFactoriesKernel.cpp).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { torchLinspaceF32 } from "./numpy.ts";
 * assert.deepEqual(Array.from(torchLinspaceF32(0, 1, 5)), [0, 0.25, 0.5, 0.75, 1]);
 * ```
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)));
  }
  return out;
}

/**
 * `numpy.linspace(start, stop, num)` in float64 (`i * step + start`, last value = stop).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { numpyLinspace } from "./numpy.ts";
 * assert.deepEqual(Array.from(numpyLinspace(0, 999, 4)), [0, 333, 666, 999]);
 * ```
 */
export function numpyLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

/**
 * `numpy.arange(start, stop, step)` in float64 (`start + i * delta`, numpy's fill rule).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { numpyArange } from "./numpy.ts";
 * assert.deepEqual(Array.from(numpyArange(10, 0, -2.5)), [10, 7.5, 5, 2.5]);
 * ```
 */
export function numpyArange(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(n);
  const delta = (start + step) - start;
  for (let i = 0; i < n; i++) out[i] = start + i * delta;
  return out;
}

/**
 * `numpy.round` (round half to even).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { roundHalfEven } from "./numpy.ts";
 * assert.deepEqual([0.5, 1.5, 2.5].map(roundHalfEven), [0, 2, 2]);
 * ```
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; numpy rounds ties to the even neighbour.
  if (Math.abs(x % 1) === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/**
 * `numpy.interp(x, xp, fp)` (xp ascending; clamps outside).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { interp } from "./numpy.ts";
 * assert.deepEqual(Array.from(interp([0.5, 3], [0, 1, 2], [10, 20, 30])), [15, 30]);
 * ```
 */
export function interp(
  x: ArrayLike<number>,
  xp: ArrayLike<number>,
  fp: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(x.length);
  const n = xp.length;
  for (let k = 0; k < x.length; k++) {
    const v = x[k]!;
    if (v <= xp[0]!) {
      out[k] = fp[0]!;
      continue;
    }
    if (v >= xp[n - 1]!) {
      out[k] = fp[n - 1]!;
      continue;
    }
    let lo = 0;
    let hi = n - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (xp[mid]! <= v) lo = mid;
      else hi = mid;
    }
    const slope = (fp[hi]! - fp[lo]!) / (xp[hi]! - xp[lo]!);
    out[k] = slope * (v - xp[lo]!) + fp[lo]!;
  }
  return out;
}

/**
 * torch.lerp(a, b, 0.5) on float32: `b - (b - a) * 0.5` (ATen's branch for weight >= 0.5).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lerpHalf32 } from "./numpy.ts";
 * assert.equal(lerpHalf32(1, 3), 2);
 * ```
 */
export function lerpHalf32(a: number, b: number): number {
  return f32(b - f32(f32(b - a) * 0.5));
}

/**
 * Largest value of an array (Diffusers `sigmas.max()`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { arrayMax } from "./numpy.ts";
 * assert.equal(arrayMax([1, 5, 3]), 5);
 * ```
 */
export function arrayMax(a: ArrayLike<number>): number {
  let m = -Infinity;
  for (let k = 0; k < a.length; k++) if (a[k]! > m) m = a[k]!;
  return m;
}

/**
 * Evaluates `c[0]*a[0] + c[1]*a[1] + ...` element-wise, left to right, rounding each product and
 * each partial sum to float32 like a chain of torch tensor operations. A subtraction `- c*a` is
 * written as the term `(-c, a)`; IEEE negation makes both identical.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { combine } from "./numpy.ts";
 * const out = combine([2, -1], [new Float32Array([1, 2]), new Float32Array([0.5, 1])]);
 * assert.deepEqual(Array.from(out), [1.5, 3]);
 * ```
 */
export function combine(coefs: readonly number[], arrays: readonly Float32Array[]): Float32Array {
  const n = arrays[0]!.length;
  const out = new Float32Array(n);
  const c0 = f32(coefs[0]!);
  const a0 = arrays[0]!;
  for (let j = 0; j < n; j++) out[j] = c0 * a0[j]!;
  for (let k = 1; k < arrays.length; k++) {
    const c = f32(coefs[k]!);
    const a = arrays[k]!;
    // out[j] is float32; f32(c * a[j]) is the rounded product; the Float32Array store rounds the sum
    for (let j = 0; j < n; j++) out[j] = out[j]! + f32(c * a[j]!);
  }
  return out;
}
