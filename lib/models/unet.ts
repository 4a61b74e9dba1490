/**
 * UNet2DConditionModel as an ONNX graph, built from a Diffusers config and weights: SD 1.x,
 * SD 2.x (linear projections, per-block head counts) and SDXL (`text_time` added embedding,
 * several transformer layers per block), with optional ControlNet residual inputs.
 *
 * Follows `UNet2DConditionModel.forward` of Diffusers 0.27
 * (src/diffusers/models/unets/unet_2d_condition.py) and its blocks in unet_2d_blocks.py
 * (CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D).
 *
 * Graph interface (Optimum's names):
 * - `sample` float32 `[batch, in_channels, height, width]`
 * - `timestep` float32 `[timestep_batch]`: one timestep for the whole batch (shape `[1]`, the
 *   "scalar" form) or one per sample (shape `[batch]`); fractional values are fine.
 * - `encoder_hidden_states` float32 `[batch, sequence, cross_attention_dim]` (any sequence length)
 * - SDXL (`addition_embed_type: "text_time"`): `text_embeds` `[batch, D]` and `time_ids`
 *   `[batch, N]` with `D + N * addition_time_embed_dim = projection_class_embeddings_input_dim`
 * - LCM (`time_cond_proj_dim` set): `timestep_cond` `[batch, time_cond_proj_dim]`, the guidance
 *   scale embedding (Diffusers' `timestep_cond` argument)
 * - with `controlnetResiduals`: `down_block_additional_residual_<k>` for each skip connection
 *   (see {@linkcode unetResidualSpecs}) and `mid_block_additional_residual`, added as in Diffusers
 * - output `out_sample` `[batch, out_channels, height, width]`.
 *
 * With `motion` (AnimateDiff motion modules, see motion.ts) the graph is Diffusers'
 * UNetMotionModel on frames-as-batch tensors:
 * - `sample` `[batch * frames, in_channels, height, width]`: the frames of each clip
 *   consecutive, i.e. Diffusers' 5-D `[batch, channels, frames, h, w]` latents permuted to
 *   `[batch, frames, channels, h, w]` and flattened (`(batch frames) c h w`)
 * - `num_frames` int64 `[1]`: frames per clip, at most the module's `maxSeqLength`
 * - `encoder_hidden_states` `[context_batch, sequence, cross_attention_dim]` with
 *   `context_batch` dividing `batch * frames`: one row per clip (repeated for each of its frames
 *   in the graph, Diffusers' `repeat_interleave(num_frames)`), or one row per frame (prompt
 *   travel); `text_embeds`, `time_ids` and `timestep_cond` likewise
 * - `timestep` `[1]`, one per clip or one per frame
 * - ControlNet residuals, when asked for, are per frame (`[batch * frames, ...]`)
 * - output `out_sample` `[batch * frames, out_channels, height, width]`, in the input's order.
 *
 * Height and width may be any size; odd sizes upsample to the skip connection's size, as
 * Diffusers does with `upsample_size`.
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import type { UnetConfig } from "./config.ts";
import {
  assertMotionFits,
  type MotionModules,
  repeatToBatch,
  transformerTemporal,
} from "./motion.ts";
import {
  type AttentionKernel,
  batchDim,
  conv2d,
  downsample2d,
  type GraphFloatType,
  groupNorm,
  linear,
  type LinearHook,
  ModelContext,
  resnetBlock2d,
  silu,
  timestepEmbedding,
  timestepProjection,
  transformer2d,
  upsample2d,
} from "./layers.ts";
import type { QuantizeMode } from "./quantize.ts";

/** Options of {@linkcode buildUnet}. */
export interface UnetBuildOptions {
  /** Add ControlNet residual inputs (default false). */
  controlnetResiduals?: boolean;
  /** Graph name (default "unet"). */
  name?: string;
  /** Attention kernel (default `"fused"`, onnxruntime's MultiHeadAttention). */
  attention?: AttentionKernel;
  /**
   * Float type of weights and activations (default `"float32"`). With `"float16"` the weights
   * must be float16 sources (`tensorSources(file, { floatType: "float16" })`); inputs and output
   * stay float32, and norms, softmax, GELU and the timestep sinusoids run in float32.
   */
  floatType?: GraphFloatType;
  /**
   * AnimateDiff motion modules (motion.ts, motion_adapter.ts): builds Diffusers'
   * UNetMotionModel, with a temporal transformer after each spatial transformer (or resnet)
   * and frames-as-batch inputs (see the module documentation). Their weights join the UNet's
   * under Diffusers' names (`down_blocks.0.motion_modules.0.…`).
   */
  motion?: MotionModules;
  /**
   * Rewrites the output of every linear layer (lib/train adds LoRA branches with it); see
   * {@linkcode LinearHook}. Default none: the plain graph.
   */
  linearHook?: LinearHook;
  /**
   * Quantise linear and convolution weights (default none): `"int8"` stores them per output
   * channel in int8 and quantises activations at run time (quantize.ts). float32 weights only.
   */
  quantize?: QuantizeMode | undefined;
}

