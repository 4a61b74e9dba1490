/**
 * AnimateDiff motion modules as ONNX graph parts: the MotionAdapter config, Diffusers'
 * `TransformerTemporalModel` (attention over frames at every pixel, sinusoidal frame positions
 * up to the module's max length) and the checks that a motion module fits a UNet. The UNet
 * builder (unet.ts, `motion` option) inserts one temporal transformer after each spatial
 * transformer (or resnet, in blocks without attention), which makes Diffusers' UNetMotionModel.
 *
 * Follows Diffusers 0.27: `MotionAdapter` and `UNetMotionModel` (models/unets/
 * unet_motion_model.py), the motion blocks of models/unets/unet_3d_blocks.py
 * (CrossAttnDownBlockMotion, DownBlockMotion, UNetMidBlockCrossAttnMotion, CrossAttnUpBlockMotion,
 * UpBlockMotion), `TransformerTemporalModel` (models/transformers/transformer_temporal.py),
 * `BasicTransformerBlock` with `positional_embeddings="sinusoidal"` and
 * `double_self_attention=True` (models/attention.py) and `SinusoidalPositionalEmbedding`
 * (models/embeddings.py).
 *
 * Two details that differ from the original AnimateDiff code, kept as Diffusers has them:
 * the group norm of a temporal transformer normalises over all frames of a clip together
 * (`[B, C, F, H, W]`), where guoyww/AnimateDiff normalises each frame on its own; and the
 * group count is the UNet's `norm_num_groups` (Diffusers 0.27 uses 32 in UpBlockMotion, which
 * is the same for every published model).
 *
 * @module
 */
import { GraphBuilder, type TensorSource, type Value } from "../onnx/graph.ts";
import type { UnetConfig } from "./config.ts";
import {
  attention,
  collectParameterShapes,
  feedForwardGeglu,
  groupNorm,
  layerNorm,
  linear,
  ModelContext,
} from "./layers.ts";

/** A parsed Diffusers `MotionAdapter` config (camelCase; per-block lists have one entry per block). */
export interface MotionConfig {
  /** Channels of each UNet block the adapter is made for (`block_out_channels`). */
  blockOutChannels: number[];
  /** Motion modules per down block (`motion_layers_per_block`); up blocks have one more. */
  layersPerBlock: number;
  /** Motion modules in the mid block (`motion_mid_block_layers_per_block`; 0 without one). */
  midBlockLayers: number;
  /** Whether the mid block has motion modules (`use_motion_mid_block`). */
  useMotionMidBlock: boolean;
  /** Attention heads of the motion modules, per down block (`motion_num_attention_heads`). */
  numAttentionHeads: number[];
  /**
   * `motion_norm_num_groups`. Diffusers' UNetMotionModel ignores it and uses the UNet's
   * `norm_num_groups`, and so do the graphs; it is kept so configs round-trip.
   */
  normNumGroups: number;
  /** Longest clip the frame positions cover (`motion_max_seq_length`: 24 for v1, 32 for v2/v3). */
  maxSeqLength: number;
  /** Transformer blocks per motion module (`motion_transformer_layers_per_block`, default 1). */
  transformerLayers: number;
}

/** A motion module ready for the UNet builder: its config and weights in Diffusers' names. */
export interface MotionModules {
  config: MotionConfig;
  /**
   * Tensors by Diffusers UNetMotionModel parameter name (`down_blocks.0.motion_modules.0.…`),
   * including each transformer block's `pos_embed.pe` table `[1, maxSeqLength, C]`.
   */
  weights: ReadonlyMap<string, TensorSource>;
}

/** MotionAdapter.__init__ defaults of Diffusers 0.27 (unet_motion_model.py). */
export const MOTION_ADAPTER_DEFAULTS: Readonly<Record<string, unknown>> = {
  block_out_channels: [320, 640, 1280, 1280],
  conv_in_channels: null,
  motion_layers_per_block: 2,
  motion_max_seq_length: 32,
  motion_mid_block_layers_per_block: 1,
  motion_norm_num_groups: 32,
  motion_num_attention_heads: 8,
  use_motion_mid_block: true,
};

