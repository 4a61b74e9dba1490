/**
 * The `canny` preprocessor: OpenCV's Canny edges as the control image of the canny ControlNets
 * (`control_v11p_sd15_canny`, `sd-controlnet-canny`, the SDXL canny nets).
 *
 * As the Diffusers ControlNet docs, controlnet_aux's `CannyDetector` and the A1111 extension do,
 * `cv2.Canny` runs on the 3-channel RGB image itself (per pixel, the channel with the largest
 * gradient), unless `gray` asks for OpenCV's RGB-to-gray conversion first. The 0/255 edge map is
 * repeated into R, G and B.
 *
 * @module
 */
import { canny } from "../image/canny.ts";
import type { RawImage } from "../image/codec.ts";
import { type RgbImage, rgbToGray, toRgb } from "../image/gray.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import { asPromise, type Preprocessor } from "./preprocessor.ts";

/** Options for {@linkcode cannyControl}. */
export interface CannyControlOptions {
  /** cv2.Canny threshold1, default 100 (controlnet_aux's). */
  low?: number;
  /** cv2.Canny threshold2, default 200 (controlnet_aux's). */
  high?: number;
  /** cv2.Canny's L2gradient, default false. */
  l2?: boolean;
  /** Convert to gray with cv2's COLOR_RGB2GRAY first, default false (Canny on RGB). */
  gray?: boolean;
}

/** The option schema of the canny preprocessor. */
export const CANNY_OPTIONS: readonly OptionSpec[] = [
  {
    name: "low",
    type: "number",
    default: 100,
    min: 0,
    max: 2 ** 31 - 1,
    description: "lower hysteresis threshold (cv2.Canny threshold1); swapped with high if larger",
  },
  {
    name: "high",
    type: "number",
    default: 200,
    min: 0,
    max: 2 ** 31 - 1,
    description: "upper hysteresis threshold (cv2.Canny threshold2)",
  },
  {
    name: "l2",
    type: "boolean",
    default: false,
    description: "use the L2 gradient magnitude sqrt(dx² + dy²) instead of |dx| + |dy|",
  },
  {
    name: "gray",
    type: "boolean",
    default: false,
    description: "convert to gray (OpenCV's RGB2GRAY) before edge detection",
  },
];

/**
 * Canny control image: `cv2.Canny(rgb, low, high, L2gradient=l2)` (or on
 * `cv2.cvtColor(rgb, COLOR_RGB2GRAY)` with `gray`), repeated into 3 channels.
 *
 * @example
 * ```ts
 * import { cannyControl } from "./canny.ts";
 * const data = Uint8Array.from({ length: 48 }, (_, i) => ((i / 3 | 0) % 4 >= 2 ? 255 : 0));
 * const control = cannyControl({ width: 4, height: 4, channels: 3, data }, { low: 100, high: 200 });
 * console.assert(control.channels === 3 && control.data[3] === 255 && control.data[0] === 0);
 * ```
 */
export function cannyControl(image: RawImage, options: CannyControlOptions = {}): RgbImage {
  const o = resolveOptions("canny", CANNY_OPTIONS, options as Record<string, unknown>);
  const rgb = toRgb(image);
  const source = o.gray ? rgbToGray(rgb) : rgb;
  const edges = canny(source, {
    low: o.low as number,
    high: o.high as number,
    l2Gradient: o.l2 as boolean,
  });
  const data = new Uint8Array(edges.length * 3);
  for (let i = 0; i < edges.length; i++) data.fill(edges[i]!, i * 3, i * 3 + 3);
  return { width: image.width, height: image.height, channels: 3, data };
}

/** The canny preprocessor for the registry. */
export const cannyPreprocessor: Preprocessor = {
  kind: "canny",
  summary: "Canny edges (white on black) for the canny ControlNets",
  reference: "OpenCV 4.6 cv2.Canny(rgb, low, high, apertureSize=3, L2gradient), as controlnet_aux",
  options: CANNY_OPTIONS,
  run: (image, options) => asPromise(() => cannyControl(image, options)),
};
