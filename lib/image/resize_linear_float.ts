/**
 * `cv2.resize(plane, (w, h), interpolation=cv2.INTER_LINEAR)` for one float32 plane, as
 * opencv-python computes it: how controlnet_aux's and the A1111 extension's HED detectors bring
 * each side output of the network to the image size before averaging them.
 *
 * opencv-python's x86-64 wheels hand float INTER_LINEAR resizes to Intel IPP (their build lists
 * "Custom HAL: YES (ipp)"), whose arithmetic is not OpenCV's own separable sum. Measured against
 * opencv-python 4.14 (0 differing values on every size tried, up and down, see the test), it is:
 *
 * - per output column `fx = (dx + 0.5) * src / dst - 0.5` in float64, `sx = floor(fx)`, the
 *   fraction `t = float32(fx - sx)`; at the borders `sx` is clamped to [0, src - 1] and `t` set
 *   to 0 (the same for rows);
 * - each pair of taps blended as `a + t * (b - a)`, `b - a` in float32 and one rounding after
 *   the multiply-add; rows first, then the two rows.
 *
 * OpenCV's own code (`resize.cpp`, `resizeGeneric_`: float32 `fx`, weights `1 - fx` and `fx`,
 * `a * w0 + b * w1`; an exact 2x shrink as INTER_AREA) agrees to a few float32 ulps.
 *
 * @module
 */

/**
 * Resizes a float32 plane (`width` x `height`, row-major) to `outWidth` x `outHeight` as
 * opencv-python's INTER_LINEAR does (see the module doc). Returns a copy at the same size.
 *
 * @example
 * ```ts
 * import { resizeLinearFloat } from "./resize_linear_float.ts";
 * const out = resizeLinearFloat(Float32Array.of(0, 1), 2, 1, 4, 1);
 * console.assert(out.join() === "0,0.25,0.75,1");
 * ```
 */
export function resizeLinearFloat(
  plane: Float32Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Float32Array {
  const sizes = { width, height, outWidth, outHeight };
  for (const [what, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`resizeLinearFloat: ${what} is ${v}: use a positive integer`);
    }
  }
  if (plane.length < width * height) {
    throw new TypeError(
      `resizeLinearFloat: expected ${
        width * height
      } values for ${width}x${height}, got ${plane.length}`,
    );
  }
  if (width === outWidth && height === outHeight) return plane.slice(0, width * height);
  const f = Math.fround;
  const xs = axisTaps(width, outWidth);
  const ys = axisTaps(height, outHeight);
  // a + t * (b - a): the difference in float32, the multiply-add rounded once (the product of two
  // float32 values is exact in float64).
  const blend = (a: number, b: number, t: number) => f(a + t * f(b - a));
  const horizontal = (sy: number): Float32Array => {
    const row = new Float32Array(outWidth);
    const base = sy * width;
    for (let d = 0; d < outWidth; d++) {
      const sx = xs.offsets[d]!;
      const a = plane[base + sx]!;
      row[d] = sx + 1 < width ? blend(a, plane[base + sx + 1]!, xs.fractions[d]!) : a;
    }
    return row;
  };
  const rows = new Map<number, Float32Array>();
  const rowOf = (sy: number): Float32Array => {
    let r = rows.get(sy);
    if (r === undefined) {
      r = horizontal(sy);
      rows.set(sy, r);
      if (rows.size > 4) rows.delete(rows.keys().next().value!);
    }
    return r;
  };
  const out = new Float32Array(outWidth * outHeight);
  for (let d = 0; d < outHeight; d++) {
    const sy = ys.offsets[d]!;
    const r0 = rowOf(sy);
    const r1 = rowOf(Math.min(sy + 1, height - 1));
    const t = ys.fractions[d]!;
    const base = d * outWidth;
    for (let x = 0; x < outWidth; x++) out[base + x] = blend(r0[x]!, r1[x]!, t);
  }
  return out;
}

/** First source tap and float32 fraction of each output position along one axis. */
function axisTaps(src: number, dst: number): { offsets: Int32Array; fractions: Float32Array } {
  const offsets = new Int32Array(dst);
  const fractions = new Float32Array(dst);
  for (let d = 0; d < dst; d++) {
    const x = ((d + 0.5) * src) / dst - 0.5;
    let s = Math.floor(x);
    let t = Math.fround(x - s);
    if (s < 0) {
      s = 0;
      t = 0;
    }
    if (s >= src - 1) {
      s = src - 1;
      t = 0;
    }
    offsets[d] = s;
    fractions[d] = t;
  }
  return { offsets, fractions };
}
