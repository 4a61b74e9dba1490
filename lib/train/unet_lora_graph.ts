/**
 * The UNet LoRA training graph: the UNet of lib/models/unet.ts with LoRA branches as graph
 * inputs (lora_hook.ts), the MSE loss against a `target` input (mse_loss.ts) and the backward
 * pass of autodiff/ for every LoRA input. One graph per input shape.
 *
 * Inputs: `sample` (noisy latents) `[B, C, h, w]`, `timestep` `[B]`, `encoder_hidden_states`
 * `[B, S, D]`, `target` `[B, C, h, w]`, SDXL's `text_embeds` `[B, P]` and `time_ids` `[B, 6]`,
 * `loss_weights` `[B, 1, 1, 1]` when weighted, and the LoRA matrices by kohya name.
 * Outputs: `loss` (scalar), `out_sample` (the prediction), `<kohya name>.grad` per matrix, and
 * with `textGradients` the gradients of the text conditioning (`encoder_hidden_states.grad`,
 * SDXL's `text_embeds.grad`), which a trained text encoder's backward pass continues from.
 *
 * @module
 */
import type { OnnxModel, TensorSource } from "../onnx/graph.ts";
import type { UnetConfig } from "../models/config.ts";
import type { AttentionKernel } from "../models/layers.ts";
import { buildUnet } from "../models/unet.ts";
import { gradientGraph } from "./autodiff/gradient_graph.ts";
import { unetSegments } from "./autodiff/recompute.ts";
import { type LoraInput, loraLinearHook } from "./lora_hook.ts";
import type { LoraParameterPair } from "./lora_parameters.ts";
import { appendMseLoss } from "./mse_loss.ts";

/** Options of {@linkcode buildUnetLoraTrainingGraph}. */
export interface UnetLoraGraphOptions {
  /** The LoRA modules to train. */
  modules: readonly LoraParameterPair[];
  /** kohya's alpha: each module's branch is scaled by alpha / its rank. */
  alpha: number;
  /** Latent shape `[B, C, h, w]`. */
  shape: readonly [number, number, number, number];
  /** Text tokens per prompt (77). */
  sequenceLength: number;
  /**
   * Attention kernel (default `"fused"`: onnxruntime's MultiHeadAttention, whose backward
   * recomputes the probabilities; `"onnx"` keeps them from the forward pass).
   */
  attention?: AttentionKernel;
  /** Weight each item's loss by a `loss_weights` input (min-SNR); default false. */
  lossWeights?: boolean;
  /** Also output the gradients of the text conditioning (text-encoder training); default false. */
  textGradients?: boolean;
  /**
   * Recompute each resnet's and transformer block's activations in the backward pass instead of
   * keeping them (activation checkpointing); default false.
   */
  recompute?: boolean;
}

/** A built training graph and its LoRA inputs (with shapes). */
export interface UnetLoraGraph {
  model: OnnxModel;
  /** Every LoRA graph input, sorted by module (down, then up). */
  parameters: LoraInput[];
}

/** Width of SDXL's pooled text embedding input (`projection_class_embeddings_input_dim - 6 * addition_time_embed_dim`). */
export function unetTextEmbedsDim(config: UnetConfig): number | undefined {
  if (config.additionEmbedType !== "text_time") return undefined;
  return config.projectionClassEmbeddingsInputDim! - 6 * config.additionTimeEmbedDim!;
}

/**
 * Builds the training graph from the UNet's config and (frozen, zero-copy) weights.
 *
 * @example
 * ```ts ignore
 * const graph = buildUnetLoraTrainingGraph(config, tensorSources(file), {
 *   modules: loraParameterPairs(lora), alpha: 4, shape: [1, 4, 32, 32], sequenceLength: 77,
 * });
 * ```
 */
export function buildUnetLoraTrainingGraph(
  config: UnetConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: UnetLoraGraphOptions,
): UnetLoraGraph {
  const [b, c, h, w] = options.shape;
  if (c !== config.inChannels || c !== config.outChannels) {
    throw new RangeError(
      `Cannot train on latents of shape [${options.shape}]: the UNet takes ${config.inChannels} ` +
        `channels and predicts ${config.outChannels}`,
    );
  }
  // 1. The UNet with LoRA branches as inputs.
  const lora = loraLinearHook(options.modules, options.alpha);
  const unet = buildUnet(config, weights, {
    attention: options.attention ?? "fused",
    linearHook: lora.hook,
    name: "unet_lora_train",
  });
  lora.finish("UNet");
  // 2. loss = mean((prediction - target)^2), per item weighted with lossWeights
  const withLoss = appendMseLoss(unet, "out_sample", [b, c, h, w], {
    ...(options.lossWeights ? { weights: "loss_weights" } : {}),
  });
  // 3. Backward pass for the LoRA inputs (and the text conditioning when asked).
  const crossDim = config.crossAttentionDim[0]!;
  const embedsDim = unetTextEmbedsDim(config);
  const text = options.textGradients
    ? ["encoder_hidden_states", ...(embedsDim === undefined ? [] : ["text_embeds"])]
    : [];
  const model = gradientGraph(withLoss, {
    loss: "mse_loss",
    wrt: [...lora.inputs.map((i) => i.name), ...text],
    inputShapes: {
      sample: [b, c, h, w],
      timestep: [b],
      encoder_hidden_states: [b, options.sequenceLength, crossDim],
      target: [b, c, h, w],
      ...(embedsDim === undefined ? {} : { text_embeds: [b, embedsDim], time_ids: [b, 6] }),
    },
    keepOutputs: ["out_sample"],
    ...(options.recompute ? { recompute: unetSegments } : {}),
  });
  const parameters = [...lora.inputs].sort((x, y) => (x.name < y.name ? -1 : 1));
  return { model, parameters };
}
