/**
 * The `depth` preprocessor: a Depth Anything relative depth map (near is white) for the depth
 * ControlNets (`control_v11f1p_sd15_depth`, `controlnet-depth-sdxl-1.0`), from the published ONNX
 * export (`onnx-community/depth-anything-v2-small`: input `pixel_values` [B, 3, H, W] float32,
 * output `predicted_depth` [B, H, W] float32), as transformers' `depth-estimation` pipeline
 * (the one the Diffusers ControlNet docs use) makes it:
 *
 * 1. `DPTImageProcessor` with the Depth Anything config (size 518x518, `keep_aspect_ratio`,
 *    `ensure_multiple_of=14`, bicubic): scale both sides by whichever of 518/H and 518/W is
 *    closer to 1, round each side to a multiple of 14 (Python's round), resize with PIL's
 *    bicubic filter, then `x / 255` and ImageNet mean/std in float32;
 * 2. run the model;
 * 3. `post_process_depth_estimation`: bicubic interpolation (align_corners=False) back to the
 *    image size;
 * 4. the pipeline's `depth`: `(d - min) / (max - min) * 255`, truncated to 8 bits (float32).
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { pilResize } from "../image/pil_resample.ts";
import { interpolateBicubic } from "../image/torch_bicubic.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import type { PreprocessContext, Preprocessor } from "./preprocessor.ts";

/** ImageNet mean and standard deviation (the Depth Anything processor config). */
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** The option schema of the depth preprocessor. */
export const DEPTH_OPTIONS: readonly OptionSpec[] = [
  {
    name: "size",
    type: "integer",
    default: 518,
    min: 14,
    max: 4096,
    description:
      "the processor's target size (518 as Depth Anything's config); sides stay multiples of 14",
  },
];

/**
 * transformers' DPT `get_resize_output_image_size` with `keep_aspect_ratio` and
 * `ensure_multiple_of`: the [height, width] the image is resized to before the model.
 *
 * @example
 * ```ts
 * import { depthInputSize } from "./depth.ts";
 * // transformers' own test: 489x640 with size 512 and multiple 32 gives 512x672.
 * console.assert(depthInputSize(489, 640, 512, 32).join() === "512,672");
 * console.assert(depthInputSize(480, 640, 518, 14).join() === "518,686");
 * ```
 */
export function depthInputSize(
  height: number,
  width: number,
  size: number,
  multiple: number,
): [number, number] {
  let scaleHeight = size / height;
  let scaleWidth = size / width;
  // Scale as little as possible.
  if (Math.abs(1 - scaleWidth) < Math.abs(1 - scaleHeight)) scaleHeight = scaleWidth;
  else scaleWidth = scaleHeight;
  const constrain = (v: number) => pythonRound(v / multiple) * multiple;
  return [constrain(scaleHeight * height), constrain(scaleWidth * width)];
}

/** Python's round(): to the nearest integer, ties to even. */
function pythonRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The model input: the image resized per {@linkcode depthInputSize}, as float32 [1, 3, H, W]
 * normalised with ImageNet's mean and standard deviation.
 */
export function depthPixelValues(
  image: RgbImage,
  size = 518,
): { data: Float32Array; dims: [number, number, number, number] } {
  const [h, w] = depthInputSize(image.height, image.width, size, 14);
  if (h < 14 || w < 14) {
    throw new RangeError(
      `depth: a ${image.width}x${image.height} image is too small for the model: use one at least 14 pixels on each side once scaled`,
    );
  }
  const resized = pilResize(image, w, h, "bicubic");
  const f = Math.fround;
  const plane = w * h;
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const mean = f(MEAN[c]!);
    const std = f(STD[c]!);
    for (let i = 0; i < plane; i++) {
      const x = f(resized.data[i * 3 + c]! * (1 / 255));
      data[c * plane + i] = f(f(x - mean) / std);
    }
  }
  return { data, dims: [1, 3, h, w] };
}

/**
 * A predicted depth map (float32, `width` x `height`) brought to the image size and scaled to
 * 0..255 as the depth-estimation pipeline does, repeated into R, G and B.
 */
export function depthToImage(
  depth: Float32Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): RgbImage {
  const f = Math.fround;
  const resized = interpolateBicubic(depth, width, height, outWidth, outHeight);
  let min = Infinity;
  let max = -Infinity;
  for (const v of resized) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = f(max - min);
  const out = new Uint8Array(outWidth * outHeight * 3);
  for (let i = 0; i < resized.length; i++) {
    // A flat map divides 0 by 0 in numpy (NaN, cast to 0); it is written as black.
    const v = range > 0 ? f(f(f(resized[i]! - min) / range) * 255) : 0;
    out.fill(Math.trunc(v), i * 3, i * 3 + 3);
  }
  return { width: outWidth, height: outHeight, channels: 3, data: out };
}

/**
 * Depth control image of an image with a Depth Anything ONNX model at `modelPath` (see the
 * module doc).
 */
export async function depthControl(
  image: RawImage,
  modelPath: string,
  options: { size?: number } = {},
  context: PreprocessContext = {},
): Promise<RgbImage> {
  const o = resolveOptions("depth", DEPTH_OPTIONS, { ...options });
  const rgb = toRgb(image);
  const input = depthPixelValues(rgb, o.size as number);
  const session = await createSession(modelPath, context.session ?? {});
  try {
    const name = session.inputNames[0]!;
    const result = await session.run({ [name]: hostTensor("float32", input.data, input.dims) });
    const out = result["predicted_depth"] ?? result[session.outputNames[0]!]!;
    const dims = out.dims;
    const h = dims[dims.length - 2]!;
    const w = dims[dims.length - 1]!;
    if (out.type !== "float32" || dims.length < 2 || out.data.length !== w * h) {
      throw new TypeError(
        `depth: the model returned ${out.type} [${dims}], expected float32 [1, H, W] (predicted_depth)`,
      );
    }
    return depthToImage(out.data as Float32Array, w, h, rgb.width, rgb.height);
  } finally {
    await session.release();
  }
}

/** The depth preprocessor for the registry. */
export const depthPreprocessor: Preprocessor = {
  kind: "depth",
  summary: "Depth Anything depth map (near is white) for the depth ControlNets",
  reference:
    "transformers depth-estimation pipeline with DPTImageProcessor (Depth Anything config: 518, multiple of 14, bicubic)",
  options: DEPTH_OPTIONS,
  model: {
    defaultAlias: "depth-anything-v2-small",
    files: { depth: ["model.onnx", "depth_anything_v2_vits.onnx"] },
  },
  run: async (image, options, context) => {
    const o = resolveOptions("depth", DEPTH_OPTIONS, options);
    const path = context?.models?.depth;
    if (path === undefined) {
      throw new TypeError("depth: no model file given: pass context.models.depth");
    }
    return await depthControl(image, path, o as { size: number }, context);
  },
};
