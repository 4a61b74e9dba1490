/**
 * BLIP's vision transformer (`BlipVisionModel`) as an ONNX graph, built from a BLIP checkpoint's
 * `vision_model.*` weights (initializer names = parameter names).
 *
 * Semantics follow transformers 4.30 `models/blip/modeling_blip.py`: `BlipVisionEmbeddings`
 * (patch conv, class token, learned positions), pre-norm `BlipEncoderLayer`s whose attention
 * projects q, k and v with one fused `self_attn.qkv` linear and scales `q k^T` by
 * `head_dim ** -0.5`, exact-GELU `BlipMLP`, and `post_layernorm` over every token.
 *
 * Graph input `pixel_values` float32 [batch, channels, image_size, image_size]; output
 * `image_embeds` float32 [batch, 1 + (image_size / patch_size)^2, hidden] (transformers'
 * `vision_model(pixel_values)[0]`, what the text decoder cross-attends to).
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import type { BlipVisionConfig } from "./blip_config.ts";
import {
  type AttentionKernel,
  batchDim,
  collectParameterShapes,
  conv2d,
  gelu,
  layerNorm,
  linear,
  ModelContext,
} from "./layers.ts";

/** Options of the BLIP graph builders. */
export interface BlipBuildOptions {
  /** How attention is computed (default `"fused"`, onnxruntime's MultiHeadAttention). */
  attention?: AttentionKernel;
  /** Names the weights in error messages, e.g. the file path. */
  source?: string;
}

function what(kind: string, options: BlipBuildOptions): string {
  return options.source === undefined ? kind : `${kind} from "${options.source}"`;
}

/**
 * `BlipAttention` on 2-D tokens `[B*S, D]` (S tokens per image): fused qkv, softmax attention
 * per head, `projection`. `batch` is `[B]` (1-D int64).
 */
function blipAttention(
  c: ModelContext,
  name: string,
  x: Value,
  batch: Value,
  dim: number,
  heads: number,
): Value {
  const g = c.g;
  const headDim = dim / heads;
  // [B*S, D] -> [B*S, 3D]; the 3D axis is (q|k|v, head, head_dim), as the checkpoint's
  // reshape(B, S, 3, heads, head_dim) reads it.
  const qkv = linear(c, `${name}.qkv`, x, dim, 3 * dim);
  const out = g.scope(name, () => {
    const [q, k, v] = g.opN("Split", [qkv, g.ints([dim, dim, dim])], 3, { axis: -1 });
    if (c.attention === "fused") {
      // [B*S, D] -> [B, S, D]
      const bsd = g.op("Concat", [batch, g.ints([-1, dim])], { axis: 0 });
      const [q3, k3, v3] = [q!, k!, v!].map((t) => g.op("Reshape", [t, bsd]));
      // softmax(q k^T * head_dim^-0.5) v per head: [B, S, D]
      const attended = g.op("MultiHeadAttention", [q3!, k3!, v3!], { num_heads: heads }, {
        domain: "com.microsoft",
      });
      // [B, S, D] -> [B*S, D]
      return g.op("Reshape", [attended, g.ints([-1, dim])]);
    }
    const split = g.op("Concat", [batch, g.ints([-1, heads, headDim])], { axis: 0 });
    // [B*S, D] -> [B, S, h, d] -> [B, h, S, d] (k: [B, h, d, S])
    const qh = g.op("Transpose", [g.op("Reshape", [q!, split])], { perm: [0, 2, 1, 3] });
    const kh = g.op("Transpose", [g.op("Reshape", [k!, split])], { perm: [0, 2, 3, 1] });
    const vh = g.op("Transpose", [g.op("Reshape", [v!, split])], { perm: [0, 2, 1, 3] });
    // [B, h, S, d] @ [B, h, d, S] -> [B, h, S, S], scaled after the product as BlipAttention does
    const scores = g.op("Mul", [g.op("MatMul", [qh, kh]), g.scalar(headDim ** -0.5)]);
    const probs = g.op("Softmax", [scores], { axis: -1 });
    // [B, h, S, S] @ [B, h, S, d] -> [B, h, S, d] -> [B, S, h, d] -> [B*S, D]
    const context = g.op("Transpose", [g.op("MatMul", [probs, vh])], { perm: [0, 2, 1, 3] });
    return g.op("Reshape", [context, g.ints([-1, dim])]);
  });
  return linear(c, `${name}.projection`, out, dim, dim);
}