/** One ControlNet residual input of the UNet graph. */
export interface UnetResidualSpec {
  /** Graph input name. */
  name: string;
  /** Channels of the residual. */
  channels: number;
  /** Spatial downscale relative to `sample` (1, 2, 4, ...). */
  downscale: number;
}

/**
 * The ControlNet residual inputs a UNet with this config takes, in Diffusers order
 * (`down_block_additional_residuals[k]`, then the mid-block residual).
 *
 * @example
 * ```ts
 * import { parseUnetConfig } from "./config.ts";
 * import { unetResidualSpecs } from "./unet.ts";
 * const specs = unetResidualSpecs(parseUnetConfig({ block_out_channels: [4, 8],
 *   layers_per_block: 1, down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D"],
 *   up_block_types: ["CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim: 32 }));
 * console.assert(specs.length === 5); // conv_in, 2 resnets, 1 downsampler, mid
 * ```
 */
export function unetResidualSpecs(
  config: Pick<UnetConfig, "blockOutChannels" | "downBlockTypes" | "layersPerBlock">,
): UnetResidualSpec[] {
  const specs: UnetResidualSpec[] = [];
  let k = 0;
  const push = (channels: number, downscale: number) =>
    specs.push({ name: `down_block_additional_residual_${k++}`, channels, downscale });
  push(config.blockOutChannels[0]!, 1);
  let downscale = 1;
  config.downBlockTypes.forEach((_, i) => {
    const ch = config.blockOutChannels[i]!;
    for (let j = 0; j < config.layersPerBlock[i]!; j++) push(ch, downscale);
    if (i < config.downBlockTypes.length - 1) {
      downscale *= 2;
      push(ch, downscale);
    }
  });
  specs.push({
    name: "mid_block_additional_residual",
    channels: config.blockOutChannels[config.blockOutChannels.length - 1]!,
    downscale,
  });
  return specs;
}

/**
 * The fields of a {@linkcode UnetConfig} that the encoder half reads (conv_in, time embedding,
 * down blocks, mid block): what a ControlNet shares with its UNet.
 */
export type UnetEncoderConfig = Pick<
  UnetConfig,
  | "inChannels"
  | "centerInputSample"
  | "flipSinToCos"
  | "freqShift"
  | "downBlockTypes"
  | "midBlockType"
  | "blockOutChannels"
  | "layersPerBlock"
  | "downsamplePadding"
  | "midBlockScaleFactor"
  | "normNumGroups"
  | "normEps"
  | "crossAttentionDim"
  | "numAttentionHeads"
  | "transformerLayersPerBlock"
  | "useLinearProjection"
  | "resnetOutScaleFactor"
  | "timeEmbedDim"
  | "convInKernel"
  | "additionEmbedType"
  | "additionTimeEmbedDim"
  | "projectionClassEmbeddingsInputDim"
  | "timeCondProjDim"
