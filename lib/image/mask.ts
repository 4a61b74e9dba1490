/**
 * Inpainting masks: decoding a mask image to one 8-bit plane, A1111's mask blur, Diffusers'
 * binarisation and nearest-neighbour downsampling to the latent grid, and A1111's final overlay
 * of the original pixels. White (255) means "repaint", black (0) means "keep".
 *
 * Sources: diffusers 0.27 `image_processor.py` (`VaeImageProcessor` with `do_binarize`,
 * `do_convert_grayscale`), `torch.nn.functional.interpolate` (mode "nearest"), A1111
 * `modules/images.py` (`create_binary_mask`) and `modules/processing.py`
 * (`StableDiffusionProcessingImg2Img.init`: mask blur, `mask_for_overlay`, `apply_overlay`).
 *
 * @module
 */
import { decodeImage, type RawImage } from "./codec.ts";

/** A mask: one 8-bit plane, row-major, top row first; 255 = repaint, 0 = keep. */
export interface MaskImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Options for {@linkcode decodeMask}. */
export interface DecodeMaskOptions {
  /** Where the bytes came from, for messages. */
  label?: string;
}

/**
 * Decodes a mask image (PNG, JPEG, WebP, GIF). As A1111's `create_binary_mask` does, an image
 * whose alpha channel is not fully opaque is read as an alpha mask (alpha > 128 repaints);
 * otherwise its luminance is the mask (PIL's `convert("L")`:
 * `(19595 R + 38470 G + 7471 B + 2^15) >> 16`). Throws InputError for bytes that are not an image.
 *
 * @example
 * ```ts
 * import { decodeMask } from "./mask.ts";
 * import { encodeImage } from "./codec.ts";
 * const png = await encodeImage(
 *   { width: 2, height: 1, channels: 3, data: Uint8Array.of(0, 0, 0, 255, 255, 255) },
 *   "png",
 * );
 * const mask = await decodeMask(png);
 * console.assert(mask.data[0] === 0 && mask.data[1] === 255);
 * ```
 */
export async function decodeMask(
  bytes: Uint8Array,
  options: DecodeMaskOptions = {},
): Promise<MaskImage> {
  const raw = await decodeImage(bytes, {
    channels: 4,
    ...(options.label ? { label: options.label } : {}),
  });
  return maskFromImage(raw);
}

/** The mask of decoded RGBA (or RGB / gray) pixels, by the rules of {@linkcode decodeMask}. */
export function maskFromImage(image: RawImage): MaskImage {
  const { width, height, channels, data } = image;
  const plane = width * height;
  const out = new Uint8Array(plane);
  const hasAlpha = channels === 2 || channels === 4;
  let translucent = false;
  if (hasAlpha) {
    for (let i = 0; i < plane && !translucent; i++) {
      if (data[i * channels + channels - 1]! !== 255) translucent = true;
    }
  }
  for (let i = 0; i < plane; i++) {
    const p = i * channels;
    if (translucent) {
      out[i] = data[p + channels - 1]! > 128 ? 255 : 0;
    } else if (channels <= 2) {
      out[i] = data[p]!;
    } else {
      const r = data[p]!;
      const g = data[p + 1]!;
      const b = data[p + 2]!;
      out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    }
  }
  return { width, height, data: out };
}

/** OpenCV `getGaussianKernel(size, sigma)` for sigma > 0: sampled, normalised to sum 1. */
function gaussianKernel(size: number, sigma: number): Float64Array {
  const k = new Float64Array(size);
  const c = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    k[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
    sum += k[i]!;
  }
  for (let i = 0; i < size; i++) k[i]! /= sum;
  return k;
}

/** OpenCV's default border (BORDER_REFLECT_101): `gfedcb|abcdefgh|gfedcba`. */
function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

/** One 1-D Gaussian pass along x (`horizontal`) or y, rounding to 8 bits. */
function blurPass(mask: MaskImage, sigma: number, horizontal: boolean): MaskImage {
  const { width, height, data } = mask;
  // A1111: kernel_size = 2 * int(2.5 * blur + 0.5) + 1
  const size = 2 * Math.trunc(2.5 * sigma + 0.5) + 1;
  const kernel = gaussianKernel(size, sigma);
  const r = (size - 1) / 2;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let acc = 0;
      for (let k = -r; k <= r; k++) {
        const v = horizontal
          ? data[y * width + reflect101(x + k, width)]!
          : data[reflect101(y + k, height) * width + x]!;
        acc += kernel[k + r]! * v;
      }
      out[y * width + x] = Math.min(255, Math.max(0, Math.round(acc)));
    }
  }
  return { width, height, data: out };
}

