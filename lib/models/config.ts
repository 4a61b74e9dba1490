/**
 * Diffusers `config.json` parsing for UNet2DConditionModel and AutoencoderKL: snake_case JSON in,
 * camelCase types out, with every per-block list normalised the way Diffusers 0.27 does it in
 * `UNet2DConditionModel.__init__` (src/diffusers/models/unets/unet_2d_condition.py) and
 * `AutoencoderKL.__init__` (src/diffusers/models/autoencoders/autoencoder_kl.py).
 *
 * Features this project's builders do not implement (class embeddings, GLIGEN, fourier time
 * embeddings, ...) are refused here with a RangeError naming the key, rather than ignored.
 *
 * @module
 */

/** Down-block types the UNet builder knows. */
export type UnetDownBlockType = "DownBlock2D" | "CrossAttnDownBlock2D";
/** Up-block types the UNet builder knows. */
export type UnetUpBlockType = "UpBlock2D" | "CrossAttnUpBlock2D";
/** Mid-block types the UNet builder knows (`null`: no mid block). */
export type UnetMidBlockType = "UNetMidBlock2DCrossAttn" | "UNetMidBlock2D" | null;

/** A parsed, normalised UNet2DConditionModel config. Per-block lists have one entry per block. */
export interface UnetConfig {
  sampleSize: number;
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: UnetDownBlockType[];
  midBlockType: UnetMidBlockType;
  upBlockTypes: UnetUpBlockType[];
  blockOutChannels: number[];
  /** Resnets per down block (up blocks have one more). */
  layersPerBlock: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  normNumGroups: number;
  normEps: number;
  /** Per down block. */
  crossAttentionDim: number[];
  /**
   * Attention heads per down block. Diffusers' config key `attention_head_dim` really holds the
   * number of heads (diffusers issue 2011), so this is `num_attention_heads ?? attention_head_dim`.
   */
  numAttentionHeads: number[];
  /** Transformer layers, per down block then per resnet layer. */
  transformerLayersPerBlock: number[][];
  /** Transformer layers, per up block then per resnet layer. */
  reverseTransformerLayersPerBlock: number[][];
  /** SD 2.x/SDXL: proj_in/proj_out are Linear `[C, C]` instead of 1x1 Conv `[C, C, 1, 1]`. */
  useLinearProjection: boolean;
  /**
   * SD 2.1: attention scores in fp32 under fp16. The graphs are fp32 throughout, so this
   * changes nothing in them; it is kept for callers that build fp16 graphs.
   */
  upcastAttention: boolean;
  resnetOutScaleFactor: number;
  timeEmbedDim: number;
  convInKernel: number;
  convOutKernel: number;
  /** SDXL: `"text_time"` adds `text_embeds` + `time_ids` inputs. */
  additionEmbedType: "text_time" | null;
  additionTimeEmbedDim: number | null;
  projectionClassEmbeddingsInputDim: number | null;
  /**
   * LCM guidance embedding width (`time_cond_proj_dim`): the UNet takes a `timestep_cond` input
   * projected by `time_embedding.cond_proj` (bias-free) and added to the timestep sinusoids
   * before `linear_1`. Null for models without one.
   */
  timeCondProjDim: number | null;
}

/** A parsed AutoencoderKL config. */
export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  downBlockTypes: "DownEncoderBlock2D"[];
  upBlockTypes: "UpDecoderBlock2D"[];
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  sampleSize: number;
  scalingFactor: number;
  /** SD3/Flux-style shift (Diffusers applies `(z - shift) * scale`); 0 when absent. */
  shiftFactor: number;
  /** Per-channel latent mean/std (SDXL-style `latents_mean`), null when absent. */
  latentsMean: number[] | null;
  latentsStd: number[] | null;
  midBlockAddAttention: boolean;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
}

type Json = Record<string, unknown>;

function fail(what: string, key: string, message: string): never {
  throw new RangeError(`Cannot use ${what} config: "${key}" ${message}`);
}

