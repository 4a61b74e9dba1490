/**
 * OpenCV's `cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)` on a one-channel float64 array,
 * what controlnet_aux's `make_noise_disk` does to its random grid (the content-shuffle noise).
 *
 * Source: OpenCV 4.6 `modules/imgproc/src/resize.cpp`: `scale = 1 / (dst / src)`; per output
 * coordinate `f = float((d + 0.5) * scale - 0.5)`, `s = floor(f)`, `f -= s` in float32;
 * `interpolateCubic` (Keys' kernel with A = -0.75, float32 weights, the fourth as 1 minus the
 * others); `HResizeCubic` then `VResizeCubic` in float64 with source indices clamped to the edge
 * (`BORDER_REPLICATE`).
 *
 * @module
 */

/** An output window, in destination pixels, for {@linkcode resizeCubicPlane}. */
export interface ResizeWindow {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * `interpolateCubic(x)` of resize.cpp, in float32 arithmetic: the weights of the four taps at
 * offsets -1, 0, 1, 2 for a sample at fraction `x` in [0, 1).
 *
 * @example
 * ```ts
 * import { cubicWeights } from "./resize_cubic.ts";
 * console.assert(cubicWeights(0.5).join() === "-0.09375,0.59375,0.59375,-0.09375");
 * ```
 */
export function cubicWeights(x: number): [number, number, number, number] {
  const f = Math.fround;
  const A = -0.75;
  const x1 = f(x + 1);
  const c0 = f(f(f(f(f(f(A * x1) - f(5 * A)) * x1) + f(8 * A)) * x1) - f(4 * A));
  const c1 = f(f(f(f(f(f(A + 2) * x) - f(A + 3)) * x) * x) + 1);
  const y = f(1 - x);
  const c2 = f(f(f(f(f(f(A + 2) * y) - f(A + 3)) * y) * y) + 1);
  const c3 = f(f(f(1 - c0) - c1) - c2);
  return [c0, c1, c2, c3];
}

/** Source index and float32 fraction for each destination coordinate along one axis. */
function axisTable(
  srcSize: number,
  dstSize: number,
  from: number,
  count: number,
): { index: Int32Array; weights: Float64Array } {
  const scale = 1 / (dstSize / srcSize);
  const index = new Int32Array(count);
  const weights = new Float64Array(count * 4);
  for (let i = 0; i < count; i++) {
    const d = from + i;
    let fx = Math.fround((d + 0.5) * scale - 0.5);
    const sx = Math.floor(fx);
    fx = Math.fround(fx - sx);
    index[i] = sx;
    weights.set(cubicWeights(fx), i * 4);
  }
  return { index, weights };
}

/**
 * Bicubic resize of a row-major float64 plane from `srcWidth` x `srcHeight` to
 * `dstWidth` x `dstHeight`, as `cv2.resize(x, (dstWidth, dstHeight), interpolation=INTER_CUBIC)`.
 * With `window`, only that part of the output is computed (and returned, `window.width` x
 * `window.height`), equal to cropping the full result.
 *
 * @example
 * ```ts
 * import { resizeCubicPlane } from "./resize_cubic.ts";
 * // A constant stays constant: the weights sum to 1.
 * const out = resizeCubicPlane(Float64Array.of(2, 2, 2, 2), 2, 2, 5, 3);
 * console.assert(out.length === 15 && out.every((v) => Math.abs(v - 2) < 1e-6));
 * ```
 */
export function resizeCubicPlane(
  src: Float64Array,
  srcWidth: number,
  srcHeight: number,
  dstWidth: number,
  dstHeight: number,
  window: ResizeWindow = { x: 0, y: 0, width: dstWidth, height: dstHeight },
): Float64Array {
  for (
    const [name, v] of [["srcWidth", srcWidth], ["srcHeight", srcHeight], [
      "dstWidth",
      dstWidth,
    ], ["dstHeight", dstHeight]] as const
  ) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`resizeCubicPlane: ${name} ${v} is invalid: use a positive integer`);
    }
  }
  if (src.length < srcWidth * srcHeight) {
    throw new TypeError(
      `resizeCubicPlane: expected ${srcWidth * srcHeight} values, got ${src.length}`,
    );
  }
  const { x, y, width, height } = window;
  if (x < 0 || y < 0 || x + width > dstWidth || y + height > dstHeight || width < 1 || height < 1) {
    throw new RangeError(
      `resizeCubicPlane: the window ${width}x${height}+${x}+${y} is not inside ${dstWidth}x${dstHeight}`,
    );
  }
  const xs = axisTable(srcWidth, dstWidth, x, width);
  const ys = axisTable(srcHeight, dstHeight, y, height);
  const clampX = (i: number) => (i < 0 ? 0 : i >= srcWidth ? srcWidth - 1 : i);

  // Horizontal pass over every source row (HResizeCubic), in float64, summed left to right.
  const rows = new Float64Array(srcHeight * width);
  for (let r = 0; r < srcHeight; r++) {
    const row = r * srcWidth;
    for (let i = 0; i < width; i++) {
      const s = xs.index[i]!;
      const w = i * 4;
      rows[r * width + i] = src[row + clampX(s - 1)]! * xs.weights[w]! +
        src[row + clampX(s)]! * xs.weights[w + 1]! +
        src[row + clampX(s + 1)]! * xs.weights[w + 2]! +
        src[row + clampX(s + 2)]! * xs.weights[w + 3]!;
    }
  }

  // Vertical pass (VResizeCubic): b0 S0 + b1 S1 + b2 S2 + b3 S3, rows clamped to the edge.
  const out = new Float64Array(width * height);
  const clampY = (i: number) => (i < 0 ? 0 : i >= srcHeight ? srcHeight - 1 : i);
  for (let j = 0; j < height; j++) {
    const s = ys.index[j]!;
    const r0 = clampY(s - 1) * width;
    const r1 = clampY(s) * width;
    const r2 = clampY(s + 1) * width;
    const r3 = clampY(s + 2) * width;
    const b0 = ys.weights[j * 4]!;
    const b1 = ys.weights[j * 4 + 1]!;
    const b2 = ys.weights[j * 4 + 2]!;
    const b3 = ys.weights[j * 4 + 3]!;
    for (let i = 0; i < width; i++) {
      out[j * width + i] = b0 * rows[r0 + i]! + b1 * rows[r1 + i]! + b2 * rows[r2 + i]! +
        b3 * rows[r3 + i]!;
    }
  }
  return out;
}