const WHAT = "MotionAdapter";

function fail(key: string, message: string): never {
  throw new RangeError(`Cannot use ${WHAT} config: "${key}" ${message}`);
}

function positiveInt(c: Record<string, unknown>, key: string): number {
  const v = c[key] ?? MOTION_ADAPTER_DEFAULTS[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    fail(key, `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Parses a Diffusers MotionAdapter `config.json` object (defaults as in Diffusers 0.27; the
 * per-block forms of later versions are read where they are uniform or per block). PIA's
 * `conv_in_channels` and per-layer transformer counts are refused with a RangeError.
 *
 * @example
 * ```ts
 * import { parseMotionConfig } from "./motion.ts";
 * const config = parseMotionConfig({ block_out_channels: [32, 64], motion_max_seq_length: 24 });
 * console.assert(config.numAttentionHeads.join() === "8,8" && config.midBlockLayers === 1);
 * ```
 */
export function parseMotionConfig(json: unknown): MotionConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`Cannot use ${WHAT} config: expected a JSON object`);
  }
  const c = json as Record<string, unknown>;
  const boc = c["block_out_channels"] ?? MOTION_ADAPTER_DEFAULTS["block_out_channels"];
  if (
    !Array.isArray(boc) || boc.length === 0 ||
    boc.some((x) => typeof x !== "number" || !Number.isInteger(x) || x < 1)
  ) {
    fail("block_out_channels", `must be a list of positive integers, got ${JSON.stringify(boc)}`);
  }
  const blockOutChannels = boc as number[];
  const n = blockOutChannels.length;
  if (c["conv_in_channels"] !== undefined && c["conv_in_channels"] !== null) {
    fail("conv_in_channels", "is set: PIA motion adapters (image-conditioned) are not supported");
  }
  const heads = c["motion_num_attention_heads"] ?? 8;
  let numAttentionHeads: number[];
  if (typeof heads === "number" && Number.isInteger(heads) && heads > 0) {
    numAttentionHeads = new Array<number>(n).fill(heads);
  } else if (
    Array.isArray(heads) && heads.length === n &&
    heads.every((h) => typeof h === "number" && Number.isInteger(h) && h > 0)
  ) {
    numAttentionHeads = heads as number[];
  } else {
    fail(
      "motion_num_attention_heads",
      `must be a positive integer or a list of ${n}, got ${JSON.stringify(heads)}`,
    );
  }
  const uniform = (key: string): number => {
    const v = c[key];
    if (Array.isArray(v) && v.length > 0 && v.every((x) => x === v[0])) {
      return positiveInt({ [key]: v[0] }, key);
    }
    if (Array.isArray(v)) fail(key, "varies per block or layer, which is not supported");
    return positiveInt(c, key);
  };
  const layersPerBlock = uniform("motion_layers_per_block");
  const transformerLayers = c["motion_transformer_layers_per_block"] === undefined
    ? 1
    : uniform("motion_transformer_layers_per_block");
  if (
    c["motion_transformer_layers_per_mid_block"] !== undefined &&
    uniform("motion_transformer_layers_per_mid_block") !== transformerLayers
  ) {
    fail("motion_transformer_layers_per_mid_block", "differs from the down blocks' count");
  }
  const useRaw = c["use_motion_mid_block"] ?? true;
  if (typeof useRaw !== "boolean") {
    fail("use_motion_mid_block", `must be true or false, got ${JSON.stringify(useRaw)}`);
  }
  return {
    blockOutChannels,
    layersPerBlock,
    midBlockLayers: useRaw ? positiveInt(c, "motion_mid_block_layers_per_block") : 0,
    useMotionMidBlock: useRaw,
    numAttentionHeads,
    normNumGroups: positiveInt(c, "motion_norm_num_groups"),
    maxSeqLength: positiveInt(c, "motion_max_seq_length"),
    transformerLayers,
  };
}

/**
 * The `config.json` object Diffusers' MotionAdapter would write for `config` (without
 * `_class_name` and `_diffusers_version`).
 *
 * @example
 * ```ts
 * import { motionConfigJson, parseMotionConfig } from "./motion.ts";
 * const json = motionConfigJson(parseMotionConfig({ motion_max_seq_length: 24 }));
 * console.assert(json["motion_max_seq_length"] === 24);
 * ```
 */
export function motionConfigJson(config: MotionConfig): Record<string, unknown> {
  const heads = config.numAttentionHeads;
  const json: Record<string, unknown> = {
    block_out_channels: [...config.blockOutChannels],
    conv_in_channels: null,
    motion_layers_per_block: config.layersPerBlock,
    motion_max_seq_length: config.maxSeqLength,
    motion_mid_block_layers_per_block: config.useMotionMidBlock ? config.midBlockLayers : 1,
    motion_norm_num_groups: config.normNumGroups,
    motion_num_attention_heads: heads.every((h) => h === heads[0]) ? heads[0] : [...heads],
    use_motion_mid_block: config.useMotionMidBlock,
  };
  if (config.transformerLayers !== 1) {
    json["motion_transformer_layers_per_block"] = config.transformerLayers;
  }
  return json;
}

/**
 * Throws a RangeError when `motion` cannot be paired with a UNet of config `unet` (a motion
 * module for another base model: SD 1.5's four blocks against SDXL's three, other channels,
 * another number of resnets per block, a mid-block module where the UNet has no mid
 * attention).
 *
 * @example
 * ```ts
 * import { parseUnetConfig } from "./config.ts";
 * import { assertMotionFits, parseMotionConfig } from "./motion.ts";
 * const unet = parseUnetConfig({ block_out_channels: [320, 640, 1280, 1280] });
 * assertMotionFits(unet, parseMotionConfig({}));
 * ```
 */
export function assertMotionFits(unet: UnetConfig, motion: MotionConfig): void {
  const prefix = "Cannot use this motion module with this model:";
  const hint = "use a motion module made for this base model (mm_sd_* and v3_sd15_mm for " +
    "SD 1.x, mm_sdxl_* for SDXL)";
  const a = motion.blockOutChannels;
  const b = unet.blockOutChannels;
  if (a.length !== b.length || a.some((ch, i) => ch !== b[i])) {
    throw new RangeError(
      `${prefix} its blocks have [${a.join(", ")}] channels, the UNet's [${b.join(", ")}]; ${hint}`,
    );
  }
  const odd = unet.layersPerBlock.findIndex((l) => l !== motion.layersPerBlock);
  if (odd >= 0) {
    throw new RangeError(
      `${prefix} it has ${motion.layersPerBlock} motion layers per block but UNet block ${odd} ` +
        `has ${unet.layersPerBlock[odd]} resnets; ${hint}`,
    );
  }
  if (motion.useMotionMidBlock) {
    if (unet.midBlockType !== "UNetMidBlock2DCrossAttn") {
      throw new RangeError(
        `${prefix} it has a mid-block motion module but the UNet's mid block ` +
          `(${unet.midBlockType ?? "none"}) has no attention to follow; ${hint}`,
      );
    }
    if (motion.midBlockLayers !== 1) {
      throw new RangeError(
        `${prefix} its mid block has ${motion.midBlockLayers} motion layers; the UNet's mid ` +
          `block pairs exactly one with its attention`,
      );
    }
  }
  b.forEach((ch, i) => {
    const heads = motion.numAttentionHeads[i]!;
    if (ch % heads !== 0 || ch % unet.normNumGroups !== 0) {
      throw new RangeError(
        `${prefix} block ${i} has ${ch} channels, not divisible into ${heads} motion heads and ` +
          `${unet.normNumGroups} norm groups`,
      );
    }
  });
}