>;

/** One skip connection of the down path: a state kept for the up blocks (or ControlNet). */
export interface UnetSkip {
  value: Value;
  channels: number;
}

/**
 * The one cross-attention width of a config; per-block widths are refused.
 *
 * @example
 * ```ts
 * import { parseUnetConfig } from "./config.ts";
 * import { unetCrossAttentionDim } from "./unet.ts";
 * const config = parseUnetConfig({ cross_attention_dim: 768 });
 * console.assert(unetCrossAttentionDim(config, "UNet2DConditionModel") === 768);
 * ```
 */
export function unetCrossAttentionDim(
  config: Pick<UnetConfig, "crossAttentionDim">,
  what: string,
): number {
  const crossDims = new Set(config.crossAttentionDim);
  if (crossDims.size !== 1) {
    throw new RangeError(
      `Cannot build ${what}: per-block cross_attention_dim ` +
        `[${config.crossAttentionDim}] is not supported; use one value`,
    );
  }
  return config.crossAttentionDim[0]!;
}

/** Graph inputs the time embedding reads (see {@linkcode unetTimeEmbedding}). */
export interface UnetTimeInputs {
  /** `[B, C, H, W]`, only its batch size is read. */
  sample: Value;
  /** `[1]` or `[B]` float32. */
  timestep: Value;
  /** SDXL `text_embeds` `[B, D]` (with `addition_embed_type: "text_time"`), else null. */
  textEmbeds: Value | null;
  /** SDXL `time_ids` `[B, N]`, else null. */
  timeIds: Value | null;
  /** LCM `timestep_cond` `[B, time_cond_proj_dim]`, else null. */
  timestepCond: Value | null;
  /**
   * Motion modules: timesteps given per clip (or per frame) are repeated to every frame
   * (`repeat_interleave`) instead of broadcast from one value.
   */
  repeatTimesteps?: boolean;
}

/**
 * UNet2DConditionModel.forward step 1 (and ControlNetModel's): timesteps broadcast to the batch,
 * sinusoids (`time_proj`), `time_embedding` (with LCM's `cond_proj`), plus SDXL's
 * `add_time_proj` / `add_embedding`. Returns `silu(emb)` `[B, time_embed_dim]`, which every
 * ResnetBlock2D applies before `time_emb_proj` (computed once here).
 *
 * @example
 * ```ts ignore
 * const tembAct = unetTimeEmbedding(c, config, { sample, timestep, textEmbeds: null,
 *   timeIds: null, timestepCond: null });
 * ```
 */
