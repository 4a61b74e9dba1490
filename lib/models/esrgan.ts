/**
 * ESRGAN-family super-resolution networks as ONNX graphs: RRDBNet (ESRGAN, Real-ESRGAN x4plus,
 * x4plus_anime_6B, x2plus, community models such as 4x-UltraSharp) and SRVGGNetCompact
 * (realesr-general-x4v3, realesr-animevideov3). Initializer names are the Real-ESRGAN / BasicSR
 * parameter names (`conv_first.weight`, `body.0.rdb1.conv1.weight`, `body.1.weight`, ...); other
 * key layouts are renamed to these by the table in esrgan_keys.ts.
 *
 * Semantics follow BasicSR `basicsr/archs/rrdbnet_arch.py` (`RRDBNet`, `RRDB`,
 * `ResidualDenseBlock`, `pixel_unshuffle` in `arch_util.py`) and Real-ESRGAN
 * `realesrgan/archs/srvgg_arch.py` (`SRVGGNetCompact`). Both graphs map `image` [B, C, H, W]
 * (RGB in [0, 1], no normalisation) to `upscaled` [B, C, sH, sW], raw (not clamped).
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import { collectParameterShapes, conv2d, ModelContext } from "./layers.ts";

/**
 * RRDBNet: `conv_first`, `blocks` RRDBs (three residual dense blocks each), `conv_body`, then
 * `upsamples` stages of nearest x2 + conv + LeakyReLU(0.2), `conv_hr`, `conv_last`. Real-ESRGAN
 * always has two upsample stages and reaches x2 and x1 by pixel-unshuffling the input first.
 */
export interface RrdbNetConfig {
  architecture: "RRDBNet";
  /** Channels of the image (before pixel-unshuffle), `num_in_ch`. */
  inChannels: number;
  /** Channels of the output image, `num_out_ch`. */
  outChannels: number;
  /** `num_feat`: width of the trunk (64 in every released model). */
  features: number;
  /** `num_block`: RRDBs in the trunk (23 in x4plus, 6 in x4plus_anime_6B). */
  blocks: number;
  /** `num_grow_ch`: channels each dense-block conv adds (32). */
  growthChannels: number;
  /** Nearest x2 + conv stages (`conv_up1`, `conv_up2`, ...): 2 in Real-ESRGAN, 1..3 in ESRGAN. */
  upsamples: number;
  /** Pixel-unshuffle factor of the input: 1, 2 (Real-ESRGAN x2) or 4 (x1). */
  unshuffle: 1 | 2 | 4;
  /** Output size / input size: `2 ** upsamples / unshuffle`. */
  scale: number;
}

/** SRVGGNetCompact activations (`act_type`); only PReLU has weights. */
export type SrvggActivation = "prelu" | "relu" | "leakyrelu";

/**
 * SRVGGNetCompact: `body.0` conv, activation, `convs` x (conv, activation), a last conv to
 * `outChannels * scale²` channels, PixelShuffle, plus the nearest-upsampled input.
 */
export interface SrvggNetCompactConfig {
  architecture: "SRVGGNetCompact";
  inChannels: number;
  outChannels: number;
  /** `num_feat` (64 in realesr-general-x4v3, 64 in realesr-animevideov3). */
  features: number;
  /** `num_conv`: body convs between the first and the last (32 in general-x4v3, 16 in animevideov3). */
  convs: number;
  /** `upscale`. */
  scale: number;
  /** `act_type`. */
  activation: SrvggActivation;
}

/** Any ESRGAN-family network; `architecture` tells them apart. */
export type UpscalerConfig = RrdbNetConfig | SrvggNetCompactConfig;

/** The arguments of BasicSR's `RRDBNet(...)` constructor, for {@linkcode rrdbNetConfig}. */
export interface RrdbNetOptions {
  /** 4 (default), 2 or 1; x2 and x1 pixel-unshuffle the input as BasicSR does. */
  scale?: 1 | 2 | 4;
  inChannels?: number;
  outChannels?: number;
  features?: number;
  blocks?: number;
  growthChannels?: number;
}

/**
 * The config BasicSR's `RRDBNet(num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch)`
 * builds; defaults are RealESRGAN_x4plus (3, 3, 4, 64, 23, 32).
 *
 * @example
 * ```ts
 * import { rrdbNetConfig } from "./esrgan.ts";
 * const anime = rrdbNetConfig({ blocks: 6 }); // RealESRGAN_x4plus_anime_6B
 * const x2 = rrdbNetConfig({ scale: 2 }); // RealESRGAN_x2plus: input pixel-unshuffled by 2
 * console.assert(anime.scale === 4 && x2.unshuffle === 2 && x2.upsamples === 2);
 * ```
 */
