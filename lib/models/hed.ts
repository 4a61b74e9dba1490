/**
 * The soft-edge HED network of ControlNet 1.1 as an ONNX graph: `ControlNetHED_Apache2`, the
 * Apache-2 re-implementation lllyasviel trained for the softedge ControlNets
 * (`lllyasviel/Annotators` `ControlNetHED.pth`), in controlnet_aux `hed/__init__.py` and the
 * A1111 extension's `annotator/hed`. Initializer names are the checkpoint's (`norm`,
 * `block1.convs.0.weight`, `block1.projection.bias`, ...).
 *
 * The network subtracts a learned per-channel shift (`norm`) from the RGB image in 0..255 (no
 * scaling), then runs five `DoubleConvBlock`s: 2x2 max pooling (all but the first), 3x3
 * convolutions each followed by ReLU, and a 1x1 `projection` to one channel. Its five outputs are
 * the projections at 1, 1/2, ..., 1/16 of the input size; the detector resizes them to the image
 * size, averages them and applies a sigmoid (lib/preprocess/softedge.ts).
 *
 * @module
 */
import { WeightsError } from "../errors.ts";
import { GraphBuilder, type OnnxModel, type TensorSource } from "../onnx/graph.ts";
import { collectParameterShapes, conv2d, ModelContext } from "./layers.ts";

/** One `DoubleConvBlock`: `layers` 3x3 convolutions to `channels`, then the projection. */
export interface HedBlock {
  /** Input channels of the first convolution. */
  inChannels: number;
  /** Output channels of every convolution. */
  channels: number;
  /** Number of convolutions (`layer_number`: 2, 2, 3, 3, 3 in `ControlNetHED.pth`). */
  layers: number;
}

/** The shape of a HED network, detected from its weights ({@linkcode detectHedConfig}). */
export interface HedConfig {
  architecture: "hed";
  /** Image channels (3, RGB). */
  inChannels: number;
  /** The blocks in order (`block1` ... `block5`); all but the first max-pool first. */
  blocks: HedBlock[];
}

/**
 * The config of the released `ControlNetHED.pth` (`ControlNetHED_Apache2()`): blocks of 64, 128,
 * 256, 512 and 512 channels with 2, 2, 3, 3 and 3 convolutions.
 *
 * @example
 * ```ts
 * import { controlNetHedConfig } from "./hed.ts";
 * console.assert(controlNetHedConfig().blocks.map((b) => b.channels).join() === "64,128,256,512,512");
 * ```
 */
export function controlNetHedConfig(): HedConfig {
  const channels = [64, 128, 256, 512, 512];
  const layers = [2, 2, 3, 3, 3];
  return {
    architecture: "hed",
    inChannels: 3,
    blocks: channels.map((c, i) => ({
      inChannels: i === 0 ? 3 : channels[i - 1]!,
      channels: c,
      layers: layers[i]!,
    })),
  };
}

/**
 * The HED config a state dict describes, from its key names and shapes: `blockN.convs.K.weight`
 * give each block's channels and convolution count. Throws a WeightsError (a TypeError, exit 3) naming what does not fit.
 *
 * @example
 * ```ts
 * import { detectHedConfig } from "./hed.ts";
 * const shapes = new Map([
 *   ["norm", [1, 3, 1, 1]],
 *   ["block1.convs.0.weight", [4, 3, 3, 3]],
 *   ["block1.convs.1.weight", [4, 4, 3, 3]],
 *   ["block1.projection.weight", [1, 4, 1, 1]],
 * ]);
 * console.assert(detectHedConfig(shapes).blocks[0]!.layers === 2);
 * ```
 */
export function detectHedConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: { source?: string } = {},
): HedConfig {
  const where = options.source === undefined ? "the weights" : `"${options.source}"`;
  const norm = shapes.get("norm");
  if (norm === undefined || norm.length !== 4 || norm[0] !== 1 || norm[2] !== 1 || norm[3] !== 1) {
    throw new WeightsError(
      `Cannot read ${where} as ControlNetHED: "norm" is ${
        norm === undefined ? "missing" : `[${norm}]`
      }, expected [1, C, 1, 1]`,
    );
  }
  const blocks: HedBlock[] = [];
  let previous = norm[1]!;
  for (let b = 1; shapes.has(`block${b}.convs.0.weight`); b++) {
    let layers = 0;
    while (shapes.has(`block${b}.convs.${layers}.weight`)) layers++;
    const first = shapes.get(`block${b}.convs.0.weight`)!;
    if (first.length !== 4 || first[1] !== previous) {
      throw new WeightsError(
        `Cannot read ${where} as ControlNetHED: "block${b}.convs.0.weight" is [${first}], expected [C, ${previous}, 3, 3]`,
      );
    }
    blocks.push({ inChannels: previous, channels: first[0]!, layers });
    previous = first[0]!;
  }
  if (blocks.length === 0) {
    throw new WeightsError(
      `Cannot read ${where} as ControlNetHED: it has no "block1.convs.0.weight"`,
    );
  }
  return { architecture: "hed", inChannels: norm[1]!, blocks };
}