/**
 * The sinusoidal frame-position table of Diffusers' `SinusoidalPositionalEmbedding` (and of
 * AnimateDiff's `PositionalEncoding`): `pe[p, 2i] = sin(p * d_i)`, `pe[p, 2i+1] = cos(p * d_i)`
 * with `d_i = exp(2i * -ln(10000) / dim)`, in float32 as torch computes it. Row-major
 * `[maxLen, dim]` (the stored buffer is `[1, maxLen, dim]`).
 *
 * @example
 * ```ts
 * import { sinusoidalPositions } from "./motion.ts";
 * const pe = sinusoidalPositions(24, 4);
 * console.assert(pe[0] === 0 && pe[1] === 1 && pe.length === 96);
 * ```
 */
export function sinusoidalPositions(maxLen: number, dim: number): Float32Array {
  const f = Math.fround;
  const scale = f(-Math.log(10000) / dim);
  const out = new Float32Array(maxLen * dim);
  for (let p = 0; p < maxLen; p++) {
    for (let i = 0; 2 * i < dim; i++) {
      const div = f(Math.exp(f(2 * i * scale)));
      const arg = f(p * div);
      out[p * dim + 2 * i] = Math.sin(arg);
      if (2 * i + 1 < dim) out[p * dim + 2 * i + 1] = Math.cos(arg);
    }
  }
  return out;
}

