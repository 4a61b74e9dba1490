/**
 * ControlNetModel as an ONNX graph, built from a Diffusers config and weights: SD 1.x, SD 2.x
 * (linear projections, per-block head counts) and SDXL (`text_time` added embedding) nets.
 *
 * Follows `ControlNetModel.forward` of Diffusers 0.27 (src/diffusers/models/controlnet.py): the
 * conditioning image goes through `controlnet_cond_embedding` and is added to `conv_in(sample)`;
 * the UNet's encoder half (time embedding, down blocks, mid block: the same functions as
 * lib/models/unet.ts) runs on the sum; every skip state and the mid-block output pass through a
 * 1x1 "zero conv" (`controlnet_down_blocks.k`, `controlnet_mid_block`) and are scaled.
 *
 * Graph interface:
 * - `sample` float32 `[batch, in_channels, height, width]`
 * - `timestep` float32 `[timestep_batch]` (`[1]` for the whole batch, or one per sample)
 * - `encoder_hidden_states` float32 `[batch, sequence, cross_attention_dim]`
 * - `controlnet_cond` float32 `[cond_batch, conditioning_channels, 8*height, 8*width]`: the control
 *   image as Diffusers' pipelines feed it, RGB in [0, 1] (no [-1, 1] normalisation).
 *   `cond_batch` is `batch` or 1 (one image broadcast over the batch).
 * - `conditioning_scales` float32 `[num_residuals]`: one factor per output, in output order
 *   (see {@linkcode controlnetConditioningScales}): all equal to `conditioning_scale` normally,
 *   `logspace(-1, 0, num_residuals) * conditioning_scale` in guess mode. One session serves every
 *   scale, and Diffusers' per-step `controlnet_keep` is a scale of 0.
 * - SDXL (`addition_embed_type: "text_time"`): `text_embeds` `[batch, D]`, `time_ids` `[batch, N]`
 * - outputs: `down_block_additional_residual_<k>` and `mid_block_additional_residual`, named as the
 *   UNet graph's residual inputs (`buildUnet(..., { controlnetResiduals: true })`,
 *   {@linkcode unetResidualSpecs}), so they feed it directly; with several nets, add them first.
 *   With `global_pool_conditions` each is `[batch, C, 1, 1]` (the UNet broadcasts it).
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import { MODEL_BASE_LABELS, modelBase } from "./controlnet_config.ts";
import type { ControlnetConfig } from "./controlnet_config.ts";
import type { UnetConfig } from "./config.ts";
import { type AttentionKernel, conv2d, type GraphFloatType, ModelContext, silu } from "./layers.ts";
import {
  unetContext,
  unetConvIn,
  unetCrossAttentionDim,
  unetDownBlocks,
  unetMidBlock,
  type UnetResidualSpec,
  unetResidualSpecs,
  unetTimeEmbedding,
} from "./unet.ts";

/** Options of {@linkcode buildControlnet}. */
export interface ControlnetBuildOptions {
  /** Graph name (default "controlnet"). */
  name?: string;
  /** Attention kernel (default `"fused"`, onnxruntime's MultiHeadAttention). */
  attention?: AttentionKernel;
  /**
   * Float type of weights and activations (default `"float32"`). With `"float16"` the weights
   * must be float16 sources; inputs and outputs stay float32 and the scaling runs in float32.
   */
  floatType?: GraphFloatType;
  /**
   * Also output `controlnet_cond_embedding` `[cond_batch, C0, height, width]`, the conditioning
   * embedding before it is added to `conv_in(sample)` (for tests and inspection; default false).
   */
  conditioningEmbeddingOutput?: boolean;
}

/**
 * The outputs of a ControlNet graph with this config, in Diffusers order
 * (`down_block_res_samples[k]`, then `mid_block_res_sample`): the same names, channels and
 * downscales as the residual inputs of a UNet with the same down path.
 *
 * @example
 * ```ts
 * import { parseControlnetConfig } from "./controlnet_config.ts";
 * import { controlnetResidualSpecs } from "./controlnet.ts";
 * const specs = controlnetResidualSpecs(parseControlnetConfig({ cross_attention_dim: 768 }));
 * console.assert(specs.length === 13); // SD 1.5: 12 down residuals + mid
 * console.assert(specs[12]!.name === "mid_block_additional_residual");
 * ```
 */
