/**
 * Conversions between the pixel layouts upscaling meets: 8-bit interleaved images (what the
 * diffusion pipeline and PIL work on), planar float images in [0, 1] (any channel layout and
 * bit depth, what upscaling keeps), and the `[1, 3, H, W]` tensors in [-1, 1] the VAE takes.
 *
 * @module
 */
import { type FloatImage, type RawImage, roundHalfEven } from "../image/codec.ts";
import type { Nchw } from "../models/vae.ts";

/**
 * 8-bit interleaved pixels as a planar float image (`v / 255`), same channels.
 *
 * @example
 * ```ts
 * import { rawToFloat } from "./pixels.ts";
 * const f = rawToFloat({ width: 1, height: 1, channels: 3, data: Uint8Array.of(0, 51, 255) });
 * console.assert(f.data[1] === 0.2 && f.bitDepth === 8);
 * ```
 */
export function rawToFloat(raw: RawImage): FloatImage {
  const { width, height, channels } = raw;
  const plane = width * height;
  const data = new Float32Array(channels * plane);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < plane; i++) data[c * plane + i] = raw.data[i * channels + c]! / 255;
  }
  return { width, height, channels, bitDepth: 8, data };
}

/**
 * A float image as 8-bit interleaved pixels: `round(clamp(v, 0, 1) * 255)` in float32, ties to
 * even, as `encodeFloatImage` writes 8-bit files and as Diffusers' `numpy_to_pil` rounds.
 *
 * @example
 * ```ts
 * import { floatToRaw } from "./pixels.ts";
 * const raw = floatToRaw({ width: 2, height: 1, channels: 1, bitDepth: 8, data: Float32Array.of(-1, 0.5) });
 * console.assert(raw.data.join() === "0,128");
 * ```
 */
export function floatToRaw(image: FloatImage): RawImage {
  const { width, height, channels } = image;
  const plane = width * height;
  const data = new Uint8Array(channels * plane);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.min(1, Math.max(0, image.data[c * plane + i]!));
      data[i * channels + c] = roundHalfEven(Math.fround(v * 255));
    }
  }
  return { width, height, channels, data };
}

/**
 * The first three planes of a float image (a grey plane repeated three times) as `[1, 3, H, W]`
 * in [-1, 1] (`2v - 1`, Diffusers' VaeImageProcessor `normalize`).
 *
 * @example
 * ```ts
 * import { floatToTensor } from "./pixels.ts";
 * const t = floatToTensor({ width: 1, height: 1, channels: 1, bitDepth: 16, data: Float32Array.of(1) });
 * console.assert(t.data.join() === "1,1,1" && t.dims.join() === "1,3,1,1");
 * ```
 */
export function floatToTensor(image: FloatImage): Nchw {
  const { width, height } = image;
  const plane = width * height;
  const colours = image.channels <= 2 ? [0, 0, 0] : [0, 1, 2];
  const data = new Float32Array(3 * plane);
  colours.forEach((from, c) => {
    for (let i = 0; i < plane; i++) data[c * plane + i] = 2 * image.data[from * plane + i]! - 1;
  });
  return { data, dims: [1, 3, height, width] };
}

/**
 * `[3, H, W]` values in [-1, 1] (one image of a VAE output) as an RGB float image in [0, 1]:
 * `clamp(x / 2 + 0.5, 0, 1)` in float32, as Diffusers' postprocess.
 *
 * @example
 * ```ts
 * import { tensorToFloat } from "./pixels.ts";
 * const f = tensorToFloat(Float32Array.of(-3, 0, 1), 1, 1, 8);
 * console.assert(f.data.join() === "0,0.5,1" && f.channels === 3);
 * ```
 */
export function tensorToFloat(
  pixels: Float32Array,
  width: number,
  height: number,
  bitDepth: 8 | 16,
): FloatImage {
  const n = 3 * width * height;
  if (pixels.length < n) {
    throw new TypeError(`Cannot read a ${width}x${height} RGB image from ${pixels.length} values`);
  }
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    data[i] = Math.min(1, Math.max(0, Math.fround(Math.fround(pixels[i]! / 2) + 0.5)));
  }
  return { width, height, channels: 3, bitDepth, data };
}

/** OpenCV's `COLOR_RGB2GRAY` weights, as lib/upscale/upscale_image.ts mixes grey outputs. */
const GREY = [0.299, 0.587, 0.114] as const;

/**
 * Puts an RGB result back into the layout of the image it came from: grey again (OpenCV's
 * weights) for a grey source, the given alpha plane appended for a source with alpha.
 *
 * @example
 * ```ts
 * import { restoreLayout } from "./pixels.ts";
 * const rgb = { width: 1, height: 1, channels: 3, bitDepth: 8, data: Float32Array.of(1, 1, 1) } as const;
 * const out = restoreLayout(rgb, 2, Float32Array.of(0.25));
 * console.assert(out.channels === 2 && Math.abs(out.data[0]! - 1) < 1e-6 && out.data[1] === 0.25);
 * ```
 */
export function restoreLayout(
  rgb: FloatImage,
  channels: FloatImage["channels"],
  alpha: Float32Array | undefined,
): FloatImage {
  const plane = rgb.width * rgb.height;
  const grey = channels <= 2;
  const colourPlanes = grey ? 1 : 3;
  const hasAlpha = channels === 2 || channels === 4;
  if (hasAlpha && (alpha === undefined || alpha.length !== plane)) {
    throw new TypeError(`Cannot restore a ${channels}-channel image without a full alpha plane`);
  }
  const data = new Float32Array(channels * plane);
  if (grey) {
    for (let i = 0; i < plane; i++) {
      data[i] = GREY[0] * rgb.data[i]! + GREY[1] * rgb.data[plane + i]! +
        GREY[2] * rgb.data[2 * plane + i]!;
    }
  } else {
    data.set(rgb.data.subarray(0, 3 * plane));
  }
  if (hasAlpha) data.set(alpha!, colourPlanes * plane);
  return { width: rgb.width, height: rgb.height, channels, bitDepth: rgb.bitDepth, data };
}