export function rrdbNetConfig(options: RrdbNetOptions = {}): RrdbNetConfig {
  const scale = options.scale ?? 4;
  if (scale !== 1 && scale !== 2 && scale !== 4) {
    throw new RangeError(`Cannot make an RRDBNet config: scale ${scale} is not 1, 2 or 4`);
  }
  const config: RrdbNetConfig = {
    architecture: "RRDBNet",
    inChannels: options.inChannels ?? 3,
    outChannels: options.outChannels ?? 3,
    features: options.features ?? 64,
    blocks: options.blocks ?? 23,
    growthChannels: options.growthChannels ?? 32,
    upsamples: 2,
    unshuffle: scale === 4 ? 1 : scale === 2 ? 2 : 4,
    scale,
  };
  checkUpscalerConfig(config);
  return config;
}

/** The arguments of Real-ESRGAN's `SRVGGNetCompact(...)`, for {@linkcode srvggNetCompactConfig}. */
export interface SrvggNetCompactOptions {
  inChannels?: number;
  outChannels?: number;
  features?: number;
  convs?: number;
  scale?: number;
  activation?: SrvggActivation;
}

/**
 * The config of `SRVGGNetCompact(num_in_ch, num_out_ch, num_feat, num_conv, upscale, act_type)`;
 * defaults are the class defaults (3, 3, 64, 16, 4, "prelu") = realesr-animevideov3.
 *
 * @example
 * ```ts
 * import { srvggNetCompactConfig } from "./esrgan.ts";
 * const general = srvggNetCompactConfig({ convs: 32 }); // realesr-general-x4v3
 * console.assert(general.scale === 4);
 * ```
 */
export function srvggNetCompactConfig(options: SrvggNetCompactOptions = {}): SrvggNetCompactConfig {
  const config: SrvggNetCompactConfig = {
    architecture: "SRVGGNetCompact",
    inChannels: options.inChannels ?? 3,
    outChannels: options.outChannels ?? 3,
    features: options.features ?? 64,
    convs: options.convs ?? 16,
    scale: options.scale ?? 4,
    activation: options.activation ?? "prelu",
  };
  checkUpscalerConfig(config);
  return config;
}

/** Throws a RangeError when a config cannot describe a network. */
export function checkUpscalerConfig(config: UpscalerConfig): void {
  const what = config.architecture;
  const positive = (key: string, v: number, min = 1) => {
    if (!Number.isInteger(v) || v < min) {
      throw new RangeError(`Invalid ${what} config: ${key} must be an integer >= ${min}, got ${v}`);
    }
  };
  positive("inChannels", config.inChannels);
  positive("outChannels", config.outChannels);
  positive("features", config.features);
  positive("scale", config.scale);
  if (config.architecture === "RRDBNet") {
    positive("blocks", config.blocks);
    positive("growthChannels", config.growthChannels);
    positive("upsamples", config.upsamples, 0);
    if (![1, 2, 4].includes(config.unshuffle)) {
      throw new RangeError(`Invalid RRDBNet config: unshuffle must be 1, 2 or 4`);
    }
    if (config.scale * config.unshuffle !== 2 ** config.upsamples) {
      throw new RangeError(
        `Invalid RRDBNet config: scale ${config.scale} x unshuffle ${config.unshuffle} must equal ` +
          `2 ** upsamples (${2 ** config.upsamples})`,
      );
    }
  } else {
    positive("convs", config.convs, 0);
    if (config.inChannels !== config.outChannels) {
      throw new RangeError(
        `Invalid SRVGGNetCompact config: the input (${config.inChannels} channels) is added to ` +
          `the output (${config.outChannels}), so both must have the same number of channels`,
      );
    }
  }
}

/** The size multiple an input must have: the pixel-unshuffle factor (1 for most models). */
export function inputMultiple(config: UpscalerConfig): number {
  return config.architecture === "RRDBNet" ? config.unshuffle : 1;
}

/** Options of {@linkcode buildUpscaler}. */
export interface UpscalerBuildOptions {
  /** Names the weights in error messages, e.g. the file path. */
  source?: string;
  /** Opset (default 17). */
  opset?: number;
}

