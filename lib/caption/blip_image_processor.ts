/**
 * transformers 4.30 `BlipImageProcessor` (models/blip/image_processing_blip.py) on decoded
 * pixels: RGB conversion as PIL's `convert("RGB")` (alpha dropped, gray replicated), resize to
 * `size` with PIL's resampling (lib/image/pil_resample.ts, bit-exact), `x * rescale_factor` in
 * float64 cast to float32 (image_transforms.rescale), `(x - mean) / std` in float32
 * (image_transforms.normalize), channels first.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { PIL_FILTER_CODES, type PilFilter, pilResize } from "../image/pil_resample.ts";

/** A parsed BLIP `preprocessor_config.json`. */
export interface BlipImageProcessorConfig {
  doConvertRgb: boolean;
  doResize: boolean;
  width: number;
  height: number;
  resample: PilFilter;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** OpenAI CLIP's mean and std (transformers `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`). */
export const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
/** See {@linkcode OPENAI_CLIP_MEAN}. */
export const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

function fail(key: string, want: string, got: unknown): never {
  throw new RangeError(
    `Cannot use preprocessor_config.json: "${key}" must be ${want}, got ${JSON.stringify(got)}`,
  );
}

/**
 * Parses a BLIP `preprocessor_config.json` (BlipImageProcessor defaults of transformers 4.30:
 * 384x384 bicubic, 1/255, CLIP mean/std, RGB conversion).
 *
 * @example
 * ```ts
 * import { parseBlipImageProcessorConfig } from "./blip_image_processor.ts";
 * const c = parseBlipImageProcessorConfig({ size: { height: 64, width: 64 }, resample: 3 });
 * console.assert(c.width === 64 && c.resample === "bicubic");
 * ```
 */
export function parseBlipImageProcessorConfig(json: unknown): BlipImageProcessorConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError("Cannot use preprocessor_config.json: expected a JSON object");
  }
  const o = json as Record<string, unknown>;
  const bool = (key: string, fallback: boolean): boolean => {
    const v = o[key] ?? fallback;
    if (typeof v !== "boolean") fail(key, "true or false", v);
    return v;
  };
  const triple = (key: string, fallback: [number, number, number]): [number, number, number] => {
    const v = o[key] ?? fallback;
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === "number")) {
      fail(key, "a list of 3 numbers", v);
    }
    return [v[0]!, v[1]!, v[2]!];
  };
  let width = 384;
  let height = 384;
  const size = o["size"];
  if (size !== undefined && size !== null) {
    if (typeof size === "number") {
      width = height = size;
    } else if (typeof size === "object" && "height" in size && "width" in size) {
      const s = size as { height: unknown; width: unknown };
      if (typeof s.height !== "number" || typeof s.width !== "number") {
        fail("size", "{height, width}", size);
      }
      width = s.width;
      height = s.height;
    } else {
      fail("size", "{height, width}", size);
    }
  }
  const code = o["resample"] ?? 3;
  const resample = typeof code === "number" ? PIL_FILTER_CODES[code] : undefined;
  if (resample === undefined) {
    fail(
      "resample",
      "a PIL filter code (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)",
      code,
    );
  }
  const factor = o["rescale_factor"] ?? 1 / 255;
  if (typeof factor !== "number") fail("rescale_factor", "a number", factor);
  const std = triple("image_std", OPENAI_CLIP_STD);
  if (std.some((s) => s === 0)) fail("image_std", "non-zero", std);
  return {
    doConvertRgb: bool("do_convert_rgb", true),
    doResize: bool("do_resize", true),
    width,
    height,
    resample,
    doRescale: bool("do_rescale", true),
    rescaleFactor: factor,
    doNormalize: bool("do_normalize", true),
    imageMean: triple("image_mean", OPENAI_CLIP_MEAN),
    imageStd: std,
  };
}

/** `image` as 3-channel RGB, as PIL's `convert("RGB")`: gray replicated, alpha dropped. */
export function toRgb(image: RawImage): RawImage {
  const c = image.channels;
  if (c === 3) return image;
  const n = image.width * image.height;
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) {
      data[i * 3 + k] = image.data[i * c + (c <= 2 ? 0 : k)]!;
    }
  }
  return { width: image.width, height: image.height, channels: 3, data };
}

/**
 * `pixel_values` float32 [images, 3, height, width] for a batch of decoded images, exactly as
 * `BlipImageProcessor.preprocess` computes them. Decode 4-channel images (alpha is dropped, not
 * composited, as PIL's RGB conversion does).
 *
 * @example
 * ```ts
 * import { blipPixelValues, parseBlipImageProcessorConfig } from "./blip_image_processor.ts";
 * const config = parseBlipImageProcessorConfig({ size: { height: 2, width: 2 } });
 * const image = { width: 1, height: 1, channels: 3 as const, data: Uint8Array.of(255, 0, 0) };
 * const pixels = blipPixelValues([image], config);
 * console.assert(pixels.length === 12);
 * ```
 */
export function blipPixelValues(
  images: readonly RawImage[],
  config: BlipImageProcessorConfig,
): Float32Array {
  const { width, height } = config;
  const plane = width * height;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((input, b) => {
    if (!config.doConvertRgb && input.channels !== 3) {
      throw new TypeError(
        `Cannot preprocess image ${b}: it has ${input.channels} channels and the processor ` +
          `does not convert to RGB; pass RGB images`,
      );
    }
    let image = toRgb(input);
    if (config.doResize) image = pilResize(image, width, height, config.resample);
    if (image.width !== width || image.height !== height) {
      throw new RangeError(
        `Cannot preprocess image ${b}: it is ${image.width}x${image.height}, the model needs ` +
          `${width}x${height}; enable do_resize or resize it first`,
      );
    }
    normalizePixels(image, config, out, b * 3 * plane);
  });
  return out;
}

/**
 * Writes an RGB image as channels-first float32 at `out[offset...]`, rescaled and normalised
 * as transformers' `image_transforms.rescale` (x * factor in float64, cast to float32) and
 * `normalize` ((x - mean) / std in float32) compute them.
 */
export function normalizePixels(
  image: RawImage,
  config: Pick<
    BlipImageProcessorConfig,
    "doRescale" | "rescaleFactor" | "doNormalize" | "imageMean" | "imageStd"
  >,
  out: Float32Array,
  offset: number,
): void {
  const plane = image.width * image.height;
  const f = Math.fround;
  const mean = config.imageMean.map(f);
  const std = config.imageStd.map(f);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      let v = image.data[i * 3 + c]!;
      // numpy: uint8 * python float is float64, then astype(float32).
      if (config.doRescale) v = f(v * config.rescaleFactor);
      // float32 arithmetic, as numpy with float32 mean/std arrays.
      if (config.doNormalize) v = f(f(v - mean[c]!) / std[c]!);
      out[offset + c * plane + i] = v;
    }
  }
}
