/**
 * OpenCV's `cv2.getAffineTransform` and `cv2.warpAffine(img, M, (w, h), flags=INTER_LINEAR)`
 * (constant border 0) for 8-bit images: the crop-and-scale that brings each detected person to
 * the pose model's 288x384 input in DWPose.
 *
 * Source: OpenCV 4.x `modules/imgproc/src/imgwarp.cpp`: `getAffineTransform` solves the 6x6
 * system of the three point pairs (float32 points) with `solve(..., DECOMP_LU)` (Gaussian
 * elimination with partial pivoting, `core/src/matrix_decomp.cpp` `LUImpl`); `warpAffine` inverts
 * the matrix in double, then for each output pixel computes the source position in 1/1024 pixel
 * (`X0 = round((M01·y + M02)·1024) + 16`, `X = (X0 + round(M00·x·1024)) >> 5`, in 1/32 pixel) and
 * samples it with remap's fixed-point bilinear table.
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import { roundHalfEven } from "./codec.ts";
import { remapBilinear } from "./remap.ts";

/** A 2x3 affine matrix, row-major: `[m00, m01, m02, m10, m11, m12]`. */
export type Affine = [number, number, number, number, number, number];

/**
 * `cv2.getAffineTransform(src, dst)`: the affine map taking three source points to three
 * destination points. Points are rounded to float32 first, as OpenCV takes `Point2f`.
 *
 * @example
 * ```ts
 * import { getAffineTransform } from "./warp_affine.ts";
 * const m = getAffineTransform([[0, 0], [1, 0], [0, 1]], [[1, 2], [3, 2], [1, 4]]);
 * console.assert(m.join() === "2,0,1,0,2,2");
 * ```
 */
export function getAffineTransform(
  src: ReadonlyArray<readonly [number, number]>,
  dst: ReadonlyArray<readonly [number, number]>,
): Affine {
  if (src.length !== 3 || dst.length !== 3) {
    throw new RangeError(
      `getAffineTransform: needs 3 source and 3 destination points, got ${src.length} and ${dst.length}`,
    );
  }
  const a = new Float64Array(36);
  const b = new Float64Array(6);
  for (let i = 0; i < 3; i++) {
    const j = i * 12;
    const k = i * 12 + 6;
    const sx = Math.fround(src[i]![0]);
    const sy = Math.fround(src[i]![1]);
    a[j] = a[k + 3] = sx;
    a[j + 1] = a[k + 4] = sy;
    a[j + 2] = a[k + 5] = 1;
    b[i * 2] = Math.fround(dst[i]![0]);
    b[i * 2 + 1] = Math.fround(dst[i]![1]);
  }
  luSolve(a, b, 6);
  return [b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!];
}

/** OpenCV's LUImpl<double>: solves a x = b in place (b holds x); throws when singular. */
function luSolve(a: Float64Array, b: Float64Array, m: number): void {
  const eps = 2.220446049250313e-16 * 100;
  for (let i = 0; i < m; i++) {
    let k = i;
    for (let j = i + 1; j < m; j++) {
      if (Math.abs(a[j * m + i]!) > Math.abs(a[k * m + i]!)) k = j;
    }
    if (Math.abs(a[k * m + i]!) < eps) {
      throw new RangeError(
        "getAffineTransform: the points are collinear: pass three points that span a triangle",
      );
    }
    if (k !== i) {
      for (let j = i; j < m; j++) {
        const t = a[i * m + j]!;
        a[i * m + j] = a[k * m + j]!;
        a[k * m + j] = t;
      }
      const t = b[i]!;
      b[i] = b[k]!;
      b[k] = t;
    }
    const d = -1 / a[i * m + i]!;
    for (let j = i + 1; j < m; j++) {
      const alpha = a[j * m + i]! * d;
      for (let c = i + 1; c < m; c++) a[j * m + c] = a[j * m + c]! + alpha * a[i * m + c]!;
      b[j] = b[j]! + alpha * b[i]!;
    }
  }
  for (let i = m - 1; i >= 0; i--) {
    let s = b[i]!;
    for (let c = i + 1; c < m; c++) s -= a[i * m + c]! * b[c]!;
    b[i] = s / a[i * m + i]!;
  }
}

/**
 * `cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR)` with the default constant
 * border (0): output pixel (x, y) samples the source at `m⁻¹ · (x, y)`.
 *
 * @example
 * ```ts
 * import { warpAffine } from "./warp_affine.ts";
 * const image = { width: 2, height: 1, channels: 1 as const, data: Uint8Array.of(10, 20) };
 * const shifted = warpAffine(image, [1, 0, 1, 0, 1, 0], 3, 1); // move right by one pixel
 * console.assert(shifted.data.join() === "0,10,20");
 * ```
 */
export function warpAffine(image: RawImage, m: Affine, width: number, height: number): RawImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`warpAffine: the output size ${width}x${height} is invalid`);
  }
  // Invert the forward matrix, as warpAffine does without WARP_INVERSE_MAP.
  const M = [...m];
  let D = M[0]! * M[4]! - M[1]! * M[3]!;
  D = D !== 0 ? 1 / D : 0;
  const a11 = M[4]! * D;
  const a22 = M[0]! * D;
  M[0] = a11;
  M[1] = M[1]! * -D;
  M[3] = M[3]! * -D;
  M[4] = a22;
  const b1 = -M[0] * M[2]! - M[1] * M[5]!;
  const b2 = -M[3] * M[2]! - M[4] * M[5]!;
  M[2] = b1;
  M[5] = b2;

  const AB_SCALE = 1024;
  const roundDelta = 16; // AB_SCALE / INTER_TAB_SIZE / 2
  const satInt = (v: number) => Math.min(2147483647, Math.max(-2147483648, roundHalfEven(v)));
  const adelta = new Float64Array(width);
  const bdelta = new Float64Array(width);
  for (let x = 0; x < width; x++) {
    adelta[x] = satInt(M[0] * x * AB_SCALE);
    bdelta[x] = satInt(M[3] * x * AB_SCALE);
  }
  const mapX = new Float32Array(width * height);
  const mapY = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const X0 = satInt((M[1] * y + M[2]) * AB_SCALE) + roundDelta;
    const Y0 = satInt((M[4] * y + M[5]) * AB_SCALE) + roundDelta;
    for (let x = 0; x < width; x++) {
      // Source position in 1/32 pixel; remap rounds X / 32 * 32 back to exactly X.
      const X = Math.floor((X0 + adelta[x]!) / 32);
      const Y = Math.floor((Y0 + bdelta[x]!) / 32);
      mapX[y * width + x] = X / 32;
      mapY[y * width + x] = Y / 32;
    }
  }
  return remapBilinear(image, mapX, mapY, width, height);
}
