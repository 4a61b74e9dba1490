/**
 * OpenCV's `cv2.resize(img, (w, h), interpolation=cv2.INTER_LANCZOS4)` for 8-bit images: how
 * controlnet_aux's `resize_image` enlarges an image to its detect resolution.
 *
 * Source: OpenCV 4.x `modules/imgproc/src/resize.cpp` (`interpolateLanczos4`: an 8-tap windowed
 * sinc from a double sine/cosine recurrence, stored as float and normalised to sum 1; fixed point
 * with 11-bit weights; `HResizeLanczos4` with source columns replicated at the borders;
 * `VResizeLanczos4` with source rows clamped and `(Σ S·β + 2^21) >> 22`, saturated).
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import { roundHalfEven } from "./codec.ts";
import { checkPixels } from "./gray.ts";

const COEF_SCALE = 2048;
const S45 = 0.70710678118654752440084436210485;
const CS: ReadonlyArray<readonly [number, number]> = [
  [1, 0],
  [-S45, -S45],
  [0, 1],
  [S45, -S45],
  [-1, 0],
  [S45, S45],
  [0, -1],
  [-S45, S45],
];

/** OpenCV's interpolateLanczos4(x): 8 float32 weights summing to 1. */
function lanczos4Weights(x: number): Float32Array {
  const f = Math.fround;
  const coeffs = new Float32Array(8);
  const y0 = -(x + 3) * Math.PI * 0.25;
  const s0 = Math.sin(y0);
  const c0 = Math.cos(y0);
  let sum = 0;
  for (let i = 0; i < 8; i++) {
    const y0i = f(x + 3 - i);
    if (Math.abs(y0i) >= f(1e-6)) {
      const y = -y0i * Math.PI * 0.25;
      coeffs[i] = f((CS[i]![0] * s0 + CS[i]![1] * c0) / (y * y));
    } else {
      coeffs[i] = f(1e30);
    }
    sum = f(sum + coeffs[i]!);
  }
  sum = f(1 / sum);
  for (let i = 0; i < 8; i++) coeffs[i] = f(coeffs[i]! * sum);
  return coeffs;
}

interface Taps {
  offsets: Int32Array;
  weights: Int16Array;
}

function taps(src: number, dst: number): Taps {
  const scale = 1 / (dst / src);
  const offsets = new Int32Array(dst);
  const weights = new Int16Array(dst * 8);
  for (let d = 0; d < dst; d++) {
    let fx = Math.fround((d + 0.5) * scale - 0.5);
    const sx = Math.floor(fx);
    fx = Math.fround(fx - sx);
    offsets[d] = sx;
    const w = lanczos4Weights(fx);
    for (let k = 0; k < 8; k++) {
      const v = roundHalfEven(Math.fround(w[k]! * COEF_SCALE));
      weights[d * 8 + k] = Math.max(-32768, Math.min(32767, v));
    }
  }
  return { offsets, weights };
}

/**
 * Resizes an 8-bit image (any channel count) with OpenCV's INTER_LANCZOS4 (see the module doc).
 * Returns a copy when the size does not change.
 *
 * @example
 * ```ts
 * import { resizeLanczos4 } from "./resize_lanczos4.ts";
 * const image = { width: 2, height: 2, channels: 1 as const, data: Uint8Array.of(50, 50, 50, 50) };
 * console.assert(resizeLanczos4(image, 5, 3).data.every((v) => v === 50));
 * ```
 */
export function resizeLanczos4(image: RawImage, width: number, height: number): RawImage {
  checkPixels(image, "resizeLanczos4");
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(
      `resizeLanczos4: the target size ${width}x${height} is invalid: use positive integers`,
    );
  }
  const { width: sw, height: sh, channels: cn, data } = image;
  if (width === sw && height === sh) return { ...image, data: data.slice(0, sw * sh * cn) };
  const xs = taps(sw, width);
  const ys = taps(sh, height);
  const rowLength = width * cn;
  const horizontal = (sy: number): Int32Array => {
    const out = new Int32Array(rowLength);
    const row = sy * sw * cn;
    for (let d = 0; d < width; d++) {
      const sx = xs.offsets[d]!;
      for (let c = 0; c < cn; c++) {
        let v = 0;
        for (let k = 0; k < 8; k++) {
          // Border columns are replicated.
          const x = Math.min(Math.max(sx - 3 + k, 0), sw - 1);
          v += data[row + x * cn + c]! * xs.weights[d * 8 + k]!;
        }
        out[d * cn + c] = v;
      }
    }
    return out;
  };
  const cache = new Map<number, Int32Array>();
  const rowOf = (sy: number): Int32Array => {
    let r = cache.get(sy);
    if (r === undefined) {
      r = horizontal(sy);
      cache.set(sy, r);
      if (cache.size > 16) cache.delete(cache.keys().next().value!);
    }
    return r;
  };
  const out = new Uint8Array(rowLength * height);
  for (let d = 0; d < height; d++) {
    const sy = ys.offsets[d]!;
    const rows = Array.from(
      { length: 8 },
      (_, k) => rowOf(Math.min(Math.max(sy - 3 + k, 0), sh - 1)),
    );
    const base = d * rowLength;
    for (let x = 0; x < rowLength; x++) {
      let v = 0;
      for (let k = 0; k < 8; k++) v += rows[k]![x]! * ys.weights[d * 8 + k]!;
      const r = Math.floor((v + (1 << 21)) / (1 << 22));
      out[base + x] = r < 0 ? 0 : r > 255 ? 255 : r;
    }
  }
  return { width, height, channels: cn, data: out };
}
