/**
 * OpenCV's `cv2.GaussianBlur(img, (0, 0), sigma)` on 8-bit images, which OpenCV computes bit-exactly
 * in fixed point: the blur in the annotators' fake-scribble step (controlnet_aux and the A1111
 * extension blur the NMS'd edge map with sigma 3, then keep pixels above 4).
 *
 * Source: OpenCV 4.x `modules/imgproc/src/smooth.dispatch.cpp` (`GaussianBlur`: 8-bit sources take
 * `GaussianBlurFixedPoint` with `ufixedpoint16` kernels; `createGaussianKernels`: size
 * `cvRound(sigma * 3 * 2 + 1) | 1` for 8-bit images; `getGaussianKernelBitExact`:
 * `exp(-x² / 8σ²)` for even `x = 2i - (n - 1)`, normalised by their float64 sum;
 * `getGaussianKernelFixedPoint_ED`: each weight times 256 rounded with error diffusion from the
 * outside in, the centre `256 - sum of the others`) and `smooth.simd.hpp` (row pass: 8-bit pixels
 * times the 8.8 fixed-point weights, summed exactly; column pass: those sums times the weights,
 * summed exactly in 16.16; result `(sum + 2^15) >> 16`, saturated). The border is reflect-101.
 *
 * @module
 */
import { reflect101 } from "./gaussian_blur.ts";

/**
 * The 8-bit fixed-point Gaussian kernel OpenCV uses for `sigma` (weights in 1/256, summing to
 * 256), with its size rule for 8-bit images.
 *
 * @example
 * ```ts
 * import { gaussianKernelU8 } from "./gaussian_blur_u8.ts";
 * const k = gaussianKernelU8(3);
 * console.assert(k.length === 19 && k.reduce((a, b) => a + b, 0) === 256);
 * ```
 */
export function gaussianKernelU8(sigma: number): Int32Array {
  if (!(sigma > 0) || !Number.isFinite(sigma)) {
    throw new RangeError(`Gaussian sigma ${sigma} is invalid: use a positive finite number`);
  }
  const x = sigma * 3 * 2 + 1;
  let size = Math.round(x);
  if (size - x === 0.5 && size % 2 !== 0) size -= 1; // cvRound: ties to even
  size |= 1;
  const half = (size - 1) / 2;
  const scale2X = -0.125 / (sigma * sigma);
  const values = new Float64Array(half);
  let sum = 0;
  for (let i = 0, x2 = 1 - size; i < half; i++, x2 += 2) {
    values[i] = Math.exp(x2 * x2 * scale2X);
    sum += values[i]!;
  }
  const mul = 1 / (sum * 2 + 1);
  const out = new Int32Array(size);
  let err = 0;
  let total = 0;
  for (let i = 0; i < half; i++) {
    const v = values[i]! * mul * 256 + err;
    let r = Math.round(v);
    if (r - v === 0.5 && r % 2 !== 0) r -= 1; // cvRound
    err = v - r;
    out[i] = r;
    out[size - 1 - i] = r;
    total += r;
  }
  out[half] = 256 - 2 * total;
  return out;
}

/**
 * Blurs an interleaved 8-bit image (`channels` values per pixel) as `cv2.GaussianBlur(img, (0, 0),
 * sigma)` does, bit for bit (see the module doc). Returns a new array.
 *
 * @example
 * ```ts
 * import { gaussianBlurU8 } from "./gaussian_blur_u8.ts";
 * const flat = gaussianBlurU8(new Uint8Array(25).fill(200), 5, 5, 1, 1);
 * console.assert(flat.every((v) => v === 200));
 * ```
 */
export function gaussianBlurU8(
  data: Uint8Array,
  width: number,
  height: number,
  channels: number,
  sigma: number,
): Uint8Array {
  if (data.length < width * height * channels) {
    throw new TypeError(
      `gaussianBlurU8: expected ${
        width * height * channels
      } values for ${width}x${height}x${channels}, got ${data.length}`,
    );
  }
  const k = gaussianKernelU8(sigma);
  // A side of one pixel is not blurred along that axis (OpenCV sets that kernel size to 1).
  const kx = width === 1 ? Int32Array.of(256) : k;
  const ky = height === 1 ? Int32Array.of(256) : k;
  const hx = (kx.length - 1) / 2;
  const hy = (ky.length - 1) / 2;
  const rows = new Int32Array(width * height * channels); // 8.8 fixed point row sums
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let t = 0; t < kx.length; t++) {
          s += kx[t]! * data[(y * width + reflect101(x + t - hx, width)) * channels + c]!;
        }
        rows[(y * width + x) * channels + c] = s;
      }
    }
  }
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let t = 0; t < ky.length; t++) {
          s += ky[t]! * rows[(reflect101(y + t - hy, height) * width + x) * channels + c]!;
        }
        out[(y * width + x) * channels + c] = Math.min(255, (s + 32768) >> 16);
      }
    }
  }
  return out;
}
