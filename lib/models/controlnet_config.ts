/**
 * Diffusers ControlNetModel `config.json` parsing (Diffusers 0.27, src/diffusers/models/
 * controlnet.py `ControlNetModel.__init__`), and the base model family ("sd15" | "sd2" | "sdxl")
 * a net or a UNet belongs to, so a pipeline can refuse a net made for another base.
 *
 * A ControlNet's encoder half (conv_in, time embedding, down blocks, mid block) has exactly the
 * layout of its UNet's, so the shared keys are parsed by {@linkcode parseUnetConfig} and the
 * result is a {@linkcode UnetEncoderConfig} plus the ControlNet's own fields.
 *
 * @module
 */
import { parseUnetConfig, type UnetConfig } from "./config.ts";
import type { UnetEncoderConfig } from "./unet.ts";

/**
 * The base model family a UNet or ControlNet belongs to. Nets of one family do not fit UNets of
 * another (different cross-attention widths, block layouts or added embeddings).
 */
export type ModelBase = "sd15" | "sd2" | "sdxl";

/** A parsed ControlNetModel config: the encoder half of a UNet plus the ControlNet's fields. */
export interface ControlnetConfig extends UnetEncoderConfig {
  /** Channels of `controlnet_cond` (3: an RGB image). */
  conditioningChannels: number;
  /** Widths of `controlnet_cond_embedding` (`conditioning_embedding_out_channels`). */
  conditioningEmbeddingOutChannels: number[];
  /** `"bgr"` nets flip the channels of `controlnet_cond` first. */
  channelOrder: "rgb" | "bgr";
  /**
   * Shuffle-type nets (`global_pool_conditions`): every residual is averaged over H and W, and
   * guess mode's per-residual scaling does not apply.
   */
  globalPoolConditions: boolean;
  /** The family the net was trained for (see {@linkcode modelBase}). */
  base: ModelBase;
}

/** Keys ControlNetModel.__init__ takes (others in a config.json are ignored, as Diffusers does). */
const CONTROLNET_KEYS = new Set([
  "in_channels",
  "conditioning_channels",
  "flip_sin_to_cos",
  "freq_shift",
  "down_block_types",
  "mid_block_type",
  "only_cross_attention",
  "block_out_channels",
  "layers_per_block",
  "downsample_padding",
  "mid_block_scale_factor",
  "act_fn",
  "norm_num_groups",
  "norm_eps",
  "cross_attention_dim",
  "transformer_layers_per_block",
  "encoder_hid_dim",
  "encoder_hid_dim_type",
  "attention_head_dim",
  "num_attention_heads",
  "use_linear_projection",
  "class_embed_type",
  "addition_embed_type",
  "addition_time_embed_dim",
  "num_class_embeds",
  "upcast_attention",
  "resnet_time_scale_shift",
  "projection_class_embeddings_input_dim",
  "controlnet_conditioning_channel_order",
  "conditioning_embedding_out_channels",
  "global_pool_conditions",
  "addition_embed_type_num_heads",
]);

function fail(key: string, message: string): never {
  throw new RangeError(`Cannot use ControlNetModel config: "${key}" ${message}`);
}

/**
 * The family of a UNet or ControlNet config, from its shape: `"sdxl"` with the `text_time` added
 * embedding; `"sd2"` with cross-attention width 1024 (OpenCLIP ViT-H), or, for widths that are
 * neither 768 nor 1024 (tiny test models), with linear projections; `"sd15"` otherwise.
 *
 * @example
 * ```ts
 * import { parseUnetConfig } from "./config.ts";
 * import { modelBase } from "./controlnet_config.ts";
 * console.assert(modelBase(parseUnetConfig({ cross_attention_dim: 768 })) === "sd15");
 * console.assert(modelBase(parseUnetConfig({ cross_attention_dim: 1024 })) === "sd2");
 * ```
 */
export function modelBase(
  config: Pick<UnetConfig, "additionEmbedType" | "crossAttentionDim" | "useLinearProjection">,
): ModelBase {
  if (config.additionEmbedType === "text_time") return "sdxl";
  const cross = config.crossAttentionDim[0];
  if (cross === 1024) return "sd2";
  if (cross === 768) return "sd15";
  return config.useLinearProjection ? "sd2" : "sd15";
}

/** How people name each family in messages. */
export const MODEL_BASE_LABELS: Readonly<Record<ModelBase, string>> = {
  sd15: "SD 1.x",
  sd2: "SD 2.x",
  sdxl: "SDXL",
};

/**
 * Parses a Diffusers ControlNetModel `config.json` object (defaults as in Diffusers 0.27).
 * Features the builder does not implement (class embeddings, `encoder_hid_dim`, added embeddings
 * other than SDXL's `text_time`, ...) are refused with a RangeError naming the key.
 *
 * @example
 * ```ts
 * import { parseControlnetConfig } from "./controlnet_config.ts";
 * const config = parseControlnetConfig({ block_out_channels: [32, 64], cross_attention_dim: 32,
 *   down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"], layers_per_block: 1,
 *   conditioning_embedding_out_channels: [8, 16] });
 * console.assert(config.conditioningEmbeddingOutChannels.join() === "8,16");
 * console.assert(config.base === "sd15");
 * ```
 */
