/**
 * The `softedge` preprocessor: soft edges (white on black, 0..255) for the softedge ControlNets
 * (`control_v11p_sd15_softedge`, the SDXL softedge nets), from HED (`ControlNetHED.pth`, the
 * default) or PiDiNet (`table5_pidinet.pth`); the network is told from the weight file's keys and
 * built by lib/models (hed.ts, pidinet.ts).
 *
 * Steps, as controlnet_aux's `HEDdetector` / `PidiNetDetector` and the A1111 extension's
 * `softedge_hed`, `softedge_hedsafe`, `softedge_pidinet`, `softedge_pidisafe`:
 *
 * 1. The image is edge-padded to multiples of 64 on the right and bottom (the extension's
 *    `resize_image_with_pad`; a no-op at controlnet_aux's detect resolutions, which are
 *    multiples of 64) and cropped back at the end.
 * 2. HED: the RGB pixels as float32 0..255; the five side outputs each resized to the image size
 *    with OpenCV's INTER_LINEAR (lib/image/resize_linear_float.ts), averaged in float32 and passed
 *    through `1 / (1 + exp(-mean))` in float64.
 *    PiDiNet: the pixels in BGR order / 255; the network's fused output (already a sigmoid).
 * 3. `safe`: `safe_step(x, 2)` = `float32(int32(float32(x) * 3)) / 2` (edges quantised to 0,
 *    0.5, 1 and beyond), as `softedge_hedsafe` / `softedge_pidisafe`.
 * 4. `(x * 255).clip(0, 255)` truncated to 8 bits (float64 for HED without safe, float32
 *    otherwise, as numpy does).
 * 5. `scribble`: the fake scribble of the (cropped) map, as `scribble_hed` / `scribble_pidinet`
 *    (lib/preprocess/fake_scribble.ts); controlnet_aux applies it after its final resize, the
 *    extension (and denoise) before.
 * 6. Gray repeated into RGB.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { resizeLinearFloat } from "../image/resize_linear_float.ts";
import { hostTensor } from "../onnx/session.ts";
import {
  annotatorInput,
  cropGray,
  grayToRgb,
  openAnnotator,
  padEdge,
} from "./annotator_session.ts";
import { fakeScribble } from "./fake_scribble.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import type { PreprocessContext, Preprocessor } from "./preprocessor.ts";

/** The option schema of the softedge preprocessor. */
export const SOFTEDGE_OPTIONS: readonly OptionSpec[] = [
  {
    name: "safe",
    type: "boolean",
    default: false,
    description: "quantise the edges as safe_step (the extension's softedge_hedsafe / pidisafe)",
  },
  {
    name: "scribble",
    type: "boolean",
    default: false,
    description: "thin and redraw the edges as strokes (the extension's scribble_hed / pidinet)",
  },
];

/** Options for {@linkcode softedgeControl}. */
export interface SoftedgeOptions {
  /** `safe_step` the edge map (default false). */
  safe?: boolean;
  /** Turn the edges into a fake scribble (default false). */
  scribble?: boolean;
}

/**
 * The annotators' `safe_step(x, step=2)`: `float32(int32(float32(x) * (step + 1))) / step`.
 *
 * @example
 * ```ts
 * import { safeStep } from "./softedge.ts";
 * console.assert([0.2, 0.4, 0.7, 1].map((x) => safeStep(x)).join() === "0,0.5,1,1.5");
 * ```
 */
export function safeStep(x: number, step = 2): number {
  const f = Math.fround;
  return f(Math.trunc(f(f(x) * (step + 1))) / step);
}

/** One side output of HED: a float32 map and its size. */
export interface EdgeMap {
  data: Float32Array;
  width: number;
  height: number;
}

/**
 * HED's fusion: each side output resized to `width` x `height` (INTER_LINEAR), their float32
 * mean, a float64 sigmoid, optionally `safe_step`, times 255, clipped, truncated to 8 bits.
 *
 * @example
 * ```ts
 * import { hedEdges } from "./softedge.ts";
 * const zero = { data: new Float32Array(1), width: 1, height: 1 };
 * console.assert(hedEdges([zero, zero], 2, 2)[0] === 127); // sigmoid(0) = 0.5
 * ```
 */