function getNumber(c: Json, what: string, key: string, def: number): number {
  const v = c[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    fail(what, key, `must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function getInt(c: Json, what: string, key: string, def: number): number {
  const v = getNumber(c, what, key, def);
  if (!Number.isInteger(v) || v < 0) fail(what, key, `must be a non-negative integer, got ${v}`);
  return v;
}

function getBool(c: Json, what: string, key: string, def: boolean): boolean {
  const v = c[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== "boolean") fail(what, key, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function getStrings(c: Json, what: string, key: string, def: string[]): string[] {
  const v = c[key];
  if (v === undefined || v === null) return def;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
    fail(what, key, `must be a list of strings, got ${JSON.stringify(v)}`);
  }
  return v as string[];
}

function getInts(c: Json, what: string, key: string, def: number[]): number[] {
  const v = c[key];
  if (v === undefined || v === null) return def;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "number" || !Number.isInteger(s) || s < 0)) {
    fail(what, key, `must be a list of non-negative integers, got ${JSON.stringify(v)}`);
  }
  return v as number[];
}

/** An int or a list with one int per block → one int per block. */
function perBlock(c: Json, what: string, key: string, def: number | null, n: number): number[] {
  const v = c[key] ?? def;
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return new Array<number>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every((x) => typeof x === "number" && x >= 0)) {
    return v as number[];
  }
  return fail(what, key, `must be an integer or a list of ${n} integers, got ${JSON.stringify(v)}`);
}

/** An int, or per block an int or a per-layer list → per block, per layer. */
function perBlockPerLayer(
  v: unknown,
  what: string,
  key: string,
  layers: number[],
): number[][] {
  const n = layers.length;
  const expand = (x: unknown, i: number): number[] => {
    const m = layers[i]!;
    if (typeof x === "number" && Number.isInteger(x) && x >= 0) return new Array<number>(m).fill(x);
    if (Array.isArray(x) && x.length === m && x.every((y) => typeof y === "number" && y >= 0)) {
      return x as number[];
    }
    return fail(
      what,
      key,
      `entry ${i} must be an integer or a list of ${m}, got ${JSON.stringify(x)}`,
    );
  };
  if (typeof v === "number") return layers.map((_, i) => expand(v, i));
  if (Array.isArray(v) && v.length === n) return v.map((x, i) => expand(x, i));
  return fail(what, key, `must be an integer or a list of ${n} entries, got ${JSON.stringify(v)}`);
}

/** Keys whose non-default values select features the builders do not implement. */
const UNET_UNSUPPORTED: Array<[key: string, allowed: unknown[]]> = [
  ["act_fn", ["silu", undefined]],
  ["class_embed_type", [null, undefined]],
  ["num_class_embeds", [null, undefined]],
  ["class_embeddings_concat", [false, undefined]],
  ["encoder_hid_dim", [null, undefined]],
  ["encoder_hid_dim_type", [null, undefined]],
  ["time_embedding_type", ["positional", undefined]],
  ["time_embedding_act_fn", [null, undefined]],
  ["timestep_post_act", [null, undefined]],
  ["dual_cross_attention", [false, undefined]],
  ["only_cross_attention", [false, undefined]],
  ["mid_block_only_cross_attention", [null, false, undefined]],
  ["resnet_time_scale_shift", ["default", undefined]],
  ["resnet_skip_time_act", [false, undefined]],
  ["attention_type", ["default", undefined]],
  ["cross_attention_norm", [null, undefined]],
];

/**
 * Parses a Diffusers UNet2DConditionModel `config.json` object (defaults as in Diffusers 0.27).
 *
 * @example
 * ```ts
 * import { parseUnetConfig } from "./config.ts";
 * const config = parseUnetConfig({ block_out_channels: [32, 64], attention_head_dim: 8,
 *   down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
 *   up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim: 32 });
 * console.assert(config.numAttentionHeads[0] === 8);
 * ```
 */
export function parseUnetConfig(json: unknown): UnetConfig {
  const what = "UNet2DConditionModel";
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`Cannot use ${what} config: expected a JSON object`);
  }
  const c = json as Json;
  for (const [key, allowed] of UNET_UNSUPPORTED) {
    if (!allowed.includes(c[key])) {
      fail(what, key, `= ${JSON.stringify(c[key])} is not supported by denoise's UNet builder`);
    }
  }
  const downBlockTypes = getStrings(c, what, "down_block_types", [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ]);
  const upBlockTypes = getStrings(c, what, "up_block_types", [
    "UpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
  ]);
  for (const t of downBlockTypes) {
    if (t !== "DownBlock2D" && t !== "CrossAttnDownBlock2D") {
      fail(
        what,
        "down_block_types",
        `contains "${t}"; supported: DownBlock2D, CrossAttnDownBlock2D`,
      );
    }
  }
  for (const t of upBlockTypes) {
    if (t !== "UpBlock2D" && t !== "CrossAttnUpBlock2D") {
      fail(what, "up_block_types", `contains "${t}"; supported: UpBlock2D, CrossAttnUpBlock2D`);
    }
  }
  const n = downBlockTypes.length;
  const blockOutChannels = getInts(c, what, "block_out_channels", [320, 640, 1280, 1280]);
  if (upBlockTypes.length !== n) {
    fail(
      what,
      "up_block_types",
      `has ${upBlockTypes.length} entries but down_block_types has ${n}`,
    );
  }
  if (blockOutChannels.length !== n) {
    fail(what, "block_out_channels", `has ${blockOutChannels.length} entries, expected ${n}`);
  }
  const midRaw = c["mid_block_type"] === undefined
    ? "UNetMidBlock2DCrossAttn"
    : c["mid_block_type"];
  if (midRaw !== "UNetMidBlock2DCrossAttn" && midRaw !== "UNetMidBlock2D" && midRaw !== null) {
    fail(what, "mid_block_type", `= ${JSON.stringify(midRaw)} is not supported`);
  }
  if (c["num_attention_heads"] !== undefined && c["num_attention_heads"] !== null) {
    // Diffusers 0.27 refuses it too (diffusers issue 2011): heads come from attention_head_dim.
    fail(
      what,
      "num_attention_heads",
      "must be null; Diffusers reads heads from attention_head_dim",
    );
  }
  const layersPerBlock = perBlock(c, what, "layers_per_block", 2, n);
  const numAttentionHeads = perBlock(c, what, "attention_head_dim", 8, n);
  const crossAttentionDim = perBlock(c, what, "cross_attention_dim", 1280, n);
  const tlpb = c["transformer_layers_per_block"] ?? 1;
  const rtlpb = c["reverse_transformer_layers_per_block"] ?? null;
  if (Array.isArray(tlpb) && tlpb.some((x) => Array.isArray(x)) && rtlpb === null) {
    fail(what, "reverse_transformer_layers_per_block", "is required for an asymmetrical UNet");
  }
  const transformerLayersPerBlock = perBlockPerLayer(
    tlpb,
    what,
    "transformer_layers_per_block",
    layersPerBlock,
  );
  const upLayers = [...layersPerBlock].reverse().map((l) => l + 1);
  // Diffusers: list(reversed(transformer_layers_per_block)) with ints broadcast per layer.
  const reversedDown = Array.isArray(tlpb) ? [...tlpb].reverse() : tlpb;
  const reverseTransformerLayersPerBlock = perBlockPerLayer(
    rtlpb ?? reversedDown,
    what,
    "reverse_transformer_layers_per_block",
    upLayers,
  );
  const additionEmbedType = c["addition_embed_type"] ?? null;
  if (additionEmbedType !== null && additionEmbedType !== "text_time") {
    fail(
      what,
      "addition_embed_type",
      `= ${JSON.stringify(additionEmbedType)} is not supported; only "text_time" (SDXL)`,
    );
  }
  const optInt = (key: string): number | null =>
    c[key] === null || c[key] === undefined ? null : getInt(c, what, key, 0);
  const additionTimeEmbedDim = optInt("addition_time_embed_dim");
  const projectionClassEmbeddingsInputDim = optInt("projection_class_embeddings_input_dim");
  if (
    additionEmbedType === "text_time" &&
    (additionTimeEmbedDim === null || projectionClassEmbeddingsInputDim === null)
  ) {
    fail(
      what,
      "addition_embed_type",
      '"text_time" needs addition_time_embed_dim and projection_class_embeddings_input_dim',
    );
  }
  const timeEmbeddingDim = optInt("time_embedding_dim");
  const timeCondProjDim = optInt("time_cond_proj_dim");
  if (timeCondProjDim === 0) fail(what, "time_cond_proj_dim", "must be positive or null, got 0");
  const sampleSizeRaw = c["sample_size"];
  const sampleSize = Array.isArray(sampleSizeRaw) && typeof sampleSizeRaw[0] === "number"
    ? sampleSizeRaw[0]
    : getInt(c, what, "sample_size", 64);
  return {
    sampleSize,
    inChannels: getInt(c, what, "in_channels", 4),
    outChannels: getInt(c, what, "out_channels", 4),
    centerInputSample: getBool(c, what, "center_input_sample", false),
    flipSinToCos: getBool(c, what, "flip_sin_to_cos", true),
    freqShift: getNumber(c, what, "freq_shift", 0),
    downBlockTypes: downBlockTypes as UnetDownBlockType[],
    midBlockType: midRaw,
    upBlockTypes: upBlockTypes as UnetUpBlockType[],
    blockOutChannels,
    layersPerBlock,
    downsamplePadding: getInt(c, what, "downsample_padding", 1),
    midBlockScaleFactor: getNumber(c, what, "mid_block_scale_factor", 1),
    normNumGroups: getInt(c, what, "norm_num_groups", 32),
    normEps: getNumber(c, what, "norm_eps", 1e-5),
    crossAttentionDim,
    numAttentionHeads,
    transformerLayersPerBlock,
    reverseTransformerLayersPerBlock,
    useLinearProjection: getBool(c, what, "use_linear_projection", false),
    upcastAttention: getBool(c, what, "upcast_attention", false),
    resnetOutScaleFactor: getNumber(c, what, "resnet_out_scale_factor", 1),
    timeEmbedDim: timeEmbeddingDim ?? blockOutChannels[0]! * 4,
    convInKernel: getInt(c, what, "conv_in_kernel", 3),
    convOutKernel: getInt(c, what, "conv_out_kernel", 3),
    additionEmbedType,
    additionTimeEmbedDim,
    projectionClassEmbeddingsInputDim,
    timeCondProjDim,
  };
}

