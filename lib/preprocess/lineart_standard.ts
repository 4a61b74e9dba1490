/**
 * The `lineart_standard` preprocessor: model-free line art (white lines on black) for the line
 * art ControlNets (`control_v11p_sd15_lineart`), as controlnet_aux's `LineartStandardDetector`
 * and the A1111 extension's `lineart_standard` ("Standard Lineart") compute it:
 *
 * ```
 * x = float32(img); g = GaussianBlur(x, sigma 6)
 * intensity = clip(min_over_channels(g - x), 0, 255)
 * intensity /= max(16, median(intensity[intensity > threshold]))
 * result = uint8(clip(intensity * 127, 0, 255))
 * ```
 *
 * Pixels darker than their surroundings become lines, scaled so the median line pixel is 127.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { gaussianBlur } from "../image/gaussian_blur.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import { asPromise, type Preprocessor } from "./preprocessor.ts";

/** Options for {@linkcode lineartStandardControl}. */
export interface LineartStandardOptions {
  /** Gaussian sigma of the background estimate, default 6 (controlnet_aux's `guassian_sigma`). */
  sigma?: number;
  /** Only pixels above this darkness enter the median, default 8 (`intensity_threshold`). */
  threshold?: number;
}

/** The option schema of the lineart_standard preprocessor. */
export const LINEART_STANDARD_OPTIONS: readonly OptionSpec[] = [
  {
    name: "sigma",
    type: "number",
    default: 6,
    min: 0.1,
    max: 100,
    description: "Gaussian sigma of the blurred background the lines are measured against",
  },
  {
    name: "threshold",
    type: "number",
    default: 8,
    min: 0,
    max: 255,
    description: "darkness above which pixels count towards the normalising median",
  },
];

/**
 * Standard line art of an image (see the module doc for the formula), in float32 as numpy does
 * it; the blur sums in float64 (OpenCV: float32), so a value within ~1e-4 of a whole number can
 * be truncated one level differently.
 *
 * @example
 * ```ts
 * import { lineartStandardControl } from "./lineart_standard.ts";
 * const data = new Uint8Array(32 * 32 * 3).fill(240);
 * for (let y = 0; y < 32; y++) data.fill(20, (y * 32 + 16) * 3, (y * 32 + 17) * 3);
 * const out = lineartStandardControl({ width: 32, height: 32, channels: 3, data });
 * console.assert(out.data[(10 * 32 + 16) * 3]! > 100 && out.data[(10 * 32 + 4) * 3] === 0);
 * ```
 */
export function lineartStandardControl(
  image: RawImage,
  options: LineartStandardOptions = {},
): RgbImage {
  const o = resolveOptions("lineart_standard", LINEART_STANDARD_OPTIONS, { ...options });
  const rgb = toRgb(image);
  const { width, height } = rgb;
  const n = width * height;
  const x = Float32Array.from(rgb.data);
  const g = gaussianBlur(x, width, height, 3, o.sigma as number);
  const intensity = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let m = Infinity;
    for (let c = 0; c < 3; c++) m = Math.min(m, Math.fround(g[i * 3 + c]! - x[i * 3 + c]!));
    intensity[i] = Math.min(255, Math.max(0, m));
  }
  const threshold = o.threshold as number;
  const median = float32Median(intensity.filter((v) => v > threshold));
  // Python's max(16, nan) is 16: no pixel above the threshold divides by 16.
  const divisor = median > 16 ? median : 16;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const v = Math.fround(Math.fround(intensity[i]! / divisor) * 127);
    out.fill(Math.trunc(Math.min(255, Math.max(0, v))), i * 3, i * 3 + 3);
  }
  return { width, height, channels: 3, data: out };
}

/** np.median of float32 values: the middle one, or the float32 mean of the two middle ones. */
function float32Median(values: Float32Array): number {
  if (values.length === 0) return Number.NaN;
  const sorted = values.slice().sort();
  const mid = sorted.length >> 1;
  if (sorted.length % 2 === 1) return sorted[mid]!;
  return Math.fround(Math.fround(sorted[mid - 1]! + sorted[mid]!) / 2);
}

/** The lineart_standard preprocessor for the registry. */
export const lineartStandardPreprocessor: Preprocessor = {
  kind: "lineart_standard",
  summary: "model-free line art (white lines on black) from a Gaussian background difference",
  reference: "controlnet_aux LineartStandardDetector / A1111 `lineart_standard` (sigma 6, 8)",
  options: LINEART_STANDARD_OPTIONS,
  run: (image, options) =>
    asPromise(() =>
      lineartStandardControl(
        image,
        resolveOptions(
          "lineart_standard",
          LINEART_STANDARD_OPTIONS,
          options,
        ) as LineartStandardOptions,
      )
    ),
};
