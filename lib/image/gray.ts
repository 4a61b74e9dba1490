/**
 * Colour to gray with OpenCV's integer formula (`cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)` on 8-bit
 * pixels), and gray or RGBA to 3-channel RGB as controlnet_aux's and the A1111 ControlNet
 * extension's `HWC3` does.
 *
 * Source: OpenCV 4.6 `modules/imgproc/src/color_rgb.simd.hpp` (`RGB2Gray<uchar>`: BT.601 weights in
 * 15-bit fixed point, R 9798, G 19235, B 3735, rounded), checked against cv2 in
 * ../shared/golden/canny (`gray_formula_check`); controlnet_aux 0.0.10 `util.py` (`HWC3`).
 *
 * @module
 */
import type { RawImage } from "./codec.ts";

/** An 8-bit image with one channel, as {@linkcode rgbToGray} returns it. */
export interface GrayImage extends RawImage {
  channels: 1;
}

/** An 8-bit image with three channels, as {@linkcode toRgb} returns it. */
export interface RgbImage extends RawImage {
  channels: 3;
}

/**
 * OpenCV's `COLOR_RGB2GRAY` (and `COLOR_RGBA2GRAY`, which ignores alpha) on 8-bit pixels:
 * `(9798 R + 19235 G + 3735 B + 16384) >> 15`. The input must have 3 or 4 channels in R, G, B
 * order (what decodeImage returns); a 1-channel image is returned as a copy.
 *
 * @example
 * ```ts
 * import { rgbToGray } from "./gray.ts";
 * const gray = rgbToGray({ width: 2, height: 1, channels: 3, data: Uint8Array.of(255, 0, 0, 0, 255, 0) });
 * console.assert(gray.data[0] === 76 && gray.data[1] === 150);
 * ```
 */
export function rgbToGray(image: RawImage): GrayImage {
  const { width, height, channels, data } = image;
  checkPixels(image, "rgbToGray");
  const plane = width * height;
  const out = new Uint8Array(plane);
  if (channels === 1) {
    out.set(data.subarray(0, plane));
  } else if (channels === 3 || channels === 4) {
    for (let i = 0, p = 0; i < plane; i++, p += channels) {
      out[i] = (data[p]! * 9798 + data[p + 1]! * 19235 + data[p + 2]! * 3735 + 16384) >> 15;
    }
  } else {
    throw new TypeError(
      `Cannot convert a ${channels}-channel image to gray: pass 1 (gray), 3 (RGB) or 4 (RGBA) channels`,
    );
  }
  return { width, height, channels: 1, data: out };
}

/**
 * Any 8-bit image to 3-channel RGB, as `HWC3` in controlnet_aux and the A1111 ControlNet extension
 * does: gray is repeated, RGB is copied, RGBA is composited onto white in float32
 * (`rgb * a / 255 + 255 * (1 - a / 255)`, then truncated), gray+alpha likewise.
 *
 * @example
 * ```ts
 * import { toRgb } from "./gray.ts";
 * const rgb = toRgb({ width: 1, height: 1, channels: 1, data: Uint8Array.of(7) });
 * console.assert(rgb.channels === 3 && rgb.data.join() === "7,7,7");
 * ```
 */
export function toRgb(image: RawImage): RgbImage {
  const { width, height, channels, data } = image;
  checkPixels(image, "toRgb");
  const plane = width * height;
  const out = new Uint8Array(plane * 3);
  if (channels === 3) {
    out.set(data.subarray(0, plane * 3));
    return { width, height, channels: 3, data: out };
  }
  const colours = channels >= 3 ? 3 : 1;
  const hasAlpha = channels === 2 || channels === 4;
  for (let i = 0; i < plane; i++) {
    const p = i * channels;
    // float32 as numpy does it: alpha = a.astype(float32) / 255.0.
    const alpha = hasAlpha ? Math.fround(data[p + channels - 1]! / 255) : 1;
    const white = Math.fround(255 * Math.fround(1 - alpha));
    for (let c = 0; c < 3; c++) {
      const v = data[p + (colours === 3 ? c : 0)]!;
      out[i * 3 + c] = hasAlpha
        ? Math.min(255, Math.fround(Math.fround(v * alpha) + white)) | 0
        : v;
    }
  }
  return { width, height, channels: 3, data: out };
}

/**
 * Throws TypeError when `data` is shorter than width x height x channels or sizes are bad;
 * `what` names the caller in the message.
 *
 * @example
 * ```ts
 * import { checkPixels } from "./gray.ts";
 * let failed = false;
 * try {
 *   checkPixels({ width: 2, height: 2, channels: 3, data: new Uint8Array(5) }, "demo");
 * } catch (error) {
 *   failed = error instanceof TypeError;
 * }
 * console.assert(failed);
 * ```
 */
export function checkPixels(image: RawImage, what: string): void {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new TypeError(
      `${what}: the image size ${width}x${height} is invalid: width and height must be positive integers`,
    );
  }
  if (!Number.isInteger(channels) || channels < 1 || channels > 4) {
    throw new TypeError(`${what}: ${channels} channels is invalid: use 1 to 4`);
  }
  if (!(data instanceof Uint8Array) || data.length < width * height * channels) {
    throw new TypeError(
      `${what}: expected ${
        width * height * channels
      } bytes for a ${width}x${height}x${channels} image, got ${
        data instanceof Uint8Array ? data.length : typeof data
      }`,
    );
  }
}
