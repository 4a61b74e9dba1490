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
 * Height and width may be any size; odd sizes upsample to the skip connection's size, as
 * Diffusers does with `upsample_size`.
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import type { UnetConfig } from "./config.ts";
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
   * Rewrites the output of every linear layer (lib/train adds LoRA branches with it); see
   * {@linkcode LinearHook}. Default none: the plain graph.
   */
  linearHook?: LinearHook;
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
export function unetResidualSpecs(config: UnetConfig): UnetResidualSpec[] {
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

interface Skip {
  value: Value;
  channels: number;
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
  const c = new ModelContext(g, "UNet2DConditionModel", weights, {
    attention: options.attention ?? "fused",
    floatType: options.floatType ?? "float32",
    ...(options.linearHook === undefined ? {} : { linearHook: options.linearHook }),
  });
  const boc = config.blockOutChannels;
  const n = boc.length;
  const groups = config.normNumGroups;
  const eps = config.normEps;
  const tembDim = config.timeEmbedDim;
  const crossDims = new Set(config.crossAttentionDim);
  if (crossDims.size !== 1) {
    throw new RangeError(
      `Cannot build UNet2DConditionModel: per-block cross_attention_dim ` +
        `[${config.crossAttentionDim}] is not supported; use one value`,
    );
  }
  const crossDim = config.crossAttentionDim[0]!;

  // 1. Inputs
  let sample = g.input("sample", "float32", ["batch", config.inChannels, "height", "width"]);
  const timestep = g.input("timestep", "float32", ["timestep_batch"]);
  const ehs = g.input("encoder_hidden_states", "float32", ["batch", "sequence", crossDim]);
  const textTime = config.additionEmbedType === "text_time";
  const textEmbeds = textTime
    ? g.input("text_embeds", "float32", ["batch", "text_embeds_dim"])
    : null;
  const timeIds = textTime ? g.input("time_ids", "float32", ["batch", "time_ids_count"]) : null;
  const condDim = config.timeCondProjDim;
  const timestepCond = condDim === null
    ? null
    : g.input("timestep_cond", "float32", ["batch", condDim]);
  const residualSpecs = options.controlnetResiduals ? unetResidualSpecs(config) : [];
  const residuals = residualSpecs.map((s, k) =>
    g.input(s.name, "float32", ["batch", s.channels, `residual_${k}_height`, `residual_${k}_width`])
  );

  // 2. Time embedding: timesteps.expand(batch) -> sinusoids -> MLP (+ SDXL's add_embedding)
  const batch = g.scope("time_proj", () => batchDim(g, sample));
  const t = g.scope("time_proj", () => {
    // [1] or [B] -> [B]
    const flat = g.op("Reshape", [timestep, g.ints([-1])]);
    return g.op("Expand", [flat, batch]);
  });
  const tProj = g.scope(
    "time_proj",
    () => timestepProjection(g, t, boc[0]!, config.flipSinToCos, config.freqShift),
  );
  let tEmb = c.fromF32(tProj);
  if (timestepCond !== null) {
    // Diffusers TimestepEmbedding: sample + cond_proj(condition), before linear_1.
    // [B, condDim] -> [B, C0]
    const cond = linear(
      c,
      "time_embedding.cond_proj",
      c.fromF32(timestepCond),
      condDim!,
      boc[0]!,
      false,
    );
    tEmb = g.scope("time_embedding", () => g.op("Add", [tEmb, cond]));
  }
  let emb = timestepEmbedding(c, "time_embedding", tEmb, boc[0]!, tembDim);
  if (textTime) {
    const addDim = config.additionTimeEmbedDim!;
    const projDim = config.projectionClassEmbeddingsInputDim!;
    const addIn = g.scope("add_time_proj", () => {
      // [B, N] -> [B*N] -> [B*N, addDim] -> [B, N*addDim]
      const flat = g.op("Reshape", [timeIds!, g.ints([-1])]);
      const proj = timestepProjection(g, flat, addDim, config.flipSinToCos, config.freqShift);
      const perSample = g.op("Reshape", [proj, g.op("Concat", [batch, g.ints([-1])], { axis: 0 })]);
      // [B, D] ++ [B, N*addDim] -> [B, projDim]
      return g.op("Concat", [textEmbeds!, perSample], { axis: -1 });
    });
    const aug = timestepEmbedding(c, "add_embedding", c.fromF32(addIn), projDim, tembDim);
    emb = g.op("Add", [emb, aug]);
  }
  // Every ResnetBlock2D applies silu to temb before time_emb_proj; do it once.
  const tembAct = silu(g, emb);

  // 3. Context tokens: [B, L, Cc] -> [B*L, Cc]
  const context = g.scope(
    "encoder_hidden_states",
    () => g.op("Reshape", [c.fromF32(ehs), g.ints([-1, crossDim])]),
  );

  // 4. Pre-process
  if (config.centerInputSample) {
    sample = g.op("Sub", [g.op("Mul", [sample, g.scalar(2)]), g.scalar(1)]);
  }
  sample = c.fromF32(sample);
  // [B, Cin, H, W] -> [B, C0, H, W]
  let h = conv2d(c, "conv_in", sample, config.inChannels, boc[0]!, {
    kernel: config.convInKernel,
  });
  let channels = boc[0]!;

  // 5. Down blocks; every intermediate state is kept for the skip connections
  const skips: Skip[] = [{ value: h, channels }];
  for (let i = 0; i < n; i++) {
    const name = `down_blocks.${i}`;
    const out = boc[i]!;
    for (let j = 0; j < config.layersPerBlock[i]!; j++) {
      h = resnetBlock2d(c, `${name}.resnets.${j}`, h, tembAct, {
        inChannels: channels,
        outChannels: out,
        tembChannels: tembDim,
        groups,
        eps,
        outputScaleFactor: config.resnetOutScaleFactor,
      });
      channels = out;
      if (config.downBlockTypes[i] === "CrossAttnDownBlock2D") {
        h = transformer2d(c, `${name}.attentions.${j}`, h, context, {
          channels: out,
          heads: config.numAttentionHeads[i]!,
          layers: config.transformerLayersPerBlock[i]![j]!,
          crossAttentionDim: crossDim,
          groups,
          useLinearProjection: config.useLinearProjection,
        });
      }
      skips.push({ value: h, channels });
    }
    if (i < n - 1) {
      // [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]
      h = downsample2d(c, `${name}.downsamplers.0`, h, out, config.downsamplePadding);
      skips.push({ value: h, channels });
    }
  }

  // 6. ControlNet: down_block_res_samples[k] += down_block_additional_residuals[k]
  if (options.controlnetResiduals) {
    skips.forEach((s, k) => {
      const r = c.fromF32(residuals[k]!);
      s.value = g.op("Add", [s.value, r], {}, { name: `controlnet_residual_${k}` });
    });
  }

  // 7. Mid block
  if (config.midBlockType !== null) {
    const mid = "mid_block";
    const resnet = (j: number, x: Value) =>
      resnetBlock2d(c, `${mid}.resnets.${j}`, x, tembAct, {
        inChannels: channels,
        outChannels: channels,
        tembChannels: tembDim,
        groups,
        eps,
        outputScaleFactor: config.midBlockScaleFactor,
      });
    h = resnet(0, h);
    if (config.midBlockType === "UNetMidBlock2DCrossAttn") {
      h = transformer2d(c, `${mid}.attentions.0`, h, context, {
        channels,
        heads: config.numAttentionHeads[n - 1]!,
        layers: config.transformerLayersPerBlock[n - 1]![0]!,
        crossAttentionDim: crossDim,
        groups,
        useLinearProjection: config.useLinearProjection,
      });
      h = resnet(1, h);
    }
  }
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
  return g.build({ docString: "UNet2DConditionModel built by denoise (lib/models/unet.ts)" });
}
