/**
 * OpenCV's `cv2.GaussianBlur(x, (0, 0), sigma)` on float32 images, the blur the A1111 ControlNet
 * extension's and controlnet_aux's model-free preprocessors (XDoG scribble, standard line art)
 * call on `img.astype(np.float32)`.
 *
 * Source: OpenCV 4.6 `modules/imgproc/src/smooth.dispatch.cpp` (`createGaussianKernels`: the
 * size is `round(8 sigma + 1) | 1` for non-8-bit images; `getGaussianKernelBitExact`: weights
 * exp(-x² / 2σ²) normalised to sum 1, stored as float32) and `filter.dispatch.cpp`
 * (`sepFilter2D`: a row pass then a column pass, float32 in between) with the default border,
 * `BORDER_REFLECT_101` (`gfedcb|abcdefgh|gfedcba`).
 *
 * OpenCV sums in float32 in an order (and with fused multiply-adds) that depends on the CPU; this
 * sums in float64 and rounds each pass to float32, so results agree to about 1e-5 relative.
 *
 * @module
 */

/**
 * The kernel size OpenCV picks for `ksize=(0, 0)` on a float image: `round(8 sigma + 1) | 1`
 * (round half to even, as `cvRound`).
 *
 * @example
 * ```ts
 * import { gaussianKernelSize } from "./gaussian_blur.ts";
 * console.assert(gaussianKernelSize(0.5) === 5 && gaussianKernelSize(5) === 41);
 * ```
 */
export function gaussianKernelSize(sigma: number): number {
  const x = sigma * 8 + 1;
  let r = Math.round(x);
  if (r - x === 0.5 && r % 2 !== 0) r -= 1; // ties to even, like lrint
  return r | 1;
}

/**
 * The 1-D Gaussian kernel of `cv::getGaussianKernel(size, sigma, CV_32F)`: weights
 * exp(-x² / 2σ²) for x = i - (size - 1) / 2, normalised to sum 1, rounded to float32.
 *
 * @example
 * ```ts
 * import { gaussianKernel } from "./gaussian_blur.ts";
 * const k = gaussianKernel(0.5, 5);
 * console.assert(k.length === 5 && Math.abs(k[2]! - 0.7870) < 1e-4);
 * ```
 */
export function gaussianKernel(
  sigma: number,
  size: number = gaussianKernelSize(sigma),
): Float32Array {
  if (!(sigma > 0) || !Number.isFinite(sigma)) {
    throw new RangeError(`Gaussian sigma ${sigma} is invalid: use a positive finite number`);
  }
  if (!Number.isInteger(size) || size < 1 || size % 2 === 0) {
    throw new RangeError(`Gaussian kernel size ${size} is invalid: use an odd positive integer`);
  }
  // getGaussianKernelBitExact works with x2 = 2x (integers) and scale -1 / (8 sigma²).
  const half = (size - 1) / 2;
  const scale2X = -0.125 / (sigma * sigma);
  const values = new Float64Array(half);
  let sum = 0;
  for (let i = 0, x = 1 - size; i < half; i++, x += 2) {
    values[i] = Math.exp(x * x * scale2X);
    sum += values[i]!;
  }
  sum = sum * 2 + 1;
  const mul = 1 / sum;
  const out = new Float32Array(size);
  for (let i = 0; i < half; i++) {
    out[i] = values[i]! * mul;
    out[size - 1 - i] = out[i]!;
  }
  out[half] = mul;
  return out;
}

/**
 * OpenCV's `borderInterpolate(p, len, BORDER_REFLECT_101)`: the index that stands for `p` outside
 * [0, len).
 *
 * @example
 * ```ts
 * import { reflect101 } from "./gaussian_blur.ts";
 * console.assert(reflect101(-1, 5) === 1 && reflect101(5, 5) === 3);
 * ```
 */
export function reflect101(p: number, len: number): number {
  if (p >= 0 && p < len) return p;
  if (len === 1) return 0;
  do {
    p = p < 0 ? -p : 2 * len - 2 - p;
  } while (p < 0 || p >= len);
  return p;
}

/**
 * Gaussian blur of an interleaved float image (HWC), as `cv2.GaussianBlur(x, (0, 0), sigma)`
 * on a float32 array: same kernel, same border (reflect-101), separable row then column passes
 * rounded to float32. Returns a new Float32Array of the same layout.
 *
 * @example
 * ```ts
 * import { gaussianBlur } from "./gaussian_blur.ts";
 * // An impulse spreads into the kernel; the total is kept.
 * const x = new Float32Array(25);
 * x[12] = 1;
 * const y = gaussianBlur(x, 5, 5, 1, 0.5);
 * console.assert(Math.abs(y.reduce((a, b) => a + b, 0) - 1) < 1e-6);
 * ```
 */
export function gaussianBlur(
  data: Float32Array,
  width: number,
  height: number,
  channels: number,
  sigma: number,
): Float32Array {
  if (data.length < width * height * channels) {
    throw new TypeError(
      `gaussianBlur: expected ${
        width * height * channels
      } values for ${width}x${height}x${channels}, got ${data.length}`,
    );
  }
  const kernel = gaussianKernel(sigma);
  const size = kernel.length;
  const half = (size - 1) / 2;
  const k = Float64Array.from(kernel);
  const plane = width * height;
  const out = new Float32Array(plane * channels);
  // Reflect-101 source index of every padded column and of every row offset.
  const xIndex = new Int32Array(width + size - 1);
  for (let i = 0; i < xIndex.length; i++) xIndex[i] = reflect101(i - half, width);
  const padded = new Float64Array(width + size - 1);
  const rows = new Float32Array(plane); // float32 between the passes, as OpenCV's buffer
  const acc = new Float64Array(width);
  for (let c = 0; c < channels; c++) {
    // Row pass. The kernel is symmetric: pair taps t and size - 1 - t.
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let i = 0; i < padded.length; i++) padded[i] = data[(row + xIndex[i]!) * channels + c]!;
      for (let x = 0; x < width; x++) {
        let sum = k[half]! * padded[x + half]!;
        for (let t = 0; t < half; t++) sum += k[t]! * (padded[x + t]! + padded[x + size - 1 - t]!);
        rows[row + x] = sum;
      }
    }
    // Column pass over whole rows at once (cache friendly), taps paired likewise.
    for (let y = 0; y < height; y++) {
      const centre = y * width;
      const kc = k[half]!;
      for (let x = 0; x < width; x++) acc[x] = kc * rows[centre + x]!;
      for (let t = 0; t < half; t++) {
        const above = reflect101(y + t - half, height) * width;
        const below = reflect101(y + half - t, height) * width;
        const w = k[t]!;
        for (let x = 0; x < width; x++) {
          acc[x] = acc[x]! + w * (rows[above + x]! + rows[below + x]!);
        }
      }
      for (let x = 0; x < width; x++) out[(centre + x) * channels + c] = acc[x]!;
    }
  }
  return out;
}