export function unetTimeEmbedding(
  c: ModelContext,
  config: UnetEncoderConfig,
  inputs: UnetTimeInputs,
): Value {
  const g = c.g;
  const boc = config.blockOutChannels;
  const tembDim = config.timeEmbedDim;
  // timesteps.expand(batch) -> sinusoids -> MLP (+ SDXL's add_embedding)
  const batch = g.scope("time_proj", () => batchDim(g, inputs.sample));
  const t = g.scope("time_proj", () => {
    // [1] or [B] -> [B]
    const flat = g.op("Reshape", [inputs.timestep, g.ints([-1])]);
    // Motion: [1], [B] (per clip) or [B*F] -> [B*F]
    return inputs.repeatTimesteps ? repeatToBatch(g, flat, batch) : g.op("Expand", [flat, batch]);
  });
  const tProj = g.scope(
    "time_proj",
    () => timestepProjection(g, t, boc[0]!, config.flipSinToCos, config.freqShift),
  );
  let tEmb = c.fromF32(tProj);
  const condDim = config.timeCondProjDim;
  if (inputs.timestepCond !== null) {
    if (condDim === null) throw new TypeError(`${c.what} has no time_cond_proj_dim`);
    // Diffusers TimestepEmbedding: sample + cond_proj(condition), before linear_1.
    // [B, condDim] -> [B, C0]
    const cond = linear(
      c,
      "time_embedding.cond_proj",
      c.fromF32(inputs.timestepCond),
      condDim,
      boc[0]!,
      false,
    );
    tEmb = g.scope("time_embedding", () => g.op("Add", [tEmb, cond]));
  }
  let emb = timestepEmbedding(c, "time_embedding", tEmb, boc[0]!, tembDim);
  if (config.additionEmbedType === "text_time") {
    const { textEmbeds, timeIds } = inputs;
    if (textEmbeds === null || timeIds === null) {
      throw new TypeError(
        `${c.what} with addition_embed_type "text_time" needs text_embeds and time_ids`,
      );
    }
    const addDim = config.additionTimeEmbedDim!;
    const projDim = config.projectionClassEmbeddingsInputDim!;
    const addIn = g.scope("add_time_proj", () => {
      // [B, N] -> [B*N] -> [B*N, addDim] -> [B, N*addDim]
      const flat = g.op("Reshape", [timeIds, g.ints([-1])]);
      const proj = timestepProjection(g, flat, addDim, config.flipSinToCos, config.freqShift);
      const perSample = g.op("Reshape", [proj, g.op("Concat", [batch, g.ints([-1])], { axis: 0 })]);
      // [B, D] ++ [B, N*addDim] -> [B, projDim]
      return g.op("Concat", [textEmbeds, perSample], { axis: -1 });
    });
    const aug = timestepEmbedding(c, "add_embedding", c.fromF32(addIn), projDim, tembDim);
    emb = g.op("Add", [emb, aug]);
  }
  // Every ResnetBlock2D applies silu to temb before time_emb_proj; do it once.
  return silu(g, emb);
}

/**
 * Context tokens for cross-attention: `encoder_hidden_states` `[B, L, Cc]` (float32) ->
 * `[B*L, Cc]` in the graph's float type.
 */
export function unetContext(c: ModelContext, encoderHiddenStates: Value, crossDim: number): Value {
  return c.g.scope(
    "encoder_hidden_states",
    () => c.g.op("Reshape", [c.fromF32(encoderHiddenStates), c.g.ints([-1, crossDim])]),
  );
}

/**
 * UNet2DConditionModel.forward step 2: `center_input_sample` then `conv_in`.
 * `[B, Cin, H, W]` (float32) -> `[B, C0, H, W]` in the graph's float type.
 */
export function unetConvIn(c: ModelContext, config: UnetEncoderConfig, sample: Value): Value {
  const g = c.g;
  let x = sample;
  if (config.centerInputSample) {
    x = g.op("Sub", [g.op("Mul", [x, g.scalar(2)]), g.scalar(1)]);
  }
  x = c.fromF32(x);
  // [B, Cin, H, W] -> [B, C0, H, W]
  return conv2d(c, "conv_in", x, config.inChannels, config.blockOutChannels[0]!, {
    kernel: config.convInKernel,
  });
}

/**
 * A layer inserted after each spatial layer of block `block` (AnimateDiff's motion modules):
 * `name` is the layer's parameter prefix, `x` `[B, C, H, W]` with `channels` C.
 */
export type UnetTemporalLayer = (name: string, x: Value, channels: number, block: number) => Value;

/** What {@linkcode unetDownBlocks} returns. */
export interface UnetDownResult {
  /** The last block's output `[B, C_last, H/2^(n-1), W/2^(n-1)]`. */
  hidden: Value;
  /** Its channels. */
  channels: number;
  /** `down_block_res_samples` in Diffusers order: the input, then each resnet/attention and downsampler. */
  skips: UnetSkip[];
}

/**
 * The `down_blocks` (DownBlock2D / CrossAttnDownBlock2D of unet_2d_blocks.py) from `h`, the
 * output of `conv_in` (plus, in a ControlNet, the conditioning embedding), keeping every
 * intermediate state as Diffusers' `down_block_res_samples` does. `context` is `[B*L, Cc]`.
 */