/**
 * Builds `BlipVisionModel` (the `vision_model.*` part of BlipForConditionalGeneration).
 * `weights` may hold the whole checkpoint; only `vision_model.*` is read, and every one of those
 * must be used (a TypeError lists missing, misshapen and unused weights).
 *
 * @example
 * ```ts
 * import { parseBlipVisionConfig } from "./blip_config.ts";
 * import { blipVisionParameterShapes, buildBlipVisionModel } from "./blip_vision.ts";
 * import { randomWeights } from "./random.ts";
 * import { memoryWeights } from "./layers.ts";
 * const config = parseBlipVisionConfig({ hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1,
 *   num_attention_heads: 2, image_size: 32, patch_size: 16 });
 * const weights = memoryWeights(randomWeights(blipVisionParameterShapes(config), 0));
 * const model = buildBlipVisionModel(config, weights);
 * console.assert(model.proto.graph.output[0]!.name === "image_embeds");
 * ```
 */
export function buildBlipVisionModel(
  config: BlipVisionConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: BlipBuildOptions = {},
): OnnxModel {
  const own = new Map([...weights].filter(([k]) => k.startsWith("vision_model.")));
  const g = new GraphBuilder("BlipVisionModel", { opset: 17 });
  const contextOptions = options.attention === undefined ? {} : { attention: options.attention };
  const c = new ModelContext(g, what("BlipVisionModel", options), own, contextOptions);
  const D = config.hiddenSize;
  const grid = config.imageSize / config.patchSize;
  const positions = grid * grid + 1;
  const eps = config.layerNormEps;
  const pixels = g.input("pixel_values", "float32", [
    "batch",
    config.numChannels,
    config.imageSize,
    config.imageSize,
  ]);
  const batch = g.scope("vision_model", () => batchDim(g, pixels));

  // 1. Embeddings: patches, class token, positions.
  const e = "vision_model.embeddings";
  const patches = conv2d(c, `${e}.patch_embedding`, pixels, config.numChannels, D, {
    kernel: config.patchSize,
    stride: config.patchSize,
    padding: 0,
  });
  const classToken = c.param(`${e}.class_embedding`, [1, 1, D]);
  const positionTable = c.param(`${e}.position_embedding`, [1, positions, D]);
  let h = g.scope(e, () => {
    // [B, D, g, g] -> [B, D, g*g] -> [B, g*g, D]
    const tokens = g.op("Transpose", [g.op("Reshape", [patches, g.ints([0, D, -1])])], {
      perm: [0, 2, 1],
    });
    // class_embedding.expand(B, 1, -1): [1, 1, D] -> [B, 1, D]
    const cls = g.op("Expand", [classToken, g.op("Concat", [batch, g.ints([1, D])], { axis: 0 })]);
    // [B, 1 + g*g, D] + position_embedding[:, :1 + g*g]
    const all = g.op("Add", [g.op("Concat", [cls, tokens], { axis: 1 }), positionTable]);
    // [B, S, D] -> [B*S, D]
    return g.op("Reshape", [all, g.ints([-1, D])]);
  });

  // 2. Encoder layers (pre-norm).
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const l = `vision_model.encoder.layers.${i}`;
    const n1 = layerNorm(c, `${l}.layer_norm1`, h, D, eps);
    const attn = blipAttention(c, `${l}.self_attn`, n1, batch, D, config.numAttentionHeads);
    h = g.scope(l, () => g.op("Add", [h, attn]));
    const n2 = layerNorm(c, `${l}.layer_norm2`, h, D, eps);
    const fc1 = linear(c, `${l}.mlp.fc1`, n2, D, config.intermediateSize);
    const act = g.scope(`${l}.mlp`, () => gelu(g, fc1));
    const fc2 = linear(c, `${l}.mlp.fc2`, act, config.intermediateSize, D);
    h = g.scope(l, () => g.op("Add", [h, fc2]));
  }

  // 3. post_layernorm over every token.
  const normed = layerNorm(c, "vision_model.post_layernorm", h, D, eps);
  // [B*S, D] -> [B, S, D]
  const embeds = g.scope(
    "vision_model",
    () => g.op("Reshape", [normed, g.op("Concat", [batch, g.ints([positions, D])], { axis: 0 })]),
  );
  g.output(embeds, "image_embeds", "float32", ["batch", positions, D]);
  c.finish();
  return g.build({ metadata: { architecture: "BlipVisionModel" } });
}

/** Names and shapes of the `vision_model.*` weights, exactly as the builder reads them. */
export function blipVisionParameterShapes(config: BlipVisionConfig): Map<string, number[]> {
  return collectParameterShapes(() => buildBlipVisionModel(config, new Map()));
}