/**
 * Builds the network `config` describes: `image` [B, C, H, W] -> `upscaled` [B, C', sH, sW].
 * `weights` are float32 sources under Real-ESRGAN names (see esrgan_load.ts for reading files
 * in any layout); missing, misshapen and unused weights are reported together.
 *
 * @example
 * ```ts
 * import { buildUpscaler, rrdbNetConfig, upscalerParameterShapes } from "./esrgan.ts";
 * import { memoryWeights } from "./layers.ts";
 * import { randomWeights } from "./random.ts";
 * const config = rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 });
 * const weights = memoryWeights(randomWeights(upscalerParameterShapes(config), 0));
 * const model = buildUpscaler(config, weights);
 * // conv_first, 1 x 3 x 5 dense convs, conv_body, conv_up1, conv_up2, conv_hr, conv_last
 * console.assert(model.initializers.length === 2 * (1 + 15 + 5));
 * ```
 */
export function buildUpscaler(
  config: UpscalerConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: UpscalerBuildOptions = {},
): OnnxModel {
  checkUpscalerConfig(config);
  const what = `${config.architecture}${
    options.source === undefined ? "" : ` from "${options.source}"`
  }`;
  const g = new GraphBuilder(config.architecture, { opset: options.opset ?? 17 });
  const c = new ModelContext(g, what, weights);
  const image = g.input("image", "float32", ["batch", config.inChannels, "height", "width"]);
  const out = config.architecture === "RRDBNet"
    ? rrdbNet(c, config, image)
    : srvgg(c, config, image);
  g.output(out, "upscaled", "float32", [
    "batch",
    config.outChannels,
    "upscaled_height",
    "upscaled_width",
  ]);
  c.finish();
  return g.build({
    metadata: { architecture: config.architecture, config: JSON.stringify(config) },
  });
}

/**
 * Names and shapes of the weights {@linkcode buildUpscaler} reads for `config`, in Real-ESRGAN
 * names (used to make random models).
 *
 * @example
 * ```ts
 * import { srvggNetCompactConfig, upscalerParameterShapes } from "./esrgan.ts";
 * const shapes = upscalerParameterShapes(srvggNetCompactConfig({ features: 16, convs: 4 }));
 * console.assert(shapes.get("body.10.weight")?.join() === "48,16,3,3");
 * ```
 */
export function upscalerParameterShapes(config: UpscalerConfig): Map<string, number[]> {
  return collectParameterShapes(() => buildUpscaler(config, new Map()));
}

const LRELU_SLOPE = 0.2; // nn.LeakyReLU(negative_slope=0.2) in rrdbnet_arch.py
const RESIDUAL_SCALE = 0.2; // "we use 0.2 to scale the residual" (RRDB, ResidualDenseBlock)

function leakyRelu(c: ModelContext, x: Value, slope = LRELU_SLOPE): Value {
  return c.g.op("LeakyRelu", [x], { alpha: slope });
}

/** F.interpolate(x, scale_factor=s, mode="nearest"): out[i] = in[floor(i / s)]. */
function nearest(c: ModelContext, x: Value, s: number): Value {
  const scales = c.g.constant([1, 1, s, s], "float32", [4]);
  // [B, C, H, W] -> [B, C, sH, sW]
  return c.g.op("Resize", [x, null, scales], {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  });
}

/**
 * BasicSR `pixel_unshuffle(x, s)`: `view(b, c, h/s, s, w/s, s).permute(0, 1, 3, 5, 2, 4)`, so
 * output channel `ch * s² + dy * s + dx`. ONNX SpaceToDepth orders channels `(dy * s + dx) * C +
 * ch` instead; a Gather on the channel axis puts them in BasicSR's order.
 */
function pixelUnshuffle(c: ModelContext, x: Value, channels: number, s: number): Value {
  const g = c.g;
  return g.scope("pixel_unshuffle", () => {
    // [B, C, H, W] -> [B, s*s*C, H/s, W/s], channel (dy*s + dx)*C + ch
    const depth = g.op("SpaceToDepth", [x], { blocksize: s });
    const order = new BigInt64Array(channels * s * s);
    for (let ch = 0; ch < channels; ch++) {
      for (let k = 0; k < s * s; k++) order[ch * s * s + k] = BigInt(k * channels + ch);
    }
    // channel ch*s*s + dy*s + dx <- (dy*s + dx)*C + ch
    return g.op("Gather", [depth, g.constant(order, "int64", [order.length])], { axis: 1 });
  });
}

