/**
 * AutoencoderTiny (TAESD) encoder and decoder as ONNX graphs, built from a Diffusers
 * `config.json` and weights (initializer names = Diffusers parameter names).
 *
 * Semantics follow diffusers 0.27 `models/autoencoders/vae.py` (`EncoderTiny`, `DecoderTiny`)
 * and `models/unets/unet_2d_blocks.py` (`AutoencoderTinyBlock`), which mirror
 * madebyollin/taesd `taesd.py`:
 * - encoder: input `sample` [B, in, H, W] in [-1, 1] (mapped to [0, 1] first), output
 *   `latent_sample` [B, latent, H/8, W/8] (unscaled TAESD latents = the UNet's latent space);
 * - decoder: input `latent_sample`, first `tanh(x / 3) * 3`, output `sample` in [-1, 1]-space
 *   (`2 y - 1`, not clamped).
 *
 * Original taesd.py checkpoints (`taesd_encoder.pth`, `taesd_decoder.pth`) use the Sequential
 * indices as names; {@linkcode taesdOriginalKeyTable} maps them to Diffusers names.
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import { WeightLedger } from "../onnx/weight_ledger.ts";

/** A parsed AutoencoderTiny config. */
export interface TaesdConfig {
  inChannels: number;
  outChannels: number;
  encoderBlockOutChannels: number[];
  decoderBlockOutChannels: number[];
  numEncoderBlocks: number[];
  numDecoderBlocks: number[];
  latentChannels: number;
  upsamplingScalingFactor: number;
  /** `scale_latents`: latents / (2 * magnitude) + shift, clamped to [0, 1]. */
  latentMagnitude: number;
  latentShift: number;
  scalingFactor: number;
}

/**
 * Parses an AutoencoderTiny `config.json` (defaults as in diffusers 0.27 `AutoencoderTiny`,
 * which equal TAESD for SD 1.x/2.x).
 *
 * @example
 * ```ts
 * import { parseTaesdConfig } from "./taesd.ts";
 * const config = parseTaesdConfig({ _class_name: "AutoencoderTiny" });
 * console.assert(config.numEncoderBlocks.join() === "1,3,3,3");
 * ```
 */
export function parseTaesdConfig(json: unknown): TaesdConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError("Cannot parse AutoencoderTiny config: expected a JSON object");
  }
  const obj = json as Record<string, unknown>;
  const fail = (key: string, want: string) =>
    new RangeError(`Cannot parse AutoencoderTiny config: "${key}" must be ${want}`);
  const int = (key: string, fallback: number): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw fail(key, "an integer > 0");
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) throw fail(key, "a number");
    return v;
  };
  const ints = (key: string, fallback: number[]): number[] => {
    const v = obj[key] ?? fallback;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => Number.isInteger(x) && x > 0)) {
      throw fail(key, "a non-empty list of integers > 0");
    }
    return v as number[];
  };
  for (const [key, allowed] of [["act_fn", "relu"], ["upsample_fn", "nearest"]] as const) {
    if (obj[key] !== undefined && obj[key] !== allowed) {
      throw new RangeError(
        `Cannot build AutoencoderTiny: ${key} ${JSON.stringify(obj[key])} is not supported; ` +
          `only "${allowed}" (the TAESD architecture)`,
      );
    }
  }
  const blocks = ints("block_out_channels", [64, 64, 64, 64]);
  const config: TaesdConfig = {
    inChannels: int("in_channels", 3),
    outChannels: int("out_channels", 3),
    encoderBlockOutChannels: ints("encoder_block_out_channels", blocks),
    decoderBlockOutChannels: ints("decoder_block_out_channels", blocks),
    numEncoderBlocks: ints("num_encoder_blocks", [1, 3, 3, 3]),
    numDecoderBlocks: ints("num_decoder_blocks", [3, 3, 3, 1]),
    latentChannels: int("latent_channels", 4),
    upsamplingScalingFactor: int("upsampling_scaling_factor", 2),
    latentMagnitude: num("latent_magnitude", 3),
    latentShift: num("latent_shift", 0.5),
    scalingFactor: num("scaling_factor", 1),
  };
  if (config.encoderBlockOutChannels.length !== config.numEncoderBlocks.length) {
    throw fail("encoder_block_out_channels", "as long as num_encoder_blocks");
  }
  if (config.decoderBlockOutChannels.length !== config.numDecoderBlocks.length) {
    throw fail("decoder_block_out_channels", "as long as num_decoder_blocks");
  }
  return config;
}

/** One entry of the encoder's or decoder's `layers` Sequential. */
type Layer =
  | { kind: "conv"; index: number; inC: number; outC: number; stride: number; bias: boolean }
  | { kind: "block"; index: number; inC: number; outC: number }
  | { kind: "relu"; index: number }
  | { kind: "upsample"; index: number };