/**
 * Repeats each row of `x` (`[b, ...]`) `batch / b` times, consecutively (torch
 * `repeat_interleave(batch / b, dim=0)`), giving `[batch, ...]`; `batch` is a 1-D int64 `[1]`.
 * With `b = batch` it is the identity, with `b = 1` a broadcast. How the UNet spreads one
 * prompt's `encoder_hidden_states` (or timestep) over the frames of its clip.
 *
 * @example
 * ```ts ignore
 * // [B, L, D] -> [B*F, L, D]
 * const perFrame = repeatToBatch(g, encoderHiddenStates, batchTimesFrames);
 * ```
 */
export function repeatToBatch(g: GraphBuilder, x: Value, batch: Value): Value {
  const shape = g.op("Shape", [x]);
  const rows = g.op("Slice", [shape, g.ints([0]), g.ints([1])]);
  const rest = g.op("Slice", [shape, g.ints([1]), g.ints([Number.MAX_SAFE_INTEGER])]);
  const times = g.op("Div", [batch, rows]);
  // [b, ...] -> [b, 1, ...] -> [b, batch/b, ...] -> [batch, ...]
  const spread = g.op("Expand", [
    g.op("Unsqueeze", [x, g.ints([1])]),
    g.op("Concat", [rows, times, rest], { axis: 0 }),
  ]);
  return g.op("Reshape", [spread, g.op("Concat", [batch, rest], { axis: 0 })]);
}

/** Options of {@linkcode transformerTemporal}. */
export interface TransformerTemporalOptions {
  channels: number;
  heads: number;
  /** Group-norm groups (the UNet's `norm_num_groups`). */
  groups: number;
  /** Transformer blocks (1 in every published motion module). */
  layers: number;
  /** Rows of each block's `pos_embed.pe` table. */
  maxSeqLength: number;
}

/**
 * Diffusers `BasicTransformerBlock` as a motion module uses it: two self-attentions over the
 * frames of each pixel (`attn1`, `attn2`, no q/k/v biases), each after a layer norm and with the
 * frame positions added to its input, then a GEGLU feed-forward; all residual. `x` is
 * `[B*H*W*F, dim]` (frames innermost), `frames` the 1-D int64 `[F]`.
 */