/** Options of {@linkcode buildHed}. */
export interface HedBuildOptions {
  /** Names the weights in error messages, e.g. the file path. */
  source?: string;
}

/**
 * Builds `ControlNetHED_Apache2`: `image` [B, 3, H, W] (RGB, 0..255 as float32) ->
 * `projection1` ... `projectionN` [B, 1, H / 2^k, W / 2^k] (max pooling floors odd sizes).
 * Missing, misshapen and unused weights are reported together.
 *
 * @example
 * ```ts
 * import { buildHed, hedParameterShapes, type HedConfig } from "./hed.ts";
 * import { memoryWeights } from "./layers.ts";
 * import { randomWeights } from "./random.ts";
 * const config: HedConfig = {
 *   architecture: "hed",
 *   inChannels: 3,
 *   blocks: [{ inChannels: 3, channels: 4, layers: 2 }, { inChannels: 4, channels: 8, layers: 1 }],
 * };
 * const model = buildHed(config, memoryWeights(randomWeights(hedParameterShapes(config), 0)));
 * console.assert(model.proto.graph.output.length === 2);
 * ```
 */
export function buildHed(
  config: HedConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: HedBuildOptions = {},
): OnnxModel {
  const what = `ControlNetHED${options.source === undefined ? "" : ` from "${options.source}"`}`;
  const g = new GraphBuilder("ControlNetHED");
  const c = new ModelContext(g, what, weights);
  const image = g.input("image", "float32", ["batch", config.inChannels, "height", "width"]);
  // h = x - self.norm: [B, 3, H, W] - [1, 3, 1, 1]
  let h = g.op("Sub", [image, c.param("norm", [1, config.inChannels, 1, 1])]);
  config.blocks.forEach((block, i) => {
    const name = `block${i + 1}`;
    if (i > 0) {
      // max_pool2d(kernel_size=2, stride=2): [B, C, H, W] -> [B, C, H / 2, W / 2] (floor)
      h = g.scope(name, () => g.op("MaxPool", [h], { kernel_shape: [2, 2], strides: [2, 2] }));
    }
    for (let k = 0; k < block.layers; k++) {
      const inChannels = k === 0 ? block.inChannels : block.channels;
      const conv = conv2d(c, `${name}.convs.${k}`, h, inChannels, block.channels);
      h = g.scope(name, () => g.op("Relu", [conv]));
    }
    // [B, C, h, w] -> [B, 1, h, w]
    const projection = conv2d(c, `${name}.projection`, h, block.channels, 1, { kernel: 1 });
    g.output(projection, `projection${i + 1}`, "float32", ["batch", 1, `h${i + 1}`, `w${i + 1}`]);
  });
  c.finish();
  return g.build({ metadata: { architecture: "hed", config: JSON.stringify(config) } });
}

/**
 * Names and shapes of the weights {@linkcode buildHed} reads for `config` (the checkpoint's
 * names; used to make random models).
 *
 * @example
 * ```ts
 * import { controlNetHedConfig, hedParameterShapes } from "./hed.ts";
 * const shapes = hedParameterShapes(controlNetHedConfig());
 * console.assert(shapes.get("block5.convs.2.weight")?.join() === "512,512,3,3");
 * console.assert(shapes.size === 1 + 2 * (13 + 5));
 * ```
 */
export function hedParameterShapes(config: HedConfig): Map<string, number[]> {
  return collectParameterShapes(() => buildHed(config, new Map()));
}

/** The output names of {@linkcode buildHed} for `config`, shallowest first. */
export function hedOutputNames(config: HedConfig): string[] {
  return config.blocks.map((_, i) => `projection${i + 1}`);
}