export function controlnetResidualSpecs(config: ControlnetConfig): UnetResidualSpec[] {
  return unetResidualSpecs(config);
}

/** Options of {@linkcode controlnetConditioningScales}. */
export interface ConditioningScalesOptions {
  /**
   * Diffusers' `guess_mode`: residual k of n is scaled by `10^(-1 + k/(n-1))` (0.1 for the first,
   * 1.0 for the mid block), times the scale; not for `global_pool_conditions` nets (as Diffusers).
   * With classifier-free guidance Diffusers' pipelines also run the net on the conditional half
   * of the batch only and feed the UNet zeros for the unconditional half; that is the caller's.
   */
  guessMode?: boolean;
  /**
   * A1111's ControlNet extension "soft injection" (its control modes "My prompt is more
   * important" and "ControlNet is more important", hook.py): residual k is scaled by
   * `weight * 0.825 ** (12 - k)` (SD 1.x/2.x: 0.825^12 for the first, 1 for the mid block; SDXL
   * nets take the first 10 of those 13 values, as the extension cuts its list). Replaces guess
   * mode's scales; zeroing the unconditional half ("ControlNet is more important") is the
   * caller's.
   */
  soft?: boolean;
}

/**
 * The `conditioning_scales` input for one step: `scale` for every residual, guess mode's
 * `torch.logspace(-1, 0, n) * scale` (Diffusers 0.27 `ControlNetModel.forward` step 6), or A1111's
 * soft weights `scale * 0.825 ** (12 - k)`.
 *
 * @example
 * ```ts
 * import { parseControlnetConfig } from "./controlnet_config.ts";
 * import { controlnetConditioningScales } from "./controlnet.ts";
 * const config = parseControlnetConfig({ cross_attention_dim: 768 });
 * const plain = controlnetConditioningScales(config, 0.5);
 * console.assert(plain.length === 13 && plain.every((s) => s === 0.5));
 * const guess = controlnetConditioningScales(config, 1, { guessMode: true });
 * console.assert(Math.abs(guess[0]! - 0.1) < 1e-7 && guess[12] === 1);
 * const soft = controlnetConditioningScales(config, 1, { soft: true });
 * console.assert(soft[12] === 1 && soft[11] === Math.fround(0.825));
 * ```
 */
export function controlnetConditioningScales(
  config: ControlnetConfig,
  scale: number,
  options: ConditioningScalesOptions = {},
): Float32Array {
  if (!Number.isFinite(scale)) {
    throw new RangeError(`Cannot use ControlNet scale ${scale}: it must be a finite number`);
  }
  const n = controlnetResidualSpecs(config).length;
  const out = new Float32Array(n);
  const f = Math.fround;
  for (let k = 0; k < n; k++) {
    // A1111: param.weight * (0.825 ** float(12 - i)) in Python floats.
    // Diffusers: torch.logspace(-1, 0, n) in float32, then * conditioning_scale in float32.
    const s = options.soft
      ? scale * 0.825 ** (12 - k)
      : options.guessMode && !config.globalPoolConditions
      ? f(f(Math.pow(10, -1 + k / (n - 1))) * f(scale))
      : scale;
    out[k] = s;
  }
  return out;
}

/** Options of {@linkcode assertControlnetFitsUnet}. */
export interface ControlnetFitOptions {
  /** Names the net in the message (default "the ControlNet"). */
  controlnetName?: string;
  /** Names the model in the message (default "the model"). */
  modelName?: string;
}

/**
 * Throws a one-line RangeError when a ControlNet cannot feed a UNet: a net made for another base
 * family (naming both), another cross-attention width, or residuals of other channels.
 *
 * @example
 * ```ts
 * import { parseUnetConfig } from "./config.ts";
 * import { parseControlnetConfig } from "./controlnet_config.ts";
 * import { assertControlnetFitsUnet } from "./controlnet.ts";
 * const net = parseControlnetConfig({ cross_attention_dim: 768 });
 * assertControlnetFitsUnet(net, parseUnetConfig({ cross_attention_dim: 768 }));
 * let message = "";
 * try {
 *   assertControlnetFitsUnet(net, parseUnetConfig({ cross_attention_dim: 1024,
 *     use_linear_projection: true }));
 * } catch (e) {
 *   message = (e as Error).message;
 * }
 * console.assert(message.includes("SD 1.x") && message.includes("SD 2.x"));
 * ```
 */
