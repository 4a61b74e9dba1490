/**
 * controlnet_aux's detect and image resolutions (also the A1111 extension's "Preprocessor
 * Resolution"): `resize_image(img, resolution)` scales the short side to `resolution`, rounds
 * both sides to multiples of 64 (numpy's round) and resizes with OpenCV's INTER_AREA when
 * shrinking, INTER_LANCZOS4 when enlarging; the detected map is finally brought to the image
 * resolution's size with INTER_LINEAR.
 *
 * Without a detect resolution denoise works at the input's own size and writes the control image
 * at that size.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import type { RgbImage } from "../image/gray.ts";
import { resizeLanczos4 } from "../image/resize_lanczos4.ts";
import { resizeAreaAny, resizeLinear } from "../image/resize_linear.ts";

/** numpy's round: to nearest, ties to even. */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The size `resize_image` gives a `width` x `height` image for `resolution`.
 *
 * @example
 * ```ts
 * import { resolutionSize } from "./resolution.ts";
 * console.assert(resolutionSize(640, 480, 512).join() === "704,512"); // 682.7 -> 704
 * ```
 */
export function resolutionSize(
  width: number,
  height: number,
  resolution: number,
): [number, number] {
  const k = resolution / Math.min(height, width);
  const w = roundEven((width * k) / 64) * 64;
  const h = roundEven((height * k) / 64) * 64;
  if (w < 64 || h < 64) {
    throw new RangeError(
      `A ${width}x${height} image at resolution ${resolution} has a side below 64 pixels: use a higher resolution or a less elongated image`,
    );
  }
  return [w, h];
}

/**
 * controlnet_aux's `resize_image(image, resolution)`: the image resized for detection.
 *
 * @example
 * ```ts
 * import { detectResize } from "./resolution.ts";
 * const image = { width: 128, height: 128, channels: 3 as const, data: new Uint8Array(128 * 128 * 3) };
 * console.assert(detectResize(image, 64).width === 64);
 * ```
 */
export function detectResize(image: RawImage, resolution: number): RawImage {
  const [w, h] = resolutionSize(image.width, image.height, resolution);
  const k = resolution / Math.min(image.height, image.width);
  return k > 1 ? resizeLanczos4(image, w, h) : resizeAreaAny(image, w, h);
}

/**
 * Brings a detected map to its output size with OpenCV's INTER_LINEAR: `imageResolution`'s size
 * of the detected image (controlnet_aux), else `width` x `height` (the input's own size).
 */
export function resizeControl(
  control: RgbImage,
  width: number,
  height: number,
  imageResolution?: number,
): RgbImage {
  const [w, h] = imageResolution === undefined
    ? [width, height]
    : resolutionSize(control.width, control.height, imageResolution);
  if (w === control.width && h === control.height) return control;
  return resizeLinear(control, w, h) as RgbImage;
}