export function hedEdges(
  sides: readonly EdgeMap[],
  width: number,
  height: number,
  options: { safe?: boolean } = {},
): Uint8Array {
  const f = Math.fround;
  const resized = sides.map((s) => resizeLinearFloat(s.data, s.width, s.height, width, height));
  const out = new Uint8Array(width * height);
  const count = sides.length;
  for (let i = 0; i < out.length; i++) {
    // np.mean(edges, axis=2) on float32: a sequential float32 sum, then / n
    let sum = 0;
    for (const r of resized) sum = f(sum + r[i]!);
    const mean = f(sum / count);
    const edge = 1 / (1 + Math.exp(-mean));
    const v = options.safe ? f(safeStep(edge) * 255) : edge * 255;
    out[i] = Math.trunc(Math.min(255, Math.max(0, v)));
  }
  return out;
}

/**
 * PiDiNet's output to 8 bits: optionally `safe_step`, times 255 in float32, clipped, truncated.
 *
 * @example
 * ```ts
 * import { pidinetEdges } from "./softedge.ts";
 * console.assert(pidinetEdges(Float32Array.of(0, 0.5, 1)).join() === "0,127,255");
 * ```
 */
export function pidinetEdges(edge: Float32Array, options: { safe?: boolean } = {}): Uint8Array {
  const f = Math.fround;
  const out = new Uint8Array(edge.length);
  for (let i = 0; i < edge.length; i++) {
    const e = options.safe ? safeStep(edge[i]!) : edge[i]!;
    out[i] = Math.trunc(Math.min(255, Math.max(0, f(e * 255))));
  }
  return out;
}

/**
 * Soft-edge control image of an image with the HED or PiDiNet weights at `modelPath` (see the
 * module doc); the graph is built once into `context.cacheDir`.
 */
export async function softedgeControl(
  image: RawImage,
  modelPath: string,
  options: SoftedgeOptions = {},
  context: PreprocessContext = {},
): Promise<RgbImage> {
  const o = resolveOptions("softedge", SOFTEDGE_OPTIONS, { ...options });
  const safe = o.safe as boolean;
  const rgb = toRgb(image);
  const padded = padEdge(rgb, 64);
  const accepted = ["hed", "pidinet"] as const;
  const { config, session } = await openAnnotator(modelPath, "softedge", accepted, context);
  let edges: Uint8Array;
  try {
    const { width, height } = padded;
    if (config.architecture === "hed") {
      const input = annotatorInput(padded, { order: "rgb", scale: false });
      const result = await session.run({ image: hostTensor("float32", input.data, input.dims) });
      const sides = config.blocks.map((_, i) => {
        const out = result[`projection${i + 1}`]!;
        const dims = out.dims;
        return {
          data: out.data as Float32Array,
          width: dims[dims.length - 1]!,
          height: dims[dims.length - 2]!,
        };
      });
      edges = hedEdges(sides, width, height, { safe });
    } else {
      const input = annotatorInput(padded, { order: "bgr", scale: true });
      const result = await session.run({ image: hostTensor("float32", input.data, input.dims) });
      edges = pidinetEdges(result["edge"]!.data as Float32Array, { safe });
    }
  } finally {
    await session.release();
  }
  const { width, height } = rgb;
  const map = cropGray(edges, padded.width, width, height);
  return grayToRgb(o.scribble ? fakeScribble(map, width, height) : map, width, width, height);
}

/** The softedge preprocessor for the registry. */
export const softedgePreprocessor: Preprocessor = {
  kind: "softedge",
  summary: "HED (default) or PiDiNet soft edges for the softedge ControlNets",
  reference:
    "controlnet_aux HEDdetector / PidiNetDetector; A1111 softedge_hed(safe), softedge_pidinet(pidisafe), scribble_hed, scribble_pidinet",
  options: SOFTEDGE_OPTIONS,
  model: {
    defaultAlias: "hed",
    files: { softedge: ["ControlNetHED.pth", "table5_pidinet.pth"] },
    format: "weights",
  },
  run: async (image, options, context) => {
    const o = resolveOptions("softedge", SOFTEDGE_OPTIONS, options);
    const path = context?.models?.softedge;
    if (path === undefined) {
      throw new TypeError("softedge: no model file given: pass context.models.softedge");
    }
    return await softedgeControl(image, path, o as SoftedgeOptions, context);
  },
};
