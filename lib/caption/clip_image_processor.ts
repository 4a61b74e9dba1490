/**
 * transformers 4.30 `CLIPImageProcessor` (models/clip/image_processing_clip.py), which
 * Florence-2 (768x768, no crop, ImageNet mean/std) and LLaVA-1.5 (shortest edge 336, centre
 * crop 336, CLIP mean/std) ship in their preprocessor_config.json: RGB conversion, a resize with
 * PIL's filters to `size` — `{height, width}` exactly, or `{shortest_edge}` keeping the aspect
 * ratio (`get_resize_output_image_size(..., default_to_square=False)`: the short side becomes
 * `shortest_edge`, the long side `int(shortest_edge * long / short)`) — then a centre crop to
 * `crop_size` (`image_transforms.center_crop`: top `(h - ch) // 2`, left `(w - cw) // 2`), then
 * rescale and normalise exactly as {@linkcode blipPixelValues} does.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { pilResize } from "../image/pil_resample.ts";
import {
  type BlipImageProcessorConfig,
  normalizePixels,
  OPENAI_CLIP_MEAN,
  OPENAI_CLIP_STD,
  parseBlipImageProcessorConfig,
  toRgb,
} from "./blip_image_processor.ts";

/** A parsed `CLIPImageProcessor` preprocessor_config.json. */
export interface ClipImageProcessorConfig extends BlipImageProcessorConfig {
  /** Resize so the short side has this length (aspect kept), instead of to width x height. */
  shortestEdge: number | null;
  /** Centre crop after the resize, or null (`do_center_crop: false`). */
  crop: { width: number; height: number } | null;
  /** Size of the processed image: the crop, else the resize target. */
  outputWidth: number;
  /** See {@linkcode ClipImageProcessorConfig.outputWidth}. */
  outputHeight: number;
}

type Json = Record<string, unknown>;

function fail(key: string, want: string, got: unknown): never {
  throw new RangeError(
    `Cannot use preprocessor_config.json: "${key}" must be ${want}, got ${JSON.stringify(got)}`,
  );
}

function positive(key: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) fail(key, "an integer >= 1", v);
  return v;
}

function sizeOf(key: string, v: unknown): { width: number; height: number } {
  if (typeof v === "number") return { width: positive(key, v), height: v };
  if (typeof v === "object" && v !== null && "height" in v && "width" in v) {
    const s = v as Json;
    return { width: positive(key, s["width"]), height: positive(key, s["height"]) };
  }
  return fail(key, "{height, width} or a number", v);
}

/**
 * Parses a `CLIPImageProcessor` preprocessor_config.json (defaults of transformers 4.30: shortest
 * edge 224, centre crop 224, bicubic, 1/255, CLIP mean/std, RGB conversion).
 *
 * @example
 * ```ts
 * import { parseClipImageProcessorConfig } from "./clip_image_processor.ts";
 * const florence = parseClipImageProcessorConfig({
 *   size: { height: 768, width: 768 }, do_center_crop: false, resample: 3,
 * });
 * console.assert(florence.outputWidth === 768 && florence.crop === null);
 * const llava = parseClipImageProcessorConfig({ size: { shortest_edge: 336 }, crop_size: 336 });
 * console.assert(llava.shortestEdge === 336 && llava.outputHeight === 336);
 * ```
 */