// EncoderTiny.__init__: conv_in, then per level [stride-2 conv (not level 0)] + blocks, conv_out.
function encoderLayers(c: TaesdConfig): Layer[] {
  const layers: Layer[] = [];
  let prev = c.inChannels;
  c.numEncoderBlocks.forEach((n, i) => {
    const ch = c.encoderBlockOutChannels[i]!;
    layers.push(
      i === 0
        ? { kind: "conv", index: layers.length, inC: prev, outC: ch, stride: 1, bias: true }
        : { kind: "conv", index: layers.length, inC: prev, outC: ch, stride: 2, bias: false },
    );
    for (let b = 0; b < n; b++) {
      layers.push({ kind: "block", index: layers.length, inC: ch, outC: ch });
    }
    prev = ch;
  });
  layers.push({
    kind: "conv",
    index: layers.length,
    inC: prev,
    outC: c.latentChannels,
    stride: 1,
    bias: true,
  });
  return layers;
}

// DecoderTiny.__init__: conv_in, act, then per level blocks + [upsample] + conv (bias at the end).
function decoderLayers(c: TaesdConfig): Layer[] {
  const first = c.decoderBlockOutChannels[0]!;
  const layers: Layer[] = [
    { kind: "conv", index: 0, inC: c.latentChannels, outC: first, stride: 1, bias: true },
    { kind: "relu", index: 1 },
  ];
  let prev = first;
  c.numDecoderBlocks.forEach((n, i) => {
    const last = i === c.numDecoderBlocks.length - 1;
    const ch = c.decoderBlockOutChannels[i]!;
    for (let b = 0; b < n; b++) {
      layers.push({ kind: "block", index: layers.length, inC: prev, outC: ch });
      prev = ch;
    }
    if (!last) layers.push({ kind: "upsample", index: layers.length });
    const outC = last ? c.outChannels : ch;
    layers.push({ kind: "conv", index: layers.length, inC: ch, outC, stride: 1, bias: last });
    prev = outC;
  });
  return layers;
}

/** Parameter names (without the `encoder.layers.` prefix) of one layer. */
function layerParams(layer: Layer): string[] {
  if (layer.kind === "conv") {
    return layer.bias
      ? [`${layer.index}.weight`, `${layer.index}.bias`]
      : [`${layer.index}.weight`];
  }
  if (layer.kind === "block") {
    const names = [0, 2, 4].flatMap((k) => [
      `${layer.index}.conv.${k}.weight`,
      `${layer.index}.conv.${k}.bias`,
    ]);
    if (layer.inC !== layer.outC) names.push(`${layer.index}.skip.weight`);
    return names;
  }
  return [];
}

/**
 * The table from original taesd.py names (`"encoder:0.weight"`, `"decoder:1.weight"`: file part
 * and Sequential key) to Diffusers names (`"encoder.layers.0.weight"`, `"decoder.layers.0.weight"`).
 * taesd.py's Decoder starts with a `Clamp` module, so its indices are one higher.
 */
export function taesdOriginalKeyTable(config: TaesdConfig): Map<string, string> {
  const table = new Map<string, string>();
  for (const layer of encoderLayers(config)) {
    for (const p of layerParams(layer)) table.set(`encoder:${p}`, `encoder.layers.${p}`);
  }
  for (const layer of decoderLayers(config)) {
    for (const p of layerParams(layer)) {
      const original = p.replace(/^\d+/, (i) => String(Number(i) + 1));
      table.set(`decoder:${original}`, `decoder.layers.${p}`);
    }
  }
  return table;
}

/** Options of {@linkcode buildTaesdEncoder} and {@linkcode buildTaesdDecoder}. */
export interface TaesdBuildOptions {
  /** Names the weights in error messages, e.g. the file path. */
  source?: string;
  /** Opset (default 17). */
  opset?: number;
}

/**
 * Builds the TAESD encoder: `sample` [B, 3, H, W] in [-1, 1] -> `latent_sample`
 * [B, 4, H/8, W/8]. `weights` may hold the decoder's weights too (they are left alone).
 *
 * @example
 * ```ts ignore
 * const model = buildTaesdEncoder(parseTaesdConfig(json), tensorSources(file));
 * ```
 */
export function buildTaesdEncoder(
  config: TaesdConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: TaesdBuildOptions = {},
): OnnxModel {
  return buildPart("encoder", config, weights, options);
}

/**
 * Builds the TAESD decoder: `latent_sample` [B, 4, h, w] -> `sample` [B, 3, 8h, 8w] in
 * [-1, 1]-space (not clamped). `weights` may hold the encoder's weights too.
 */
export function buildTaesdDecoder(
  config: TaesdConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: TaesdBuildOptions = {},
): OnnxModel {
  return buildPart("decoder", config, weights, options);
}

