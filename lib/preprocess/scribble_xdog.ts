/**
 * The `scribble_xdog` preprocessor: a model-free scribble (white strokes on black) for the
 * scribble ControlNets (`control_v11p_sd15_scribble`), by difference of Gaussians, exactly as the
 * A1111 ControlNet extension's `scribble_xdog` (also ControlNet 1.1's own `gradio_scribble.py`
 * "Scribble_XDoG"):
 *
 * ```
 * g1 = GaussianBlur(float32(img), sigma 0.5); g2 = GaussianBlur(float32(img), sigma 5)
 * dog = uint8(clip(255 - min_over_channels(g2 - g1), 0, 255))
 * result = 255 where 2 * (255 - dog) > threshold, else 0      (uint8 arithmetic)
 * ```
 *
 * `2 * (255 - dog)` is computed in numpy uint8 there and wraps modulo 256, so the very darkest
 * strokes (where `255 - dog` is 128 or more and `2 * (255 - dog) - 256` is at most the
 * threshold) come out black. This reproduces that, to give the same control image.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { gaussianBlur } from "../image/gaussian_blur.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import { asPromise, type Preprocessor } from "./preprocessor.ts";

/** Options for {@linkcode scribbleXdogControl}. */
export interface ScribbleXdogOptions {
  /** The extension's "XDoG Threshold" (thr_a), default 32; lower keeps fainter strokes. */
  threshold?: number;
}

/** The option schema of the scribble_xdog preprocessor. */
export const SCRIBBLE_XDOG_OPTIONS: readonly OptionSpec[] = [
  {
    name: "threshold",
    type: "number",
    default: 32,
    min: 0,
    max: 255,
    description: "XDoG threshold: a pixel is a stroke where 2 x its DoG darkness exceeds it",
  },
];

/**
 * XDoG scribble of an image (see the module doc for the formula). Gaussian sums are float64
 * rounded to float32 where OpenCV sums in float32, so a pixel whose DoG lands within ~1e-4 of a
 * whole number can differ from OpenCV's by one level before thresholding.
 *
 * @example
 * ```ts
 * import { scribbleXdogControl } from "./scribble_xdog.ts";
 * // A dark line on white becomes a white stroke on black.
 * const data = new Uint8Array(16 * 16 * 3).fill(255);
 * for (let y = 0; y < 16; y++) data.fill(0, (y * 16 + 8) * 3, (y * 16 + 9) * 3);
 * const out = scribbleXdogControl({ width: 16, height: 16, channels: 3, data });
 * console.assert(out.data[(5 * 16 + 8) * 3] === 255 && out.data[(5 * 16 + 1) * 3] === 0);
 * ```
 */
export function scribbleXdogControl(image: RawImage, options: ScribbleXdogOptions = {}): RgbImage {
  const o = resolveOptions("scribble_xdog", SCRIBBLE_XDOG_OPTIONS, { ...options });
  const threshold = o.threshold as number;
  const rgb = toRgb(image);
  const { width, height } = rgb;
  const x = Float32Array.from(rgb.data);
  const g1 = gaussianBlur(x, width, height, 3, 0.5);
  const g2 = gaussianBlur(x, width, height, 3, 5.0);
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    let m = Infinity;
    for (let c = 0; c < 3; c++) m = Math.min(m, Math.fround(g2[i * 3 + c]! - g1[i * 3 + c]!));
    const dog = Math.trunc(Math.min(255, Math.max(0, Math.fround(255 - m))));
    const doubled = (2 * (255 - dog)) & 255; // numpy uint8 arithmetic wraps
    if (doubled > threshold) out.fill(255, i * 3, i * 3 + 3);
  }
  return { width, height, channels: 3, data: out };
}

/** The scribble_xdog preprocessor for the registry. */
export const scribbleXdogPreprocessor: Preprocessor = {
  kind: "scribble_xdog",
  summary: "model-free scribble (white strokes on black) by difference of Gaussians",
  reference: "A1111 sd-webui-controlnet `scribble_xdog` (sigmas 0.5 and 5, thr_a 32)",
  options: SCRIBBLE_XDOG_OPTIONS,
  run: (image, options) =>
    asPromise(() =>
      scribbleXdogControl(
        image,
        resolveOptions("scribble_xdog", SCRIBBLE_XDOG_OPTIONS, options) as ScribbleXdogOptions,
      )
    ),
};
