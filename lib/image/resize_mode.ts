/**
 * A1111's img2img "Resize mode" (modules/images.py `resize_image`), with Pillow-exact Lanczos
 * resampling (lib/image/pil_resample.ts), which is what A1111 uses when no upscaler is set:
 * - "just-resize": stretch to width x height;
 * - "crop-and-resize": scale to cover, keep the centre, crop the rest;
 * - "resize-and-fill": scale to fit, centre it, and fill the bars by stretching the edge rows
 *   (or columns) of the scaled image: A1111 resizes a zero-height box at the edge, which with
 *   Pillow's default bicubic filter mixes the two outermost lines (1.125 and -0.125);
 * "latent-upscale" resizes the latents instead (lib/pipeline), so it is not here.
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import { pilResize, pilZeroBoxLine } from "./pil_resample.ts";

/** The pixel resize modes (A1111 resize modes 0, 1 and 2). */
export type PixelResizeMode = "just-resize" | "crop-and-resize" | "resize-and-fill";

/** Every resize mode a Job may name (mode 3 works on latents). */
export const RESIZE_MODES = [
  "just-resize",
  "crop-and-resize",
  "resize-and-fill",
  "latent-upscale",
] as const;

/** A resize mode (A1111 modes 0 to 3). */
export type ResizeMode = typeof RESIZE_MODES[number];

/** Copies `src` into a new `width x height` image at (x, y), clipping what falls outside. */
function paste(
  out: RawImage,
  src: RawImage,
  x: number,
  y: number,
): void {
  const c = out.channels;
  for (let row = 0; row < src.height; row++) {
    const oy = y + row;
    if (oy < 0 || oy >= out.height) continue;
    for (let col = 0; col < src.width; col++) {
      const ox = x + col;
      if (ox < 0 || ox >= out.width) continue;
      for (let k = 0; k < c; k++) {
        out.data[(oy * out.width + ox) * c + k] = src.data[(row * src.width + col) * c + k]!;
      }
    }
  }
}

/** `a // b` for non-negative integers, as Python floors. */
function floorDiv(a: number, b: number): number {
  return Math.floor(a / b);
}

/**
 * Resizes an image to `width x height` with an A1111 resize mode. The result is black where a
 * mode leaves nothing (never, for these three modes on non-empty images).
 *
 * @example
 * ```ts
 * import { resizeWithMode } from "./resize_mode.ts";
 * const image = { width: 4, height: 2, channels: 1 as const, data: new Uint8Array(8).fill(9) };
 * const out = resizeWithMode(image, 2, 2, "crop-and-resize");
 * console.assert(out.width === 2 && out.height === 2 && out.data.every((v) => v === 9));
 * ```
 */
export function resizeWithMode(
  image: RawImage,
  width: number,
  height: number,
  mode: PixelResizeMode,
): RawImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`Cannot resize to ${width}x${height}: width and height must be >= 1`);
  }
  if (mode === "just-resize") return pilResize(image, width, height, "lanczos");
  const ratio = width / height;
  const srcRatio = image.width / image.height;
  const out: RawImage = {
    width,
    height,
    channels: image.channels,
    data: new Uint8Array(width * height * image.channels),
  };
  if (mode === "crop-and-resize") {
    const srcW = ratio > srcRatio ? width : floorDiv(image.width * height, image.height);
    const srcH = ratio <= srcRatio ? height : floorDiv(image.height * width, image.width);
    const resized = pilResize(image, srcW, srcH, "lanczos");
    paste(
      out,
      resized,
      floorDiv(width, 2) - floorDiv(srcW, 2),
      floorDiv(height, 2) - floorDiv(srcH, 2),
    );
    return out;
  }
  // resize-and-fill
  const srcW = ratio < srcRatio ? width : floorDiv(image.width * height, image.height);
  const srcH = ratio >= srcRatio ? height : floorDiv(image.height * width, image.width);
  const resized = pilResize(image, srcW, srcH, "lanczos");
  const x0 = floorDiv(width, 2) - floorDiv(srcW, 2);
  const y0 = floorDiv(height, 2) - floorDiv(srcH, 2);
  paste(out, resized, x0, y0);
  const c = image.channels;
  // The bars are the scaled image's edge rows (columns) stretched: Pillow's resize from a
  // zero-extent box (default resample, bicubic), as A1111 does.
  if (ratio < srcRatio) {
    const fill = floorDiv(height, 2) - floorDiv(srcH, 2);
    const top = pilZeroBoxLine(resized, "rows", 0, "bicubic");
    const bottom = pilZeroBoxLine(resized, "rows", resized.height, "bicubic");
    for (let y = 0; y < fill; y++) {
      out.data.set(top, y * width * c);
      const yb = fill + srcH + y;
      if (yb < height) out.data.set(bottom, yb * width * c);
    }
  } else if (ratio > srcRatio) {
    const fill = floorDiv(width, 2) - floorDiv(srcW, 2);
    const left = pilZeroBoxLine(resized, "columns", 0, "bicubic");
    const right = pilZeroBoxLine(resized, "columns", resized.width, "bicubic");
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < fill; x++) {
        for (let k = 0; k < c; k++) {
          out.data[(y * width + x) * c + k] = left[y * c + k]!;
          const xr = fill + srcW + x;
          if (xr < width) out.data[(y * width + xr) * c + k] = right[y * c + k]!;
        }
      }
    }
  }
  return out;
}