export function unetDownBlocks(
  c: ModelContext,
  config: UnetEncoderConfig,
  h: Value,
  tembAct: Value,
  context: Value,
  crossDim: number,
  temporal?: UnetTemporalLayer,
): UnetDownResult {
  const boc = config.blockOutChannels;
  const n = boc.length;
  let channels = boc[0]!;
  const skips: UnetSkip[] = [{ value: h, channels }];
  for (let i = 0; i < n; i++) {
    const name = `down_blocks.${i}`;
    const out = boc[i]!;
    for (let j = 0; j < config.layersPerBlock[i]!; j++) {
      h = resnetBlock2d(c, `${name}.resnets.${j}`, h, tembAct, {
        inChannels: channels,
        outChannels: out,
        tembChannels: config.timeEmbedDim,
        groups: config.normNumGroups,
        eps: config.normEps,
        outputScaleFactor: config.resnetOutScaleFactor,
      });
      channels = out;
      if (config.downBlockTypes[i] === "CrossAttnDownBlock2D") {
        h = transformer2d(c, `${name}.attentions.${j}`, h, context, {
          channels: out,
          heads: config.numAttentionHeads[i]!,
          layers: config.transformerLayersPerBlock[i]![j]!,
          crossAttentionDim: crossDim,
          groups: config.normNumGroups,
          useLinearProjection: config.useLinearProjection,
        });
      }
      if (temporal) h = temporal(`${name}.motion_modules.${j}`, h, out, i);
      skips.push({ value: h, channels });
    }
    if (i < n - 1) {
      // [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]
      h = downsample2d(c, `${name}.downsamplers.0`, h, out, config.downsamplePadding);
      skips.push({ value: h, channels });
    }
  }
  return { hidden: h, channels, skips };
}

/**
 * The `mid_block`: UNetMidBlock2DCrossAttn (resnet, transformer, resnet) or UNetMidBlock2D as
 * Diffusers 0.27 builds it for these models (one resnet, no attention); `h` unchanged when the
 * config has none. `[B, C, H, W]` in and out.
 */
export function unetMidBlock(
  c: ModelContext,
  config: UnetEncoderConfig,
  h: Value,
  tembAct: Value,
  context: Value,
  crossDim: number,
  temporal?: UnetTemporalLayer,
): Value {
  if (config.midBlockType === null) return h;
  const n = config.blockOutChannels.length;
  const channels = config.blockOutChannels[n - 1]!;
  const mid = "mid_block";
  const resnet = (j: number, x: Value) =>
    resnetBlock2d(c, `${mid}.resnets.${j}`, x, tembAct, {
      inChannels: channels,
      outChannels: channels,
      tembChannels: config.timeEmbedDim,
      groups: config.normNumGroups,
      eps: config.normEps,
      outputScaleFactor: config.midBlockScaleFactor,
    });
  h = resnet(0, h);
  if (config.midBlockType === "UNetMidBlock2DCrossAttn") {
    h = transformer2d(c, `${mid}.attentions.0`, h, context, {
      channels,
      heads: config.numAttentionHeads[n - 1]!,
      layers: config.transformerLayersPerBlock[n - 1]![0]!,
      crossAttentionDim: crossDim,
      groups: config.normNumGroups,
      useLinearProjection: config.useLinearProjection,
    });
    if (temporal) h = temporal(`${mid}.motion_modules.0`, h, channels, n - 1);
    h = resnet(1, h);
  }
  return h;
}

/**
 * Builds the UNet graph from weight sources of `options.floatType` (default float32; lib/onnx
 * `tensorSources(file, { floatType })`).
 * Initializer names are the Diffusers parameter names; throws a TypeError listing every
 * missing, misshapen or unused weight.
 *
 * @example
 * ```ts ignore
 * const config = parseUnetConfig(JSON.parse(await Deno.readTextFile("unet/config.json")));
 * const file = await SafetensorsFile.open("unet/diffusion_pytorch_model.safetensors");
 * const model = buildUnet(config, tensorSources(file));
 * await writeModel(model, "cache/unet.onnx");
 * ```
 */
