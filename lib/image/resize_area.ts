/**
 * OpenCV's `cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)` for shrinking 8-bit images, the
 * resampling the A1111 ControlNet extension's `tile_resample` uses.
 *
 * Source: OpenCV 4.6 `modules/imgproc/src/resize.cpp`: `scale = 1 / (dst / src)` per axis; when
 * both scales are integers, `resizeAreaFast_` (2x2 blocks as `(a + b + c + d + 2) >> 2`, other
 * blocks as `round_half_even(float(sum) * float(1 / area))`); otherwise `ResizeArea_Invoker` with
 * the float32 coverage weights of `computeResizeAreaTab`, summed in float32 row by row.
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import { checkPixels } from "./gray.ts";

/**
 * Shrinks an 8-bit image (any channel count) to `width` x `height` by area averaging, as
 * `cv2.resize(..., interpolation=cv2.INTER_AREA)`. Both sizes must be at most the input's
 * (OpenCV's INTER_AREA is bilinear when enlarging; use codec's resizeImage for that).
 *
 * @example
 * ```ts
 * import { resizeArea } from "./resize_area.ts";
 * const image = { width: 2, height: 2, channels: 1 as const, data: Uint8Array.of(0, 1, 2, 4) };
 * console.assert(resizeArea(image, 1, 1).data[0] === 2); // (0 + 1 + 2 + 4 + 2) >> 2
 * ```
 */
export function resizeArea(image: RawImage, width: number, height: number): RawImage {
  checkPixels(image, "resizeArea");
  const { width: sw, height: sh, channels: cn, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(
      `resizeArea: the target size ${width}x${height} is invalid: use positive integers`,
    );
  }
  if (width > sw || height > sh) {
    throw new RangeError(
      `resizeArea: cannot enlarge ${sw}x${sh} to ${width}x${height}: area resampling only shrinks`,
    );
  }
  if (width === sw && height === sh) return { ...image, data: data.slice(0, sw * sh * cn) };
  // cv::resize computes the inverse scale first, then its reciprocal.
  const scaleX = 1 / (width / sw);
  const scaleY = 1 / (height / sh);
  const iScaleX = Math.round(scaleX);
  const iScaleY = Math.round(scaleY);
  const out = new Uint8Array(width * height * cn);
  if (Math.abs(scaleX - iScaleX) < Number.EPSILON && Math.abs(scaleY - iScaleY) < Number.EPSILON) {
    areaFast(data, sw, cn, out, width, height, iScaleX, iScaleY);
  } else {
    areaGeneral(data, sw, sh, cn, out, width, height, scaleX, scaleY);
  }
  return { width, height, channels: cn, data: out };
}

function areaFast(
  src: Uint8Array,
  sw: number,
  cn: number,
  out: Uint8Array,
  dw: number,
  dh: number,
  sx: number,
  sy: number,
): void {
  const stride = sw * cn;
  const area = sx * sy;
  const scale = Math.fround(1 / area);
  const twoByTwo = sx === 2 && sy === 2 && cn !== 2;
  for (let dy = 0; dy < dh; dy++) {
    const row = dy * sy * stride;
    for (let dx = 0; dx < dw; dx++) {
      for (let c = 0; c < cn; c++) {
        let sum = 0;
        for (let y = 0; y < sy; y++) {
          const p = row + y * stride + dx * sx * cn + c;
          for (let x = 0; x < sx; x++) sum += src[p + x * cn]!;
        }
        out[(dy * dw + dx) * cn + c] = twoByTwo
          ? (sum + 2) >> 2
          : saturateRound(Math.fround(sum * scale));
      }
    }
  }
}

interface AreaTab {
  di: Int32Array;
  si: Int32Array;
  alpha: Float32Array;
  length: number;
}

/** computeResizeAreaTab: which source cells cover each destination cell, and how much. */
function areaTab(ssize: number, dsize: number, cn: number, scale: number): AreaTab {
  const di = new Int32Array(ssize * 2 + 2);
  const si = new Int32Array(ssize * 2 + 2);
  const alpha = new Float32Array(ssize * 2 + 2);
  let k = 0;
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale;
    const fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1);
    let sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) {
      di[k] = dx * cn;
      si[k] = (sx1 - 1) * cn;
      alpha[k++] = (sx1 - fsx1) / cellWidth;
    }
    for (let sx = sx1; sx < sx2; sx++) {
      di[k] = dx * cn;
      si[k] = sx * cn;
      alpha[k++] = 1 / cellWidth;
    }
    if (fsx2 - sx2 > 1e-3) {
      di[k] = dx * cn;
      si[k] = sx2 * cn;
      alpha[k++] = Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth;
    }
  }
  return { di, si, alpha, length: k };
}

function areaGeneral(
  src: Uint8Array,
  sw: number,
  sh: number,
  cn: number,
  out: Uint8Array,
  dw: number,
  dh: number,
  scaleX: number,
  scaleY: number,
): void {
  const xtab = areaTab(sw, dw, cn, scaleX);
  const ytab = areaTab(sh, dh, 1, scaleY);
  const rowWidth = dw * cn;
  const buf = new Float32Array(rowWidth);
  const sum = new Float32Array(rowWidth);
  const flush = (dy: number) => {
    for (let i = 0; i < rowWidth; i++) out[dy * rowWidth + i] = saturateRound(sum[i]!);
  };
  let prevDy = ytab.di[0]!;
  for (let j = 0; j < ytab.length; j++) {
    const beta = ytab.alpha[j]!;
    const dy = ytab.di[j]!;
    const srcRow = ytab.si[j]! * sw * cn;
    buf.fill(0);
    for (let k = 0; k < xtab.length; k++) {
      const d = xtab.di[k]!;
      const s = srcRow + xtab.si[k]!;
      const a = xtab.alpha[k]!;
      // Float32Array stores round each step to float32, as OpenCV's float accumulators.
      for (let c = 0; c < cn; c++) buf[d + c] = buf[d + c]! + Math.fround(src[s + c]! * a);
    }
    if (dy !== prevDy) {
      flush(prevDy);
      for (let i = 0; i < rowWidth; i++) sum[i] = beta * buf[i]!;
      prevDy = dy;
    } else {
      for (let i = 0; i < rowWidth; i++) sum[i] = sum[i]! + Math.fround(beta * buf[i]!);
    }
  }
  flush(prevDy);
}

/** saturate_cast<uchar>(float): round half to even, clamp to [0, 255]. */
function saturateRound(v: number): number {
  let r = Math.round(v);
  if (r - v === 0.5 && r % 2 !== 0) r -= 1;
  return r < 0 ? 0 : r > 255 ? 255 : r;
}
