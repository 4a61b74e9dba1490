/**
 * The line-art network of ControlNet 1.1 as an ONNX graph: the `Generator` of "Learning to
 * Generate Line Drawings that Convey Geometry and Semantics" (Chan et al., CVPR 2022, "Informative
 * Drawings"), which lllyasviel ships as `sk_model.pth` (fine lines) and `sk_model2.pth` (coarse
 * lines) in `lllyasviel/Annotators`, used by controlnet_aux `lineart/__init__.py`
 * (`Generator(3, 1, 3)`) and the A1111 extension's `annotator/lineart`. Initializer names are the
 * checkpoint's (`model0.1.weight`, `model2.0.conv_block.5.bias`, `model3.0.weight`, ...).
 *
 * Structure (`nn.Sequential` indices give the key names; InstanceNorm2d has no affine weights):
 *
 * - `model0`: ReflectionPad2d(3), Conv2d(in, nf, 7), InstanceNorm2d, ReLU;
 * - `model1`: per downsampling, Conv2d(k 3, stride 2, padding 1) doubling the channels,
 *   InstanceNorm2d, ReLU (indices 0, 3, ...);
 * - `model2`: residual blocks `x + [ReflectionPad2d(1), Conv2d 3x3, InstanceNorm2d, ReLU,
 *   ReflectionPad2d(1), Conv2d 3x3, InstanceNorm2d](x)` (convs at `conv_block.1` and `.5`);
 * - `model3`: per upsampling, ConvTranspose2d(k 3, stride 2, padding 1, output_padding 1) halving
 *   the channels, InstanceNorm2d, ReLU;
 * - `model4`: ReflectionPad2d(3), Conv2d(nf, out, 7), Sigmoid.
 *
 * Input: RGB / 255 as float32 [B, 3, H, W]; output `line` [B, 1, H', W'] in (0, 1), white paper
 * near 1. With H and W multiples of 2^downsamples, H' = H and W' = W.
 *
 * @module
 */
import { WeightsError } from "../errors.ts";
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import { collectParameterShapes, conv2d, ModelContext } from "./layers.ts";

/** The shape of a line-art generator, detected from its weights. */
export interface LineartConfig {
  architecture: "lineart";
  /** `input_nc` (3). */
  inChannels: number;
  /** `output_nc` (1). */
  outChannels: number;
  /** Channels after `model0` (64 in the released files). */
  features: number;
  /** Stride-2 convolutions in `model1`, matched by as many transposed ones in `model3` (2). */
  downsamples: number;
  /** `n_residual_blocks` (3 in `Generator(3, 1, 3)`). */
  residualBlocks: number;
}

/**
 * The config of `sk_model.pth` and `sk_model2.pth`: `Generator(3, 1, 3)`.
 *
 * @example
 * ```ts
 * import { annotatorLineartConfig } from "./lineart_generator.ts";
 * console.assert(annotatorLineartConfig().residualBlocks === 3);
 * ```
 */
export function annotatorLineartConfig(): LineartConfig {
  return {
    architecture: "lineart",
    inChannels: 3,
    outChannels: 1,
    features: 64,
    downsamples: 2,
    residualBlocks: 3,
  };
}

/**
 * The generator config a state dict describes, from its key names and shapes. Throws a
 * TypeError naming what does not fit.
 *
 * @example
 * ```ts
 * import { annotatorLineartConfig, detectLineartConfig, lineartParameterShapes } from "./lineart_generator.ts";
 * const shapes = lineartParameterShapes(annotatorLineartConfig());
 * console.assert(detectLineartConfig(shapes).features === 64);
 * ```
 */
export function detectLineartConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: { source?: string } = {},
): LineartConfig {
  const where = options.source === undefined ? "the weights" : `"${options.source}"`;
  const first = shapes.get("model0.1.weight");
  const last = shapes.get("model4.1.weight");
  if (first === undefined || first.length !== 4 || last === undefined || last.length !== 4) {
    throw new WeightsError(
      `Cannot read ${where} as a line-art generator: "model0.1.weight" and "model4.1.weight" must be 4-D conv weights`,
    );
  }
  let downsamples = 0;
  while (shapes.has(`model1.${3 * downsamples}.weight`)) downsamples++;
  let residualBlocks = 0;
  while (shapes.has(`model2.${residualBlocks}.conv_block.1.weight`)) residualBlocks++;
  return {
    architecture: "lineart",
    inChannels: first[1]!,
    outChannels: last[0]!,
    features: first[0]!,
    downsamples,
    residualBlocks,
  };
}

/** Options of {@linkcode buildLineartGenerator}. */
export interface LineartBuildOptions {
  /** Names the weights in error messages, e.g. the file path. */
  source?: string;
}

/**
 * Builds the generator: `image` [B, 3, H, W] (RGB / 255) -> `line` [B, 1, H, W] (sigmoid).
 * Missing, misshapen and unused weights are reported together.
 *
 * @example
 * ```ts
 * import { buildLineartGenerator, lineartParameterShapes, type LineartConfig } from "./lineart_generator.ts";
 * import { memoryWeights } from "./layers.ts";
 * import { randomWeights } from "./random.ts";
 * const config: LineartConfig = {
 *   architecture: "lineart", inChannels: 3, outChannels: 1, features: 4, downsamples: 2, residualBlocks: 1,
 * };
 * const model = buildLineartGenerator(config, memoryWeights(randomWeights(lineartParameterShapes(config), 0)));
 * console.assert(model.proto.graph.output[0]!.name === "line");
 * ```
 */