export function buildUnet(
  config: UnetConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: UnetBuildOptions = {},
): OnnxModel {
  const g = new GraphBuilder(options.name ?? "unet");
  const motion = options.motion ?? null;
  if (motion !== null) assertMotionFits(config, motion.config);
  const what = motion === null ? "UNet2DConditionModel" : "UNetMotionModel";
  const c = new ModelContext(g, what, motion === null ? weights : joinWeights(weights, motion), {
    attention: options.attention ?? "fused",
    floatType: options.floatType ?? "float32",
    ...(options.linearHook === undefined ? {} : { linearHook: options.linearHook }),
    quantize: options.quantize,
  });
  const boc = config.blockOutChannels;
  const n = boc.length;
  const groups = config.normNumGroups;
  const eps = config.normEps;
  const tembDim = config.timeEmbedDim;
  const crossDim = unetCrossAttentionDim(config, "UNet2DConditionModel");

  // 1. Inputs
  const sample = g.input("sample", "float32", ["batch", config.inChannels, "height", "width"]);
  const timestep = g.input("timestep", "float32", ["timestep_batch"]);
  const condBatch = motion === null ? "batch" : "context_batch";
  let ehs = g.input("encoder_hidden_states", "float32", [condBatch, "sequence", crossDim]);
  const textTime = config.additionEmbedType === "text_time";
  let textEmbeds = textTime
    ? g.input("text_embeds", "float32", [condBatch, "text_embeds_dim"])
    : null;
  let timeIds = textTime ? g.input("time_ids", "float32", [condBatch, "time_ids_count"]) : null;
  const condDim = config.timeCondProjDim;
  let timestepCond = condDim === null
    ? null
    : g.input("timestep_cond", "float32", [condBatch, condDim]);
  const residualSpecs = options.controlnetResiduals ? unetResidualSpecs(config) : [];
  const residuals = residualSpecs.map((s, k) =>
    g.input(s.name, "float32", ["batch", s.channels, `residual_${k}_height`, `residual_${k}_width`])
  );
  const frames = motion === null ? null : g.input("num_frames", "int64", [1]);

  if (motion !== null) {
    // UNetMotionModel: per-clip conditioning .repeat_interleave(num_frames) -> per frame
    g.scope("frames", () => {
      const batch = batchDim(g, sample);
      // [b, ...] -> [B*F, ...]
      ehs = repeatToBatch(g, ehs, batch);
      if (textEmbeds !== null) textEmbeds = repeatToBatch(g, textEmbeds, batch);
      if (timeIds !== null) timeIds = repeatToBatch(g, timeIds, batch);
      if (timestepCond !== null) timestepCond = repeatToBatch(g, timestepCond, batch);
    });
  }

  // 2. Time embedding: timesteps.expand(batch) -> sinusoids -> MLP (+ SDXL's add_embedding)
  const tembAct = unetTimeEmbedding(c, config, {
    sample,
    timestep,
    textEmbeds,
    timeIds,
    timestepCond,
    ...(motion !== null ? { repeatTimesteps: true } : {}),
  });

  // A motion module after each spatial layer, when there are motion modules.
  const motionHeads = motion?.config.numAttentionHeads ?? [];
  const temporal: UnetTemporalLayer | undefined = motion === null
    ? undefined
    : (name, x, ch, block) =>
      transformerTemporal(c, name, x, frames!, {
        channels: ch,
        heads: motionHeads[block]!,
        groups,
        layers: motion.config.transformerLayers,
        maxSeqLength: motion.config.maxSeqLength,
      });

  // 3. Context tokens: [B, L, Cc] -> [B*L, Cc]
  const context = unetContext(c, ehs, crossDim);

  // 4. Pre-process: [B, Cin, H, W] -> [B, C0, H, W]
  let h = unetConvIn(c, config, sample);

  // 5. Down blocks; every intermediate state is kept for the skip connections
  const down = unetDownBlocks(c, config, h, tembAct, context, crossDim, temporal);
  h = down.hidden;
  let channels = down.channels;
  const skips = down.skips;

  // 6. ControlNet: down_block_res_samples[k] += down_block_additional_residuals[k]
  if (options.controlnetResiduals) {
    skips.forEach((s, k) => {
      const r = c.fromF32(residuals[k]!);
      s.value = g.op("Add", [s.value, r], {}, { name: `controlnet_residual_${k}` });
    });
  }

  // 7. Mid block
  h = unetMidBlock(
    c,
    config,
    h,
    tembAct,
    context,
    crossDim,
    motion?.config.useMotionMidBlock ? temporal : undefined,
  );
  if (options.controlnetResiduals) {
    const r = c.fromF32(residuals[residuals.length - 1]!);
    h = g.op("Add", [h, r], {}, { name: "controlnet_residual_mid" });
  }

  // 8. Up blocks: each resnet eats one skip connection, last in first out
  const reversedHeads = [...config.numAttentionHeads].reverse();
  const reversedBoc = [...boc].reverse();
  for (let i = 0; i < n; i++) {
    const name = `up_blocks.${i}`;
    const out = reversedBoc[i]!;
    const layers = config.layersPerBlock[n - 1 - i]! + 1;
    for (let j = 0; j < layers; j++) {
      const skip = skips.pop();
      if (skip === undefined) {
        throw new RangeError(`Cannot build UNet2DConditionModel: ${name} has no skip left`);
      }
      // [B, C, H, W] ++ [B, Cs, H, W] -> [B, C+Cs, H, W]
      const joined = g.op("Concat", [h, skip.value], { axis: 1 }, { name: `${name}.concat.${j}` });
      h = resnetBlock2d(c, `${name}.resnets.${j}`, joined, tembAct, {
        inChannels: channels + skip.channels,
        outChannels: out,
        tembChannels: tembDim,
        groups,
        eps,
        outputScaleFactor: config.resnetOutScaleFactor,
      });
      channels = out;
      if (config.upBlockTypes[i] === "CrossAttnUpBlock2D") {
        h = transformer2d(c, `${name}.attentions.${j}`, h, context, {
          channels: out,
          heads: reversedHeads[i]!,
          layers: config.reverseTransformerLayersPerBlock[i]![j]!,
          crossAttentionDim: crossDim,
          groups,
          useLinearProjection: config.useLinearProjection,
        });
      }
      if (temporal) h = temporal(`${name}.motion_modules.${j}`, h, out, n - 1 - i);
    }
    if (i < n - 1) {
      // [B, C, H, W] -> [B, C, H', W'] where H', W' are the next skip connection's
      const next = skips[skips.length - 1]!;
      h = upsample2d(c, `${name}.upsamplers.0`, h, out, next.value);
    }
  }

  // 9. Post-process
  h = groupNorm(c, "conv_norm_out", h, channels, groups, eps);
  h = g.scope("conv_act", () => silu(g, h));
  // [B, C0, H, W] -> [B, Cout, H, W]
  h = conv2d(c, "conv_out", h, channels, config.outChannels, { kernel: config.convOutKernel });
  g.output(c.toF32(h), "out_sample", "float32", ["batch", config.outChannels, "height", "width"]);

  c.finish();
  return g.build({ docString: `${what} built by denoise (lib/models/unet.ts)` });
}

/** The UNet's weights and the motion modules' together; a name in both is an error. */
function joinWeights(
  weights: ReadonlyMap<string, TensorSource>,
  motion: MotionModules,
): Map<string, TensorSource> {
  const out = new Map(weights);
  for (const [name, source] of motion.weights) {
    if (out.has(name)) {
      throw new RangeError(
        `Cannot build UNetMotionModel: "${name}" is both a UNet weight and a motion-module ` +
          `weight; pass the UNet's and the motion module's weights apart`,
      );
    }
    out.set(name, source);
  }
  return out;
}