/**
 * A1111's mask blur: a Gaussian of standard deviation `blur` pixels along x, then along y
 * (`cv2.GaussianBlur` with kernels `(k, 1)` and `(1, k)`, `k = 2 * int(2.5 * blur + 0.5) + 1`,
 * reflect-101 borders). Computed in float and rounded, so values may differ from OpenCV's
 * fixed-point 8-bit path by 1. `blur` 0 returns the mask unchanged.
 */
export function blurMask(mask: MaskImage, blur: number): MaskImage {
  if (!(blur >= 0) || !Number.isFinite(blur)) {
    throw new RangeError(`Mask blur must be a finite number >= 0, got ${blur}`);
  }
  if (blur === 0) return mask;
  return blurPass(blurPass(mask, blur, true), blur, false);
}

/**
 * Diffusers' mask preprocessing (`do_binarize`): `mask / 255 >= 0.5` becomes 1, the rest 0.
 * Returns a `[H * W]` plane of 0/1 floats.
 */
export function binarizeMask(mask: MaskImage): Float32Array {
  const out = new Float32Array(mask.data.length);
  for (let i = 0; i < out.length; i++) out[i] = mask.data[i]! / 255 >= 0.5 ? 1 : 0;
  return out;
}

/**
 * `torch.nn.functional.interpolate(x, size=(outHeight, outWidth))` (default mode "nearest") of
 * one plane: output pixel (i, j) reads input `(floor(i * h / outH), floor(j * w / outW))`, the
 * scale computed in float32 as PyTorch does.
 */
export function resizeNearest(
  plane: Float32Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Float32Array {
  if (plane.length !== width * height) {
    throw new TypeError(
      `Cannot resize a plane of ${plane.length} values as ${width}x${height}; pass width * height values`,
    );
  }
  const sy = Math.fround(height / outHeight);
  const sx = Math.fround(width / outWidth);
  const out = new Float32Array(outWidth * outHeight);
  for (let i = 0; i < outHeight; i++) {
    const y = Math.min(Math.floor(Math.fround(i * sy)), height - 1);
    for (let j = 0; j < outWidth; j++) {
      const x = Math.min(Math.floor(Math.fround(j * sx)), width - 1);
      out[i * outWidth + j] = plane[y * width + x]!;
    }
  }
  return out;
}

/**
 * `generated * m + original * (1 - m)` per pixel with `m = mask / 255`, rounded to 8 bits: the
 * original shows where the mask is 0 (byte for byte) and the generated image where it is 255.
 * The three images must have the same size.
 */
export function compositeThroughMask(
  generated: RawImage,
  original: RawImage,
  mask: MaskImage,
): RawImage {
  const { width, height } = generated;
  if (
    original.width !== width || original.height !== height || mask.width !== width ||
    mask.height !== height
  ) {
    throw new TypeError(
      `Cannot composite: image ${width}x${height}, original ${original.width}x${original.height} and mask ${mask.width}x${mask.height} differ in size`,
    );
  }
  const c = generated.channels;
  const oc = original.channels;
  const out = new Uint8Array(generated.data.length);
  for (let i = 0; i < width * height; i++) {
    const m = mask.data[i]! / 255;
    for (let k = 0; k < c; k++) {
      const g = generated.data[i * c + k]!;
      const o = original.data[i * oc + Math.min(k, oc - 1)]!;
      out[i * c + k] = m === 0 ? o : Math.round(g * m + o * (1 - m));
    }
  }
  return { width, height, channels: c, data: out };
}

/**
 * Pastes the original pixels back over a generated image where the mask keeps them, as A1111's
 * `apply_overlay` does for inpainting: the overlay mask is `clip(2 * mask, 0, 255)` (the blurred
 * mask doubled, so the seam fades outside the repainted area), and each pixel becomes
 * `gen * m + orig * (1 - m)` with `m = overlay / 255`, rounded to 8 bits.
 */
export function overlayOriginal(
  generated: RawImage,
  original: RawImage,
  mask: MaskImage,
): RawImage {
  // A1111's overlay mask is the blurred mask doubled, clipped to 255.
  const doubled = mask.data.map((v) => Math.min(255, 2 * v));
  return compositeThroughMask(generated, original, { ...mask, data: doubled });
}
