/**
 * OpenCV's `cv2.remap(img, map, None, cv2.INTER_LINEAR)` for 8-bit images and a float32 map
 * (absolute source coordinates per output pixel), with the default constant border of 0. The
 * content-shuffle preprocessor warps the image with it.
 *
 * Source: OpenCV 4.6 `modules/imgproc/src/imgwarp.cpp`: coordinates are rounded to 1/32 pixel
 * (`cvRound(x * INTER_TAB_SIZE)`), the bilinear weights come from a 15-bit fixed-point table
 * ((32 - fx)(32 - fy) · 32 and so on, summing to 2^15) and the result is
 * `(Σ v·w + 2^14) >> 15` (`FixedPtCast<int, uchar, 15>`); neighbours outside the image read 0.
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import { checkPixels } from "./gray.ts";

/** cvRound: round half to even. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Samples `image` at (`mapX[i]`, `mapY[i]`) for each output pixel i (row-major, `width` x
 * `height`), bilinearly, as cv2.remap with INTER_LINEAR and BORDER_CONSTANT 0. Map values are
 * taken as float32.
 *
 * @example
 * ```ts
 * import { remapBilinear } from "./remap.ts";
 * const image = { width: 2, height: 1, channels: 1 as const, data: Uint8Array.of(0, 100) };
 * const out = remapBilinear(image, Float32Array.of(0.5, 1), Float32Array.of(0, 0), 2, 1);
 * console.assert(out.data.join() === "50,100");
 * ```
 */
export function remapBilinear(
  image: RawImage,
  mapX: Float32Array,
  mapY: Float32Array,
  width: number,
  height: number,
): RawImage {
  checkPixels(image, "remapBilinear");
  const n = width * height;
  if (mapX.length < n || mapY.length < n) {
    throw new TypeError(
      `remapBilinear: the maps need ${n} values for ${width}x${height}, got ${mapX.length} and ${mapY.length}`,
    );
  }
  const { width: sw, height: sh, channels: cn, data } = image;
  const out = new Uint8Array(n * cn);
  const at = (x: number, y: number, c: number) =>
    x >= 0 && x < sw && y >= 0 && y < sh ? data[(y * sw + x) * cn + c]! : 0;
  for (let i = 0; i < n; i++) {
    const sx = roundHalfEven(mapX[i]! * 32);
    const sy = roundHalfEven(mapY[i]! * 32);
    const fx = sx & 31;
    const fy = sy & 31;
    const x = sx >> 5;
    const y = sy >> 5;
    if (x >= sw || x + 1 < 0 || y >= sh || y + 1 < 0) continue; // all four outside: 0
    const w00 = (32 - fx) * (32 - fy) * 32;
    const w01 = fx * (32 - fy) * 32;
    const w10 = (32 - fx) * fy * 32;
    const w11 = fx * fy * 32;
    for (let c = 0; c < cn; c++) {
      const v = at(x, y, c) * w00 + at(x + 1, y, c) * w01 + at(x, y + 1, c) * w10 +
        at(x + 1, y + 1, c) * w11;
      out[i * cn + c] = (v + 16384) >> 15;
    }
  }
  return { width, height, channels: cn, data: out };
}