function temporalTransformerBlock(
  c: ModelContext,
  name: string,
  x: Value,
  frames: Value,
  layout: { batch: Value },
  o: { dim: number; heads: number; maxSeqLength: number },
): Value {
  const g = c.g;
  const pe = c.param(`${name}.pos_embed.pe`, [1, o.maxSeqLength, o.dim]);
  const positions = g.scope(`${name}.pos_embed`, () => {
    // pe[:, :F]: [1, maxLen, dim] -> [1, F, dim]; F beyond maxLen fails in the Add below.
    const table = g.op("Slice", [pe, g.ints([0]), frames, g.ints([1])]);
    return {
      table,
      // [N*F, dim] <-> [N, F, dim]
      split: g.op("Concat", [g.ints([-1]), frames, g.ints([o.dim])], { axis: 0 }),
    };
  });
  const withPositions = (v: Value) =>
    g.scope(`${name}.pos_embed`, () => {
      // [N*F, dim] -> [N, F, dim] + [1, F, dim] -> [N*F, dim]
      const added = g.op("Add", [g.op("Reshape", [v, positions.split]), positions.table]);
      return g.op("Reshape", [added, g.ints([-1, o.dim])]);
    });
  const attn = { queryDim: o.dim, heads: o.heads, headDim: o.dim / o.heads, qkvBias: false };
  let h = x;
  for (const [norm, block] of [["norm1", "attn1"], ["norm2", "attn2"]] as const) {
    const normed = withPositions(layerNorm(c, `${name}.${norm}`, h, o.dim, 1e-5));
    h = g.op("Add", [attention(c, `${name}.${block}`, normed, null, layout, attn), h]);
  }
  const n3 = layerNorm(c, `${name}.norm3`, h, o.dim, 1e-5);
  return g.op("Add", [feedForwardGeglu(c, `${name}.ff`, n3, o.dim), h]);
}

/**
 * Diffusers `TransformerTemporalModel` (transformers/transformer_temporal.py) on frames-as-batch
 * input: `x` is `[B*F, C, H, W]` with the frames of each clip consecutive (`(batch frames)`),
 * `frames` is the 1-D int64 `[F]`. Group norm over each clip's `[C, F, H, W]`, `proj_in`,
 * attention across the F frames at every pixel, `proj_out`, plus the input. Returns
 * `[B*F, C, H, W]`.
 *
 * @example
 * ```ts ignore
 * h = transformerTemporal(c, "down_blocks.0.motion_modules.0", h, frames, {
 *   channels: 320, heads: 8, groups: 32, layers: 1, maxSeqLength: 32 });
 * ```
 */
export function transformerTemporal(
  c: ModelContext,
  name: string,
  x: Value,
  frames: Value,
  o: TransformerTemporalOptions,
): Value {
  const g = c.g;
  const ch = o.channels;
  if (ch % o.heads !== 0) {
    throw new RangeError(
      `Cannot build ${c.what}: "${name}" has ${ch} channels, not divisible into ${o.heads} heads`,
    );
  }
  const dims = g.scope(name, () => {
    const shape = g.op("Shape", [x]);
    const batchFrames = g.op("Slice", [shape, g.ints([0]), g.ints([1])]);
    const height = g.op("Slice", [shape, g.ints([2]), g.ints([3])]);
    const width = g.op("Slice", [shape, g.ints([3]), g.ints([4])]);
    const clips = g.op("Div", [batchFrames, frames]);
    // Attention runs over sequences of F frames, one per clip and pixel: B*H*W of them.
    const sequences = g.op("Mul", [clips, g.op("Mul", [height, width])]);
    return { shape, clips, sequences };
  });
  const clipMajor = g.scope(name, () => {
    // [B*F, C, H, W] -> [B, F, C, H*W] -> [B, C, F, H*W]
    const split = g.op("Concat", [dims.clips, frames, g.ints([ch, -1])], { axis: 0 });
    return g.op("Transpose", [g.op("Reshape", [x, split])], { perm: [0, 2, 1, 3] });
  });
  // GroupNorm(eps 1e-6) over each clip's [C, F, H*W] in groups of channels, as Diffusers does.
  const normed = groupNorm(c, `${name}.norm`, clipMajor, ch, o.groups, 1e-6);
  const tokens = g.scope(name, () =>
    // [B, C, F, H*W] -> [B, H*W, F, C] -> [B*H*W*F, C]
    g.op("Reshape", [g.op("Transpose", [normed], { perm: [0, 3, 2, 1] }), g.ints([-1, ch])]));
  let h = linear(c, `${name}.proj_in`, tokens, ch, ch);
  for (let i = 0; i < o.layers; i++) {
    h = temporalTransformerBlock(c, `${name}.transformer_blocks.${i}`, h, frames, {
      batch: dims.sequences,
    }, { dim: ch, heads: o.heads, maxSeqLength: o.maxSeqLength });
  }
  h = linear(c, `${name}.proj_out`, h, ch, ch);
  return g.scope(name, () => {
    // [B*H*W*F, C] -> [B, H*W, F, C] -> [B, F, C, H*W] -> [B*F, C, H, W]
    const split = g.op("Concat", [dims.clips, g.ints([-1]), frames, g.ints([ch])], { axis: 0 });
    const framesFirst = g.op("Transpose", [g.op("Reshape", [h, split])], { perm: [0, 2, 3, 1] });
    return g.op("Add", [g.op("Reshape", [framesFirst, dims.shape]), x]);
  });
}

