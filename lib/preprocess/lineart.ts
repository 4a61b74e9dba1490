/**
 * The `lineart` preprocessor: line art (white lines on black) for the lineart ControlNets
 * (`control_v11p_sd15_lineart`), from the "Informative Drawings" generator that
 * `lllyasviel/Annotators` ships as `sk_model.pth` (fine lines) and `sk_model2.pth` (`coarse`),
 * built by lib/models/lineart_generator.ts.
 *
 * Steps, as controlnet_aux's `LineartDetector` and the A1111 extension's `lineart_realistic` /
 * `lineart_coarse`:
 *
 * 1. The image is edge-padded to multiples of 64 on the right and bottom (the extension's
 *    `resize_image_with_pad`; a no-op at controlnet_aux's detect resolutions) and cropped back at
 *    the end; the generator needs sides divisible by 4.
 * 2. RGB / 255 in float32; the generator (sigmoid output, paper white near 1).
 * 3. `(line * 255).clip(0, 255)` in float32, truncated to 8 bits, then `255 - x` (the extension's
 *    "auto inversion"; controlnet_aux inverts after its final resize, which gives the same bytes
 *    unless a resize rounds a tie), repeated into RGB.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { hostTensor } from "../onnx/session.ts";
import { annotatorInput, grayToRgb, openAnnotator, padEdge } from "./annotator_session.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import type { PreprocessContext, Preprocessor } from "./preprocessor.ts";

/** The option schema of the lineart preprocessor. */
export const LINEART_OPTIONS: readonly OptionSpec[] = [
  {
    name: "coarse",
    type: "boolean",
    default: false,
    description: "use the coarse-line model (sk_model2.pth, the extension's lineart_coarse)",
  },
];

/**
 * The generator's output to the control image's 8 bits: `255 - trunc(clip(float32(x * 255)))`.
 *
 * @example
 * ```ts
 * import { invertedLine } from "./lineart.ts";
 * console.assert(invertedLine(Float32Array.of(1, 0.5, 0)).join() === "0,128,255");
 * ```
 */
export function invertedLine(line: Float32Array): Uint8Array {
  const out = new Uint8Array(line.length);
  for (let i = 0; i < line.length; i++) {
    const v = Math.trunc(Math.min(255, Math.max(0, Math.fround(line[i]! * 255))));
    out[i] = 255 - v;
  }
  return out;
}

/**
 * Line-art control image of an image with the generator weights at `modelPath` (see the module
 * doc); the graph is built once into `context.cacheDir`.
 */
export async function lineartControl(
  image: RawImage,
  modelPath: string,
  context: PreprocessContext = {},
): Promise<RgbImage> {
  const rgb = toRgb(image);
  const padded = padEdge(rgb, 64);
  const { session } = await openAnnotator(modelPath, "lineart", ["lineart"], context);
  try {
    const input = annotatorInput(padded, { order: "rgb", scale: true });
    const result = await session.run({ image: hostTensor("float32", input.data, input.dims) });
    const line = result["line"]!;
    const dims = line.dims;
    if (dims[dims.length - 1] !== padded.width || dims[dims.length - 2] !== padded.height) {
      throw new TypeError(
        `lineart: the generator returned [${dims}] for a ${padded.width}x${padded.height} input, expected the same size`,
      );
    }
    return grayToRgb(
      invertedLine((line.data as Float32Array).subarray(0, padded.width * padded.height)),
      padded.width,
      rgb.width,
      rgb.height,
    );
  } finally {
    await session.release();
  }
}

/** The lineart preprocessor for the registry. */
export const lineartPreprocessor: Preprocessor = {
  kind: "lineart",
  summary:
    "line art from the Informative Drawings generator (sk_model.pth; --coarse sk_model2.pth)",
  reference: "controlnet_aux LineartDetector, A1111 lineart_realistic / lineart_coarse",
  options: LINEART_OPTIONS,
  model: {
    defaultAlias: "lineart",
    files: { fine: ["sk_model.pth"], coarse: ["sk_model2.pth"] },
    format: "weights",
    roles: (options) => [options.coarse === true ? "coarse" : "fine"],
  },
  run: async (image, options, context) => {
    const o = resolveOptions("lineart", LINEART_OPTIONS, options);
    const role = o.coarse ? "coarse" : "fine";
    const path = context?.models?.[role];
    if (path === undefined) {
      throw new TypeError(`lineart: no model file given: pass context.models.${role}`);
    }
    return await lineartControl(image, path, context ?? {});
  },
};