export function parseClipImageProcessorConfig(json: unknown): ClipImageProcessorConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError("Cannot use preprocessor_config.json: expected a JSON object");
  }
  const o = json as Json;
  const size = o["size"] ?? { shortest_edge: 224 };
  let shortestEdge: number | null = null;
  let resizeTo = { width: 224, height: 224 };
  if (typeof size === "object" && size !== null && "shortest_edge" in size) {
    shortestEdge = positive("size.shortest_edge", (size as Json)["shortest_edge"]);
    resizeTo = { width: shortestEdge, height: shortestEdge };
  } else {
    resizeTo = sizeOf("size", size);
  }
  const doCrop = o["do_center_crop"] ?? true;
  if (typeof doCrop !== "boolean") fail("do_center_crop", "true or false", doCrop);
  const crop = doCrop ? sizeOf("crop_size", o["crop_size"] ?? 224) : null;
  if (shortestEdge !== null && crop === null) {
    throw new RangeError(
      "Cannot use preprocessor_config.json: resizing to a shortest edge without a centre crop " +
        "gives images of different sizes, which cannot be batched; set do_center_crop",
    );
  }
  const base = parseBlipImageProcessorConfig({
    ...o,
    size: { height: resizeTo.height, width: resizeTo.width },
    image_mean: o["image_mean"] ?? OPENAI_CLIP_MEAN,
    image_std: o["image_std"] ?? OPENAI_CLIP_STD,
  });
  return {
    ...base,
    shortestEdge,
    crop,
    outputWidth: crop?.width ?? resizeTo.width,
    outputHeight: crop?.height ?? resizeTo.height,
  };
}

/** `(height, width)` of `get_resize_output_image_size(image, edge, default_to_square=False)`. */
export function shortestEdgeSize(
  width: number,
  height: number,
  edge: number,
): { width: number; height: number } {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc(edge * long / short);
  return width <= height ? { width: edge, height: newLong } : { width: newLong, height: edge };
}

/** The centre `width` x `height` of `image`, as `image_transforms.center_crop` takes it. */
export function centerCrop(image: RawImage, width: number, height: number): RawImage {
  const top = Math.floor((image.height - height) / 2);
  const left = Math.floor((image.width - width) / 2);
  if (top < 0 || left < 0) {
    throw new RangeError(
      `Cannot centre-crop a ${image.width}x${image.height} image to ${width}x${height}: it is ` +
        `smaller (padding is not supported); fix crop_size in preprocessor_config.json`,
    );
  }
  const c = image.channels;
  const data = new Uint8Array(width * height * c);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * image.width + left) * c;
    data.set(image.data.subarray(from, from + width * c), y * width * c);
  }
  return { width, height, channels: image.channels, data };
}

/**
 * `pixel_values` float32 [images, 3, outputHeight, outputWidth] as `CLIPImageProcessor`
 * computes them. Decode 4-channel images (alpha is dropped, as PIL's RGB conversion does).
 *
 * @example
 * ```ts
 * import { clipPixelValues, parseClipImageProcessorConfig } from "./clip_image_processor.ts";
 * const config = parseClipImageProcessorConfig({ size: { shortest_edge: 2 }, crop_size: 2 });
 * const image = { width: 4, height: 2, channels: 3 as const, data: new Uint8Array(24) };
 * console.assert(clipPixelValues([image], config).length === 12);
 * ```
 */
export function clipPixelValues(
  images: readonly RawImage[],
  config: ClipImageProcessorConfig,
): Float32Array {
  const plane = config.outputWidth * config.outputHeight;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((input, b) => {
    if (!config.doConvertRgb && input.channels !== 3) {
      throw new TypeError(
        `Cannot preprocess image ${b}: it has ${input.channels} channels and the processor ` +
          `does not convert to RGB; pass RGB images`,
      );
    }
    let image = toRgb(input);
    if (config.doResize) {
      const to = config.shortestEdge !== null
        ? shortestEdgeSize(image.width, image.height, config.shortestEdge)
        : { width: config.width, height: config.height };
      image = pilResize(image, to.width, to.height, config.resample);
    }
    if (config.crop !== null) image = centerCrop(image, config.crop.width, config.crop.height);
    if (image.width !== config.outputWidth || image.height !== config.outputHeight) {
      throw new RangeError(
        `Cannot preprocess image ${b}: it is ${image.width}x${image.height}, the model needs ` +
          `${config.outputWidth}x${config.outputHeight}; enable do_resize or resize it first`,
      );
    }
    normalizePixels(image, config, out, b * 3 * plane);
  });
  return out;
}