/** Where the motion modules of a MotionAdapter sit, with their channels and heads. */
export interface MotionModuleSite {
  /** Parameter-name prefix, e.g. `up_blocks.1.motion_modules.2`. */
  name: string;
  channels: number;
  heads: number;
}

/**
 * Every motion module of an adapter with this config, in MotionAdapter order: down blocks
 * (`layersPerBlock` each), the mid block, up blocks (`layersPerBlock + 1` each, channels
 * reversed).
 *
 * @example
 * ```ts
 * import { motionModuleSites, parseMotionConfig } from "./motion.ts";
 * const sites = motionModuleSites(parseMotionConfig({ block_out_channels: [32, 64] }));
 * console.assert(sites.length === 2 * 2 + 1 + 2 * 3);
 * ```
 */
export function motionModuleSites(config: MotionConfig): MotionModuleSite[] {
  const boc = config.blockOutChannels;
  const n = boc.length;
  const heads = config.numAttentionHeads;
  const sites: MotionModuleSite[] = [];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < config.layersPerBlock; j++) {
      sites.push({
        name: `down_blocks.${i}.motion_modules.${j}`,
        channels: boc[i]!,
        heads: heads[i]!,
      });
    }
  }
  for (let j = 0; j < config.midBlockLayers; j++) {
    sites.push({
      name: `mid_block.motion_modules.${j}`,
      channels: boc[n - 1]!,
      heads: heads[n - 1]!,
    });
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= config.layersPerBlock; j++) {
      sites.push({
        name: `up_blocks.${i}.motion_modules.${j}`,
        channels: boc[n - 1 - i]!,
        heads: heads[n - 1 - i]!,
      });
    }
  }
  return sites;
}

/**
 * Names and shapes of a MotionAdapter's weights (Diffusers names, `pos_embed.pe` buffers
 * included), exactly as {@linkcode transformerTemporal} reads them.
 *
 * @example
 * ```ts
 * import { motionParameterShapes, parseMotionConfig } from "./motion.ts";
 * const shapes = motionParameterShapes(parseMotionConfig({ block_out_channels: [32, 64] }));
 * const pe = "down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe";
 * console.assert(shapes.get(pe)?.join() === "1,32,32");
 * ```
 */
export function motionParameterShapes(config: MotionConfig): Map<string, number[]> {
  return collectParameterShapes(() => {
    const g = new GraphBuilder("motion_adapter");
    const c = new ModelContext(g, WHAT, new Map());
    const frames = g.input("num_frames", "int64", [1]);
    for (const site of motionModuleSites(config)) {
      const x = g.input(`${site.name}.x`, "float32", ["batch", site.channels, "h", "w"]);
      transformerTemporal(c, site.name, x, frames, {
        channels: site.channels,
        heads: site.heads,
        // Shapes do not depend on the group count; 1 divides any width.
        groups: 1,
        layers: config.transformerLayers,
        maxSeqLength: config.maxSeqLength,
      });
    }
  });
}