function buildPart(
  part: "encoder" | "decoder",
  config: TaesdConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: TaesdBuildOptions,
): OnnxModel {
  const what = `AutoencoderTiny ${part}${
    options.source === undefined ? "" : ` from "${options.source}"`
  }`;
  const mine = new Map<string, TensorSource>();
  const foreign: string[] = [];
  for (const [name, source] of weights) {
    if (name.startsWith(`${part}.`)) mine.set(name, source);
    else if (!name.startsWith("encoder.") && !name.startsWith("decoder.")) foreign.push(name);
    if (source.dtype !== "float32") {
      throw new TypeError(
        `Cannot build ${what}: weight "${name}" is ${source.dtype}; the graph is float32, ` +
          `load the weights with tensorSources(file, { floatType: "float32" })`,
      );
    }
  }
  if (foreign.length > 0) {
    throw new TypeError(
      `Cannot build ${what}: unknown weights ${
        foreign.slice(0, 8).map((n) => `"${n}"`).join(", ")
      }` +
        `; expected Diffusers names (encoder.layers.N..., decoder.layers.N...)`,
    );
  }
  const ledger = new WeightLedger(what, mine);
  const g = new GraphBuilder(`AutoencoderTiny_${part}`, { opset: options.opset ?? 17 });
  const pre = `${part}.layers`;

  const conv = (
    x: Value,
    name: string,
    inC: number,
    outC: number,
    k: number,
    stride = 1,
    bias = true,
  ) =>
    g.scope(name, () => {
      const w = ledger.param(g, `${name}.weight`, [outC, inC, k, k]);
      const b = bias ? ledger.param(g, `${name}.bias`, [outC]) : null;
      const pad = (k - 1) / 2;
      return g.op("Conv", [x, w, b], {
        kernel_shape: [k, k],
        pads: [pad, pad, pad, pad],
        strides: [stride, stride],
      });
    });

  // AutoencoderTinyBlock: relu(conv(relu(conv(relu(conv(x))))) + skip(x)).
  const block = (x: Value, name: string, inC: number, outC: number): Value =>
    g.scope(name, () => {
      let y = g.op("Relu", [conv(x, `${name}.conv.0`, inC, outC, 3)]);
      y = g.op("Relu", [conv(y, `${name}.conv.2`, outC, outC, 3)]);
      y = conv(y, `${name}.conv.4`, outC, outC, 3);
      const skip = inC === outC ? x : conv(x, `${name}.skip`, inC, outC, 1, 1, false);
      return g.op("Relu", [g.op("Add", [y, skip])]);
    });

  const run = (x0: Value, layers: Layer[]): Value => {
    let x = x0;
    for (const layer of layers) {
      const name = `${pre}.${layer.index}`;
      switch (layer.kind) {
        case "conv":
          x = conv(x, name, layer.inC, layer.outC, 3, layer.stride, layer.bias);
          break;
        case "block":
          x = block(x, name, layer.inC, layer.outC);
          break;
        case "relu":
          x = g.op("Relu", [x], {}, { name });
          break;
        case "upsample": {
          // nn.Upsample(scale_factor=s, mode="nearest"): out[i] = in[floor(i / s)].
          const s = config.upsamplingScalingFactor;
          x = g.op("Resize", [x, null, g.constant([1, 1, s, s], "float32", [4])], {
            mode: "nearest",
            coordinate_transformation_mode: "asymmetric",
            nearest_mode: "floor",
          }, { name });
          break;
        }
      }
    }
    return x;
  };

  if (part === "encoder") {
    const sample = g.input("sample", "float32", ["batch", config.inChannels, "height", "width"]);
    // [-1, 1] -> [0, 1], the TAESD convention (EncoderTiny.forward).
    const x01 = g.op("Div", [g.op("Add", [sample, g.scalar(1)]), g.scalar(2)]);
    const latents = run(x01, encoderLayers(config));
    g.output(latents, "latent_sample", "float32", [
      "batch",
      config.latentChannels,
      "latent_height",
      "latent_width",
    ]);
  } else {
    const z = g.input("latent_sample", "float32", [
      "batch",
      config.latentChannels,
      "latent_height",
      "latent_width",
    ]);
    // Soft clamp to (-3, 3): tanh(x / 3) * 3 (DecoderTiny.forward).
    const clamped = g.op("Mul", [g.op("Tanh", [g.op("Div", [z, g.scalar(3)])]), g.scalar(3)]);
    const y = run(clamped, decoderLayers(config));
    // [0, 1] -> [-1, 1]
    const out = g.op("Sub", [g.op("Mul", [y, g.scalar(2)]), g.scalar(1)]);
    g.output(out, "sample", "float32", ["batch", config.outChannels, "height", "width"]);
  }
  ledger.finish();
  return g.build({ metadata: { architecture: `AutoencoderTiny.${part}` } });
}

/**
 * `AutoencoderTiny.scale_latents`: maps latents to [0, 1] for storage as an image,
 * `clamp(z / (2 * magnitude) + shift, 0, 1)`.
 */
export function scaleTaesdLatents(config: TaesdConfig, latents: Float32Array): Float32Array {
  const out = new Float32Array(latents.length);
  const div = 2 * config.latentMagnitude;
  for (let i = 0; i < latents.length; i++) {
    out[i] = Math.min(1, Math.max(0, latents[i]! / div + config.latentShift));
  }
  return out;
}