/**
 * Parses a Diffusers AutoencoderKL `config.json` object (defaults as in Diffusers 0.27).
 *
 * @example
 * ```ts
 * import { parseVaeConfig } from "./config.ts";
 * const config = parseVaeConfig({ block_out_channels: [32, 64], latent_channels: 4,
 *   down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D"],
 *   up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D"] });
 * console.assert(config.scalingFactor === 0.18215);
 * ```
 */
export function parseVaeConfig(json: unknown): VaeConfig {
  const what = "AutoencoderKL";
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`Cannot use ${what} config: expected a JSON object`);
  }
  const c = json as Json;
  if (c["act_fn"] !== undefined && c["act_fn"] !== "silu") {
    fail(what, "act_fn", `= ${JSON.stringify(c["act_fn"])} is not supported; only "silu"`);
  }
  const downBlockTypes = getStrings(c, what, "down_block_types", ["DownEncoderBlock2D"]);
  const upBlockTypes = getStrings(c, what, "up_block_types", ["UpDecoderBlock2D"]);
  if (downBlockTypes.some((t) => t !== "DownEncoderBlock2D")) {
    fail(what, "down_block_types", "may only contain DownEncoderBlock2D");
  }
  if (upBlockTypes.some((t) => t !== "UpDecoderBlock2D")) {
    fail(what, "up_block_types", "may only contain UpDecoderBlock2D");
  }
  const blockOutChannels = getInts(c, what, "block_out_channels", [64]);
  if (
    blockOutChannels.length !== downBlockTypes.length ||
    upBlockTypes.length !== downBlockTypes.length
  ) {
    fail(
      what,
      "block_out_channels",
      "must have as many entries as down_block_types and up_block_types",
    );
  }
  const floats = (key: string): number[] | null => {
    const v = c[key];
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) {
      fail(what, key, "must be a list of numbers");
    }
    return v as number[];
  };
  const sampleSizeRaw = c["sample_size"];
  const sampleSize = Array.isArray(sampleSizeRaw) && typeof sampleSizeRaw[0] === "number"
    ? sampleSizeRaw[0]
    : getInt(c, what, "sample_size", 32);
  return {
    inChannels: getInt(c, what, "in_channels", 3),
    outChannels: getInt(c, what, "out_channels", 3),
    downBlockTypes: downBlockTypes as "DownEncoderBlock2D"[],
    upBlockTypes: upBlockTypes as "UpDecoderBlock2D"[],
    blockOutChannels,
    layersPerBlock: getInt(c, what, "layers_per_block", 1),
    latentChannels: getInt(c, what, "latent_channels", 4),
    normNumGroups: getInt(c, what, "norm_num_groups", 32),
    sampleSize,
    scalingFactor: getNumber(c, what, "scaling_factor", 0.18215),
    shiftFactor: getNumber(c, what, "shift_factor", 0),
    latentsMean: floats("latents_mean"),
    latentsStd: floats("latents_std"),
    midBlockAddAttention: getBool(c, what, "mid_block_add_attention", true),
    useQuantConv: getBool(c, what, "use_quant_conv", true),
    usePostQuantConv: getBool(c, what, "use_post_quant_conv", true),
  };
}