export function parseControlnetConfig(json: unknown): ControlnetConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError("Cannot use ControlNetModel config: expected a JSON object");
  }
  const c = json as Record<string, unknown>;
  const unetJson: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) if (CONTROLNET_KEYS.has(k)) unetJson[k] = v;
  for (
    const k of [
      "conditioning_channels",
      "controlnet_conditioning_channel_order",
      "conditioning_embedding_out_channels",
      "global_pool_conditions",
      "addition_embed_type_num_heads",
    ]
  ) delete unetJson[k];
  // ControlNetModel: num_attention_heads = num_attention_heads or attention_head_dim (no error).
  if (c["num_attention_heads"] !== undefined && c["num_attention_heads"] !== null) {
    unetJson["attention_head_dim"] = c["num_attention_heads"];
    unetJson["num_attention_heads"] = null;
  }
  const mid = c["mid_block_type"] === undefined ? "UNetMidBlock2DCrossAttn" : c["mid_block_type"];
  if (mid !== "UNetMidBlock2DCrossAttn" && mid !== "UNetMidBlock2D") {
    fail("mid_block_type", `= ${JSON.stringify(mid)} is not a ControlNetModel mid block`);
  }
  unetJson["mid_block_type"] = mid;
  if (typeof c["layers_per_block"] !== "number" && c["layers_per_block"] !== undefined) {
    fail("layers_per_block", "must be one integer in a ControlNetModel config");
  }
  // The up path a UNet would mirror, so the shared parser's checks apply unchanged.
  const down = Array.isArray(c["down_block_types"]) ? c["down_block_types"] : undefined;
  if (down !== undefined) {
    unetJson["up_block_types"] = [...down].reverse().map((t) =>
      t === "CrossAttnDownBlock2D" ? "CrossAttnUpBlock2D" : "UpBlock2D"
    );
  }
  let unet: UnetConfig;
  try {
    unet = parseUnetConfig(unetJson);
  } catch (e) {
    if (e instanceof RangeError) {
      throw new RangeError(e.message.replace("UNet2DConditionModel", "ControlNetModel"));
    }
    throw e;
  }

  const conditioningChannels = c["conditioning_channels"] ?? 3;
  if (typeof conditioningChannels !== "number" || !Number.isInteger(conditioningChannels)) {
    fail(
      "conditioning_channels",
      `must be an integer, got ${JSON.stringify(conditioningChannels)}`,
    );
  }
  const embedding = c["conditioning_embedding_out_channels"] ?? [16, 32, 96, 256];
  if (
    !Array.isArray(embedding) || embedding.length === 0 ||
    embedding.some((x) => typeof x !== "number" || !Number.isInteger(x) || x <= 0)
  ) {
    fail(
      "conditioning_embedding_out_channels",
      `must be a non-empty list of positive integers, got ${JSON.stringify(embedding)}`,
    );
  }
  const order = c["controlnet_conditioning_channel_order"] ?? "rgb";
  if (order !== "rgb" && order !== "bgr") {
    fail(
      "controlnet_conditioning_channel_order",
      `must be "rgb" or "bgr", got ${JSON.stringify(order)}`,
    );
  }
  const pool = c["global_pool_conditions"] ?? false;
  if (typeof pool !== "boolean") fail("global_pool_conditions", "must be true or false");

  const encoder: UnetEncoderConfig = {
    inChannels: unet.inChannels,
    centerInputSample: false,
    flipSinToCos: unet.flipSinToCos,
    freqShift: unet.freqShift,
    downBlockTypes: unet.downBlockTypes,
    midBlockType: unet.midBlockType,
    blockOutChannels: unet.blockOutChannels,
    layersPerBlock: unet.layersPerBlock,
    downsamplePadding: unet.downsamplePadding,
    midBlockScaleFactor: unet.midBlockScaleFactor,
    normNumGroups: unet.normNumGroups,
    normEps: unet.normEps,
    crossAttentionDim: unet.crossAttentionDim,
    numAttentionHeads: unet.numAttentionHeads,
    transformerLayersPerBlock: unet.transformerLayersPerBlock,
    useLinearProjection: unet.useLinearProjection,
    resnetOutScaleFactor: 1,
    timeEmbedDim: unet.blockOutChannels[0]! * 4,
    convInKernel: 3,
    additionEmbedType: unet.additionEmbedType,
    additionTimeEmbedDim: unet.additionTimeEmbedDim,
    projectionClassEmbeddingsInputDim: unet.projectionClassEmbeddingsInputDim,
    timeCondProjDim: null,
  };
  return {
    ...encoder,
    conditioningChannels,
    conditioningEmbeddingOutChannels: embedding as number[],
    channelOrder: order,
    globalPoolConditions: pool,
    base: modelBase(encoder),
  };
}