export function buildLineartGenerator(
  config: LineartConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: LineartBuildOptions = {},
): OnnxModel {
  const what = `line-art Generator${
    options.source === undefined ? "" : ` from "${options.source}"`
  }`;
  const g = new GraphBuilder("LineartGenerator");
  const c = new ModelContext(g, what, weights);
  const image = g.input("image", "float32", ["batch", config.inChannels, "height", "width"]);
  const nf = config.features;

  // model0: [B, 3, H, W] -> [B, nf, H, W]
  let h = g.scope("model0", () => reflectPad(g, image, 3));
  h = conv2d(c, "model0.1", h, config.inChannels, nf, { kernel: 7, padding: 0 });
  h = g.scope("model0", () => g.op("Relu", [instanceNorm(g, h, nf)]));

  // model1: [B, nf, H, W] -> [B, nf * 2^d, H / 2^d, W / 2^d]
  let channels = nf;
  for (let d = 0; d < config.downsamples; d++) {
    h = conv2d(c, `model1.${3 * d}`, h, channels, channels * 2, { stride: 2, padding: 1 });
    channels *= 2;
    h = g.scope("model1", () => g.op("Relu", [instanceNorm(g, h, channels)]));
  }

  // model2: residual blocks at the smallest scale
  for (let r = 0; r < config.residualBlocks; r++) {
    const name = `model2.${r}.conv_block`;
    let y = g.scope(name, () => reflectPad(g, h, 1));
    y = conv2d(c, `${name}.1`, y, channels, channels, { padding: 0 });
    y = g.scope(name, () => reflectPad(g, g.op("Relu", [instanceNorm(g, y, channels)]), 1));
    y = conv2d(c, `${name}.5`, y, channels, channels, { padding: 0 });
    h = g.scope(name, () => g.op("Add", [h, instanceNorm(g, y, channels)]));
  }

  // model3: [B, C, h, w] -> [B, C / 2, 2h, 2w] per stage
  for (let u = 0; u < config.downsamples; u++) {
    h = convTranspose2d(c, `model3.${3 * u}`, h, channels, channels / 2);
    channels /= 2;
    h = g.scope("model3", () => g.op("Relu", [instanceNorm(g, h, channels)]));
  }

  // model4: [B, nf, H, W] -> [B, out, H, W]
  h = g.scope("model4", () => reflectPad(g, h, 3));
  h = conv2d(c, "model4.1", h, nf, config.outChannels, { kernel: 7, padding: 0 });
  const line = g.scope("model4", () => g.op("Sigmoid", [h]));
  g.output(line, "line", "float32", ["batch", config.outChannels, "height", "width"]);
  c.finish();
  return g.build({ metadata: { architecture: "lineart", config: JSON.stringify(config) } });
}

/**
 * Names and shapes of the weights {@linkcode buildLineartGenerator} reads for `config` (the
 * checkpoint's names).
 *
 * @example
 * ```ts
 * import { annotatorLineartConfig, lineartParameterShapes } from "./lineart_generator.ts";
 * const shapes = lineartParameterShapes(annotatorLineartConfig());
 * console.assert(shapes.get("model3.0.weight")?.join() === "256,128,3,3"); // [in, out, k, k]
 * console.assert(shapes.size === 2 * (1 + 2 + 3 * 2 + 2 + 1));
 * ```
 */
export function lineartParameterShapes(config: LineartConfig): Map<string, number[]> {
  return collectParameterShapes(() => buildLineartGenerator(config, new Map()));
}

/** nn.ReflectionPad2d(p): [B, C, H, W] -> [B, C, H + 2p, W + 2p], mirrored without the edge. */
function reflectPad(g: GraphBuilder, x: Value, p: number): Value {
  return g.op("Pad", [x, g.ints([0, 0, p, p, 0, 0, p, p])], { mode: "reflect" });
}

/** nn.InstanceNorm2d(C) (affine=False, eps 1e-5): each channel of each image to mean 0, var 1. */
function instanceNorm(g: GraphBuilder, x: Value, channels: number): Value {
  const ones = g.constant(new Float32Array(channels).fill(1), "float32", [channels]);
  const zeros = g.constant(new Float32Array(channels), "float32", [channels]);
  return g.op("InstanceNormalization", [x, ones, zeros], { epsilon: 1e-5 });
}

/**
 * nn.ConvTranspose2d(in, out, 3, stride=2, padding=1, output_padding=1) with weights
 * `${name}.weight` [in, out, 3, 3] and `${name}.bias` [out]: [B, in, h, w] -> [B, out, 2h, 2w].
 */
function convTranspose2d(
  c: ModelContext,
  name: string,
  x: Value,
  inChannels: number,
  outChannels: number,
): Value {
  const w = c.param(`${name}.weight`, [inChannels, outChannels, 3, 3]);
  const b = c.param(`${name}.bias`, [outChannels]);
  return c.g.scope(name, () =>
    c.g.op("ConvTranspose", [x, w, b], {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads: [1, 1, 1, 1],
      output_padding: [1, 1],
    }));
}
