/**
 * OpenCV's `cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)` for 8-bit images: the
 * letterbox resize of DWPose's person detector and controlnet_aux's final resize of a detected
 * map.
 *
 * Source: OpenCV 4.x `modules/imgproc/src/resize.cpp` (`cv::hal::resize`, `resizeGeneric_`,
 * `HResizeLinear`, `VResizeLinear`, `VResizeLinearVec_32s8u`):
 * - `scale = 1 / (dst / src)`; an exact 2x shrink of both axes runs INTER_AREA instead;
 * - per output column `fx = float((dx + 0.5) * scale - 0.5)`, `sx = floor(fx)`, `fx -= sx`,
 *   clamped at the borders (fx = 0), weights `round(2048 (1 - fx))`, `round(2048 fx)` (11 bits);
 *   the same for rows, whose indices are clamped instead;
 * - the horizontal pass sums in integers (scaled by 2048); the vertical pass is OpenCV's SIMD
 *   formula `((S0 >> 4) · b0 >> 16) + ((S1 >> 4) · b1 >> 16) + 2 >> 2` (16-bit high
 *   multiplies), which opencv-python 4.14 applies to every value of a row, the last ones
 *   included (checked against it in resize_linear_test.ts; the scalar formula
 *   `(S0 · b0 + S1 · b1 + 2^21) >> 22` of older builds differs by one level now and then).
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import { roundHalfEven } from "./codec.ts";
import { checkPixels } from "./gray.ts";
import { resizeArea } from "./resize_area.ts";

const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS;

interface AxisTable {
  /** Source index of the first tap, per output position. */
  offsets: Int32Array;
  /** Two 11-bit weights per output position. */
  weights: Int16Array;
}

function axisTable(src: number, dst: number, clampWeights: boolean, area: boolean): AxisTable {
  const inverse = dst / src;
  const scale = 1 / inverse;
  const offsets = new Int32Array(dst);
  const weights = new Int16Array(dst * 2);
  for (let d = 0; d < dst; d++) {
    let s: number;
    let f: number;
    if (area) {
      // INTER_AREA when enlarging: bilinear with the pixel's covered fraction.
      s = Math.floor(d * scale);
      f = Math.fround((d + 1) - (s + 1) * inverse);
      f = f <= 0 ? 0 : Math.fround(f - Math.floor(f));
    } else {
      f = Math.fround((d + 0.5) * scale - 0.5);
      s = Math.floor(f);
      f = Math.fround(f - s);
    }
    if (clampWeights) {
      if (s < 0) {
        f = 0;
        s = 0;
      }
      if (s >= src - 1) {
        f = 0;
        s = src - 1;
      }
    }
    offsets[d] = s;
    weights[d * 2] = roundHalfEven(Math.fround(Math.fround(1 - f) * COEF_SCALE));
    weights[d * 2 + 1] = roundHalfEven(Math.fround(f * COEF_SCALE));
  }
  return { offsets, weights };
}

/** `x >> k` for a possibly negative integer. */
function shr(x: number, k: number): number {
  return Math.floor(x / 2 ** k);
}

/** Saturating int16 pack, as `v_pack` of int32 lanes. */
function sat16(x: number): number {
  return x < -32768 ? -32768 : x > 32767 ? 32767 : x;
}

function sat8(x: number): number {
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

/**
 * Resizes an 8-bit image (any channel count) to `width` x `height` with OpenCV's INTER_LINEAR
 * (see the module doc). Returns a copy when the size does not change.
 *
 * @example
 * ```ts
 * import { resizeLinear } from "./resize_linear.ts";
 * const image = { width: 2, height: 1, channels: 1 as const, data: Uint8Array.of(0, 100) };
 * console.assert(resizeLinear(image, 4, 1).data.join() === "0,25,75,100");
 * ```
 */
export function resizeLinear(image: RawImage, width: number, height: number): RawImage {
  return resizeGeneric(image, width, height, false);
}

/**
 * `cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)` for any sizes: area averaging when
 * both sides shrink (lib/image/resize_area.ts), else OpenCV's bilinear with INTER_AREA's
 * coefficients (`sx = floor(dx · scale)`, `fx = dx + 1 - (sx + 1) / scale`, wrapped to [0, 1)).
 *
 * @example
 * ```ts
 * import { resizeAreaAny } from "./resize_linear.ts";
 * const image = { width: 2, height: 1, channels: 1 as const, data: Uint8Array.of(0, 100) };
 * console.assert(resizeAreaAny(image, 4, 1).data.join() === "0,0,100,100");
 * ```
 */
export function resizeAreaAny(image: RawImage, width: number, height: number): RawImage {
  checkPixels(image, "resizeAreaAny");
  if (width <= image.width && height <= image.height) return resizeArea(image, width, height);
  return resizeGeneric(image, width, height, true);
}

function resizeGeneric(image: RawImage, width: number, height: number, area: boolean): RawImage {
  checkPixels(image, "resizeLinear");
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(
      `resizeLinear: the target size ${width}x${height} is invalid: use positive integers`,
    );
  }
  const { width: sw, height: sh, channels: cn, data } = image;
  if (width === sw && height === sh) return { ...image, data: data.slice(0, sw * sh * cn) };
  const scaleX = 1 / (width / sw);
  const scaleY = 1 / (height / sh);
  if (!area && scaleX === 2 && scaleY === 2) return resizeArea(image, width, height);

  const xs = axisTable(sw, width, true, area);
  const ys = axisTable(sh, height, false, area);
  // Columns from xmax on read one source pixel at full weight (HResizeLinear's tail).
  let xmax = width;
  for (let d = 0; d < width; d++) {
    const s = area ? Math.floor(d * scaleX) : Math.floor(Math.fround((d + 0.5) * scaleX - 0.5));
    if (s + 1 >= sw) {
      xmax = d;
      break;
    }
  }
  const rowLength = width * cn;
  const horizontal = (sy: number): Int32Array => {
    const out = new Int32Array(rowLength);
    const row = sy * sw * cn;
    for (let d = 0; d < width; d++) {
      const sx = xs.offsets[d]!;
      for (let c = 0; c < cn; c++) {
        const s0 = data[row + sx * cn + c]!;
        out[d * cn + c] = d < xmax
          ? s0 * xs.weights[d * 2]! + data[row + (sx + 1) * cn + c]! * xs.weights[d * 2 + 1]!
          : s0 * COEF_SCALE;
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
      if (cache.size > 4) cache.delete(cache.keys().next().value!);
    }
    return r;
  };
  const out = new Uint8Array(rowLength * height);
  for (let d = 0; d < height; d++) {
    const sy = ys.offsets[d]!;
    const s0 = rowOf(Math.min(Math.max(sy, 0), sh - 1));
    const s1 = rowOf(Math.min(Math.max(sy + 1, 0), sh - 1));
    const b0 = ys.weights[d * 2]!;
    const b1 = ys.weights[d * 2 + 1]!;
    const base = d * rowLength;
    const vertical = (x: number) =>
      sat8(
        shr(
          sat16(shr(sat16(shr(s0[x]!, 4)) * b0, 16) + shr(sat16(shr(s1[x]!, 4)) * b1, 16)) + 2,
          2,
        ),
      );
    for (let x = 0; x < rowLength; x++) out[base + x] = vertical(x);
  }
  return { width, height, channels: cn, data: out };
}