/** BasicSR `ResidualDenseBlock`: five densely connected convs, `x5 * 0.2 + x`. */
function residualDenseBlock(
  c: ModelContext,
  name: string,
  x: Value,
  nf: number,
  gc: number,
): Value {
  const g = c.g;
  const features: Value[] = [x];
  for (let i = 1; i <= 4; i++) {
    // cat(x, x1, ..., x_{i-1}): [B, nf + (i-1)*gc, H, W] -> [B, gc, H, W]
    const input = features.length === 1
      ? x
      : g.scope(name, () => g.op("Concat", features, { axis: 1 }));
    const y = conv2d(c, `${name}.conv${i}`, input, nf + (i - 1) * gc, gc);
    features.push(g.scope(name, () => leakyRelu(c, y)));
  }
  // [B, nf + 4*gc, H, W] -> [B, nf, H, W]
  const all = g.scope(name, () => g.op("Concat", features, { axis: 1 }));
  const x5 = conv2d(c, `${name}.conv5`, all, nf + 4 * gc, nf);
  return g.scope(name, () => g.op("Add", [g.op("Mul", [x5, c.scalar(RESIDUAL_SCALE)]), x]));
}

/** BasicSR `RRDB`: three residual dense blocks, `out * 0.2 + x`. */
function rrdb(c: ModelContext, name: string, x: Value, nf: number, gc: number): Value {
  let out = x;
  for (let k = 1; k <= 3; k++) out = residualDenseBlock(c, `${name}.rdb${k}`, out, nf, gc);
  return c.g.scope(name, () => c.g.op("Add", [c.g.op("Mul", [out, c.scalar(RESIDUAL_SCALE)]), x]));
}

/** BasicSR `RRDBNet.forward`, with any number of upsample stages. */
function rrdbNet(c: ModelContext, config: RrdbNetConfig, image: Value): Value {
  const g = c.g;
  const nf = config.features;
  const s = config.unshuffle;
  // [B, C, H, W] -> [B, C*s*s, H/s, W/s]
  const x = s === 1 ? image : pixelUnshuffle(c, image, config.inChannels, s);
  const feat = conv2d(c, "conv_first", x, config.inChannels * s * s, nf);
  let body = feat;
  for (let i = 0; i < config.blocks; i++) {
    body = rrdb(c, `body.${i}`, body, nf, config.growthChannels);
  }
  const bodyFeat = conv2d(c, "conv_body", body, nf, nf);
  let h = g.op("Add", [feat, bodyFeat]);
  for (let u = 1; u <= config.upsamples; u++) {
    const name = `conv_up${u}`;
    // [B, nf, H, W] -> [B, nf, 2H, 2W]
    const up = g.scope(name, () => nearest(c, h, 2));
    h = g.scope(name, () => leakyRelu(c, conv2d(c, name, up, nf, nf)));
  }
  const hr = g.scope("conv_hr", () => leakyRelu(c, conv2d(c, "conv_hr", h, nf, nf)));
  return conv2d(c, "conv_last", hr, nf, config.outChannels);
}

/** Real-ESRGAN `SRVGGNetCompact.forward`. */
function srvgg(c: ModelContext, config: SrvggNetCompactConfig, image: Value): Value {
  const g = c.g;
  const nf = config.features;
  const s = config.scale;
  const activation = (x: Value, index: number): Value => {
    const name = `body.${index}`;
    if (config.activation === "relu") return g.op("Relu", [x], {}, { name });
    if (config.activation === "leakyrelu") return leakyRelu(c, x, 0.1);
    // nn.PReLU(num_parameters=nf): slope [nf] -> [nf, 1, 1] so it broadcasts over channels
    const slope = c.param(`${name}.weight`, [nf]);
    return g.scope(name, () => g.op("PRelu", [x, g.op("Unsqueeze", [slope, g.ints([1, 2])])]));
  };
  let h = conv2d(c, "body.0", image, config.inChannels, nf);
  h = activation(h, 1);
  for (let i = 0; i < config.convs; i++) {
    h = conv2d(c, `body.${2 + 2 * i}`, h, nf, nf);
    h = activation(h, 3 + 2 * i);
  }
  const last = 2 + 2 * config.convs;
  // [B, nf, H, W] -> [B, C*s*s, H, W]
  h = conv2d(c, `body.${last}`, h, nf, config.outChannels * s * s);
  return g.scope("upsampler", () => {
    // nn.PixelShuffle(s) = DepthToSpace in CRD order: channel ch*s*s + dy*s + dx -> (ch, dy, dx)
    // [B, C*s*s, H, W] -> [B, C, sH, sW]
    const shuffled = g.op("DepthToSpace", [h], { blocksize: s, mode: "CRD" });
    // out += F.interpolate(x, scale_factor=s, mode="nearest")
    return g.op("Add", [shuffled, nearest(c, image, s)]);
  });
}