export function assertControlnetFitsUnet(
  controlnet: ControlnetConfig,
  unet: UnetConfig,
  options: ControlnetFitOptions = {},
): void {
  const net = options.controlnetName ?? "the ControlNet";
  const model = options.modelName ?? "the model";
  const unetBase = modelBase(unet);
  if (controlnet.base !== unetBase) {
    throw new RangeError(
      `Cannot use ${net} with ${model}: the net is for ${MODEL_BASE_LABELS[controlnet.base]} ` +
        `and the model is ${MODEL_BASE_LABELS[unetBase]}; pick a ControlNet made for ` +
        MODEL_BASE_LABELS[unetBase],
    );
  }
  const a = controlnetResidualSpecs(controlnet).map((s) => s.channels).join(",");
  const b = unetResidualSpecs(unet).map((s) => s.channels).join(",");
  const crossA = controlnet.crossAttentionDim[0];
  const crossB = unet.crossAttentionDim[0];
  if (a !== b || crossA !== crossB) {
    throw new RangeError(
      `Cannot use ${net} with ${model}: its residual channels [${a}] and context width ` +
        `${crossA} do not match the UNet's [${b}] and ${crossB}; pick a ControlNet made for ` +
        "this model's architecture",
    );
  }
}

/**
 * `ControlNetConditioningEmbedding`: conv_in, SiLU, then pairs of 3x3 convs (the second of each
 * pair stride 2) each followed by SiLU, then conv_out. `[B, Cc, 8H, 8W] -> [B, C0, H, W]` for the
 * default four widths (three stride-2 convs).
 */
function conditioningEmbedding(
  c: ModelContext,
  config: ControlnetConfig,
  cond: Value,
): Value {
  const g = c.g;
  const name = "controlnet_cond_embedding";
  const widths = config.conditioningEmbeddingOutChannels;
  // [B, Cc, H, W] -> [B, w0, H, W]
  let h = conv2d(c, `${name}.conv_in`, cond, config.conditioningChannels, widths[0]!);
  h = g.scope(name, () => silu(g, h));
  for (let i = 0; i < widths.length - 1; i++) {
    const inCh = widths[i]!;
    const outCh = widths[i + 1]!;
    h = conv2d(c, `${name}.blocks.${2 * i}`, h, inCh, inCh);
    h = g.scope(name, () => silu(g, h));
    // [B, w_i, H, W] -> [B, w_{i+1}, H/2, W/2]
    h = conv2d(c, `${name}.blocks.${2 * i + 1}`, h, inCh, outCh, { stride: 2 });
    h = g.scope(name, () => silu(g, h));
  }
  // [B, w_last, H', W'] -> [B, C0, H', W']
  return conv2d(c, `${name}.conv_out`, h, widths[widths.length - 1]!, config.blockOutChannels[0]!);
}

/**
 * Builds the ControlNet graph from weight sources of `options.floatType` (default float32;
 * lib/onnx `tensorSources(file, { floatType })`). Initializer names are the Diffusers parameter
 * names; throws a TypeError listing every missing, misshapen or unused weight.
 *
 * @example
 * ```ts ignore
 * const config = parseControlnetConfig(JSON.parse(await Deno.readTextFile("cn/config.json")));
 * const file = await SafetensorsFile.open("cn/diffusion_pytorch_model.safetensors");
 * const model = buildControlnet(config, tensorSources(file));
 * // feeds: sample, timestep, encoder_hidden_states, controlnet_cond,
 * //   conditioning_scales: controlnetConditioningScales(config, 1.0)
 * ```
 */
