/**
 * Running a ControlNet annotator network that is built from its weights (`ControlNetHED.pth`,
 * `table5_pidinet.pth`, `sk_model.pth`): the file's network and config are detected from its key
 * names and shapes (lib/models/annotator_load.ts), the graph is built once through the component
 * engine (lib/model_io/engine.ts: cached under `<cacheDir>/graphs/`, keyed by the file's
 * identity), and the image is padded the way the A1111 extension pads before every annotator.
 *
 * @module
 */
import { WeightsError } from "../errors.ts";
import type { RgbImage } from "../image/gray.ts";
import { openComponent } from "../model_io/engine.ts";
import {
  ANNOTATOR_NAMES,
  type AnnotatorArchitecture,
  type AnnotatorConfig,
  buildAnnotator,
  loadAnnotatorWeights,
  probeAnnotatorConfig,
} from "../models/annotator_load.ts";
import type { OnnxSession } from "../onnx/session.ts";
import type { PreprocessContext } from "./preprocessor.ts";

/** An opened annotator: its detected config and a session on its graph. */
export interface AnnotatorSession {
  config: AnnotatorConfig;
  session: OnnxSession;
}

/**
 * Opens the annotator network in `path` for the preprocessor `kind`, which accepts the
 * architectures `accepted`. Needs `context.cacheDir` (where built graphs are kept). Throws a
 * WeightsError (exit 3) when the file holds another network (naming both).
 *
 * @example
 * ```ts ignore
 * const { config, session } = await openAnnotator("ControlNetHED.pth", "softedge", ["hed", "pidinet"], {
 *   cacheDir: "/tmp/denoise-cache",
 * });
 * ```
 */
export async function openAnnotator(
  path: string,
  kind: string,
  accepted: readonly AnnotatorArchitecture[],
  context: PreprocessContext,
): Promise<AnnotatorSession> {
  if (context.cacheDir === undefined) {
    throw new TypeError(`${kind}: no cache folder given: pass context.cacheDir`);
  }
  const config = await probeAnnotatorConfig(path);
  if (!accepted.includes(config.architecture)) {
    const other = config.architecture === "lineart" ? "lineart" : "softedge";
    throw new WeightsError(
      `${kind}: "${path}" holds ${ANNOTATOR_NAMES[config.architecture]}, not ${
        accepted.map((a) => ANNOTATOR_NAMES[a]).join(" or ")
      }`,
      { hint: `"denoise preprocess ${other}" runs it; see --help for ${kind}'s model` },
    );
  }
  const session = await openComponent({
    kind: config.architecture,
    weights: path,
    config,
    sources: async () => {
      const loaded = await loadAnnotatorWeights(path);
      return { sources: loaded.weights, close: () => {} };
    },
    build: (sources) => buildAnnotator(config, sources, { source: path }),
  }, {
    cacheDir: context.cacheDir,
    ...(context.session?.threads !== undefined ? { threads: context.session.threads } : {}),
    executionProvider: context.session?.executionProvider ?? "cpu",
  });
  return { config, session };
}

/**
 * The A1111 extension's padding before an annotator (`resize_image_with_pad`'s `np.pad(...,
 * mode="edge")`): the image grown on the right and at the bottom to multiples of `multiple` by
 * repeating its last column and row. Returns the image itself when nothing is added.
 *
 * @example
 * ```ts
 * import { padEdge } from "./annotator_session.ts";
 * const image = { width: 2, height: 1, channels: 3 as const, data: Uint8Array.of(1, 1, 1, 9, 9, 9) };
 * const padded = padEdge(image, 4);
 * console.assert(padded.width === 4 && padded.height === 4 && padded.data[45] === 9);
 * ```
 */
export function padEdge(image: RgbImage, multiple = 64): RgbImage {
  const width = Math.ceil(image.width / multiple) * multiple;
  const height = Math.ceil(image.height / multiple) * multiple;
  if (width === image.width && height === image.height) return image;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(y, image.height - 1);
    const row = y * width * 3;
    data.set(image.data.subarray(sy * image.width * 3, (sy + 1) * image.width * 3), row);
    const last = image.data.subarray(
      (sy * image.width + image.width - 1) * 3,
      (sy + 1) * image.width * 3,
    );
    for (let x = image.width; x < width; x++) data.set(last, row + x * 3);
  }
  return { width, height, channels: 3, data };
}

/**
 * An image as the float32 [1, 3, H, W] input of an annotator: channel `order` (RGB, or BGR for
 * PiDiNet), each value `v` or `v / 255` (float32 division, as torch's `tensor / 255.0`).
 *
 * @example
 * ```ts
 * import { annotatorInput } from "./annotator_session.ts";
 * const image = { width: 1, height: 1, channels: 3 as const, data: Uint8Array.of(255, 0, 51) };
 * console.assert(annotatorInput(image, { order: "bgr", scale: true }).data.join() === "0.20000000298023224,0,1");
 * ```
 */
export function annotatorInput(
  image: RgbImage,
  options: { order?: "rgb" | "bgr"; scale?: boolean } = {},
): { data: Float32Array; dims: [number, number, number, number] } {
  const plane = image.width * image.height;
  const data = new Float32Array(3 * plane);
  const bgr = options.order === "bgr";
  for (let c = 0; c < 3; c++) {
    const source = bgr ? 2 - c : c;
    for (let i = 0; i < plane; i++) {
      const v = image.data[i * 3 + source]!;
      data[c * plane + i] = options.scale ? v / 255 : v;
    }
  }
  return { data, dims: [1, 3, image.height, image.width] };
}

/** The top-left `width` x `height` of a gray map (one byte per pixel) `grayWidth` wide. */
export function cropGray(
  gray: Uint8Array,
  grayWidth: number,
  width: number,
  height: number,
): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    out.set(gray.subarray(y * grayWidth, y * grayWidth + width), y * width);
  }
  return out;
}

/** A gray map (one byte per pixel) cropped to `width` x `height` and repeated into RGB. */
export function grayToRgb(
  gray: Uint8Array,
  grayWidth: number,
  width: number,
  height: number,
): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      data.fill(gray[y * grayWidth + x]!, (y * width + x) * 3, (y * width + x) * 3 + 3);
    }
  }
  return { width, height, channels: 3, data };
}