export function buildControlnet(
  config: ControlnetConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: ControlnetBuildOptions = {},
): OnnxModel {
  const g = new GraphBuilder(options.name ?? "controlnet");
  const c = new ModelContext(g, "ControlNetModel", weights, {
    attention: options.attention ?? "fused",
    floatType: options.floatType ?? "float32",
  });
  const crossDim = unetCrossAttentionDim(config, "ControlNetModel");
  const specs = controlnetResidualSpecs(config);

  // 1. Inputs
  const sample = g.input("sample", "float32", ["batch", config.inChannels, "height", "width"]);
  const timestep = g.input("timestep", "float32", ["timestep_batch"]);
  const ehs = g.input("encoder_hidden_states", "float32", ["batch", "sequence", crossDim]);
  let cond = g.input("controlnet_cond", "float32", [
    "cond_batch",
    config.conditioningChannels,
    "cond_height",
    "cond_width",
  ]);
  const scales = g.input("conditioning_scales", "float32", [specs.length]);
  const textTime = config.additionEmbedType === "text_time";
  const textEmbeds = textTime
    ? g.input("text_embeds", "float32", ["batch", "text_embeds_dim"])
    : null;
  const timeIds = textTime ? g.input("time_ids", "float32", ["batch", "time_ids_count"]) : null;

  // 2. Time embedding (Diffusers step 1), context tokens
  const tembAct = unetTimeEmbedding(c, config, {
    sample,
    timestep,
    textEmbeds,
    timeIds,
    timestepCond: null,
  });
  const context = unetContext(c, ehs, crossDim);

  // 3. Pre-process: conv_in(sample) + controlnet_cond_embedding(controlnet_cond)
  if (config.channelOrder === "bgr") {
    // torch.flip(controlnet_cond, dims=[1])
    const reversed = Array.from({ length: config.conditioningChannels }, (_, i) => -1 - i);
    cond = g.scope("controlnet_cond", () => g.op("Gather", [cond, g.ints(reversed)], { axis: 1 }));
  }
  const embedding = conditioningEmbedding(c, config, c.fromF32(cond));
  // [B, C0, H, W] + [B or 1, C0, H, W]
  const h = g.op("Add", [unetConvIn(c, config, sample), embedding], {}, {
    name: "controlnet_cond_add",
  });

  // 4. Down blocks (every state kept) and mid block, as in the UNet
  const down = unetDownBlocks(c, config, h, tembAct, context, crossDim);
  const mid = unetMidBlock(c, config, down.hidden, tembAct, context, crossDim);

  // 5. Zero convs, scaling and (shuffle nets) global pooling
  if (down.skips.length !== specs.length - 1) {
    throw new RangeError(
      `Cannot build ControlNetModel: ${down.skips.length} skip states for ${
        specs.length - 1
      } residuals`,
    );
  }
  // [N] -> N x [1]
  const perResidual = g.scope(
    "conditioning_scales",
    () => g.opN("Split", [scales, g.ints(specs.map(() => 1))], specs.length, { axis: 0 }),
  );
  const finish = (x: Value, k: number, name: string) => {
    // [B, C, H, W] * [1] (float32)
    let r = g.op("Mul", [c.toF32(x), perResidual[k]!], {}, { name: `${name}.scale` });
    if (config.globalPoolConditions) {
      // torch.mean(x, dim=(2, 3), keepdim=True): [B, C, H, W] -> [B, C, 1, 1]
      r = g.op("ReduceMean", [r], { axes: [2, 3], keepdims: 1 }, { name: `${name}.pool` });
    }
    const spec = specs[k]!;
    g.output(r, spec.name, "float32", [
      "batch",
      spec.channels,
      config.globalPoolConditions ? 1 : `${spec.name}_height`,
      config.globalPoolConditions ? 1 : `${spec.name}_width`,
    ]);
  };
  down.skips.forEach((s, k) => {
    const name = `controlnet_down_blocks.${k}`;
    // 1x1 conv: [B, C, H, W] -> [B, C, H, W]
    const z = conv2d(c, name, s.value, s.channels, s.channels, { kernel: 1, padding: 0 });
    finish(z, k, name);
  });
  const midChannels = config.blockOutChannels[config.blockOutChannels.length - 1]!;
  const zMid = conv2d(c, "controlnet_mid_block", mid, midChannels, midChannels, {
    kernel: 1,
    padding: 0,
  });
  finish(zMid, specs.length - 1, "controlnet_mid_block");
  if (options.conditioningEmbeddingOutput) {
    g.output(c.toF32(embedding), "controlnet_cond_embedding", "float32", [
      "cond_batch",
      config.blockOutChannels[0]!,
      "height",
      "width",
    ]);
  }

  c.finish();
  return g.build({ docString: "ControlNetModel built by denoise (lib/models/controlnet.ts)" });
}
