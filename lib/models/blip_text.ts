/**
 * BLIP's text decoder (`BlipTextLMHeadModel`, the `text_decoder.*` part of
 * BlipForConditionalGeneration) as two ONNX graphs with a key/value cache:
 *
 * - the **cross-attention cache** (`buildBlipCrossKeyValues`): image embeddings in, each layer's
 *   cross-attention keys and values out. They depend on the image only, so they are computed once
 *   per image instead of at every generated token (transformers recomputes them each step; the
 *   numbers are the same).
 * - the **decoder step** (`buildBlipTextDecoder`): new token ids plus the self-attention cache in,
 *   the last position's logits and the grown cache out.
 *
 * Semantics follow transformers 4.30 `models/blip/modeling_blip_text.py`: `BlipTextEmbeddings`
 * (word + absolute position embeddings from `past_length`, LayerNorm), post-norm BERT layers
 * (`attention.self` with a causal mask of -10000 as `BlipTextModel.get_extended_attention_mask`
 * makes it, `attention.output`, `crossattention.*` over every image token, `intermediate` with
 * exact GELU, `output`), scores divided by `sqrt(head_dim)` after the product, and the LM head
 * `cls.predictions` (transform dense, GELU, LayerNorm, `decoder` + `bias`).
 *
 * Rows and images: the decoder's batch is `rows = images * k` (k beams or samples per image,
 * image-major, as transformers' `repeat_interleave` lays them out); cross-attention reads the
 * cache of image `r / k` for row `r` without copying it k times, by folding the k rows of an
 * image into its query axis (`[images, k * new, heads, head_dim]`). Rows do not interact, so
 * this is exact.
 *
 * Decoder graph inputs and outputs (h heads of width d, L layers):
 * - `input_ids` int64 [rows, new];
 * - `past_key.{i}`, `past_value.{i}` float32 [rows, h, past, d] (past may be 0);
 * - `cross_key.{i}`, `cross_value.{i}` float32 [images, h, image_tokens, d];
 * - `logits` float32 [rows, vocab]: the logits after the last new token;
 * - `present_key.{i}`, `present_value.{i}` float32 [rows, h, past + new, d].
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import type { BlipTextConfig } from "./blip_config.ts";
import type { BlipBuildOptions } from "./blip_vision.ts";
import { collectParameterShapes, gelu, layerNorm, linear, ModelContext } from "./layers.ts";

/** The additive mask value of `BlipTextModel.get_extended_attention_mask`. */
const MASKED = -10000;

const PREFIX = "text_decoder.";

function isCrossKeyValue(name: string): boolean {
  return /^text_decoder\.bert\.encoder\.layer\.\d+\.crossattention\.self\.(key|value)\./.test(name);
}

function what(kind: string, options: BlipBuildOptions): string {
  return options.source === undefined ? kind : `${kind} from "${options.source}"`;
}

/** `[N, h*d]` tokens of `rows` sequences -> `[rows, h, N/rows, d]`. */
function splitHeads(g: GraphBuilder, x: Value, rows: Value, heads: number, headDim: number) {
  const shape = g.op("Concat", [rows, g.ints([-1, heads, headDim])], { axis: 0 });
  return g.op("Transpose", [g.op("Reshape", [x, shape])], { perm: [0, 2, 1, 3] });
}

/** `[B, h, S, d]` -> `[B*S, h*d]`. */
function mergeHeads(g: GraphBuilder, x: Value, width: number): Value {
  return g.op("Reshape", [g.op("Transpose", [x], { perm: [0, 2, 1, 3] }), g.ints([-1, width])]);
}

/** `softmax(q k^T / sqrt(d) + mask) v` on `[B, h, S, d]` queries. */
function scaledAttention(
  g: GraphBuilder,
  q: Value,
  k: Value,
  v: Value,
  headDim: number,
  mask: Value | null,
): Value {
  // [B, h, S, d] @ [B, h, d, T] -> [B, h, S, T]
  const product = g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 1, 3, 2] })]);
  let scores = g.op("Div", [product, g.scalar(Math.sqrt(headDim))]);
  if (mask !== null) scores = g.op("Add", [scores, mask]);
  const probs = g.op("Softmax", [scores], { axis: -1 });
  // [B, h, S, T] @ [B, h, T, d] -> [B, h, S, d]
  return g.op("MatMul", [probs, v]);
}

/**
 * Builds the cross-attention key/value graph: `image_embeds` float32 [images, tokens, width] in,
 * `cross_key.{i}` / `cross_value.{i}` float32 [images, heads, tokens, head_dim] out for every
 * decoder layer. Reads only the `crossattention.self.key/value` weights of `weights`.
 *
 * @example
 * ```ts
 * import { parseBlipTextConfig } from "./blip_config.ts";
 * import { blipTextParameterShapes, buildBlipCrossKeyValues } from "./blip_text.ts";
 * import { memoryWeights } from "./layers.ts";
 * import { randomWeights } from "./random.ts";
 * const config = parseBlipTextConfig({ vocab_size: 10, hidden_size: 8, encoder_hidden_size: 8,
 *   intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 });
 * const weights = memoryWeights(randomWeights(blipTextParameterShapes(config), 0));
 * const model = buildBlipCrossKeyValues(config, weights);
 * console.assert(model.proto.graph.output.length === 2);
 * ```
 */
export function buildBlipCrossKeyValues(
  config: BlipTextConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: BlipBuildOptions = {},
): OnnxModel {
  const own = new Map([...weights].filter(([k]) => isCrossKeyValue(k)));
  const g = new GraphBuilder("BlipTextCrossKeyValues", { opset: 17 });
  const c = new ModelContext(g, what("BLIP cross-attention cache", options), own);
  const H = config.hiddenSize;
  const E = config.encoderHiddenSize;
  const heads = config.numAttentionHeads;
  const headDim = H / heads;
  const embeds = g.input("image_embeds", "float32", ["images", "image_tokens", E]);
  const images = g.op("Slice", [g.op("Shape", [embeds]), g.ints([0]), g.ints([1])]);
  // [images, N, E] -> [images*N, E]
  const flat = g.op("Reshape", [embeds, g.ints([-1, E])]);
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const s = `text_decoder.bert.encoder.layer.${i}.crossattention.self`;
    for (const kind of ["key", "value"] as const) {
      // [images*N, E] -> [images*N, H] -> [images, h, N, d]
      const projected = linear(c, `${s}.${kind}`, flat, E, H);
      const split = g.scope(`${s}.${kind}`, () => splitHeads(g, projected, images, heads, headDim));
      g.output(split, `cross_${kind}.${i}`, "float32", ["images", heads, "image_tokens", headDim]);
    }
  }
  c.finish();
  return g.build({ metadata: { architecture: "BlipTextCrossKeyValues" } });
}

/**
 * Builds one decoder step of `BlipTextLMHeadModel` with a self-attention key/value cache (see
 * the module documentation for inputs and outputs). Reads every `text_decoder.*` weight except
 * the cross-attention keys and values (those are {@linkcode buildBlipCrossKeyValues}'); a
 * TypeError lists missing, misshapen and unused weights.
 *
 * @example
 * ```ts
 * import { parseBlipTextConfig } from "./blip_config.ts";
 * import { blipTextParameterShapes, buildBlipTextDecoder } from "./blip_text.ts";
 * import { memoryWeights } from "./layers.ts";
 * import { randomWeights } from "./random.ts";
 * const config = parseBlipTextConfig({ vocab_size: 10, hidden_size: 8, encoder_hidden_size: 8,
 *   intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 });
 * const weights = memoryWeights(randomWeights(blipTextParameterShapes(config), 0));
 * const model = buildBlipTextDecoder(config, weights);
 * console.assert(model.proto.graph.output.some((o) => o.name === "logits"));
 * ```
 */
export function buildBlipTextDecoder(
  config: BlipTextConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: BlipBuildOptions = {},
): OnnxModel {
  const own = new Map(
    [...weights].filter(([k]) => k.startsWith(PREFIX) && !isCrossKeyValue(k)),
  );
  const g = new GraphBuilder("BlipTextLMHeadModel", { opset: 17 });
  const c = new ModelContext(g, what("BlipTextLMHeadModel", options), own);
  const H = config.hiddenSize;
  const heads = config.numAttentionHeads;
  const headDim = H / heads;
  const eps = config.layerNormEps;
  const L = config.numHiddenLayers;

  // 1. Inputs and the lengths read from them.
  const ids = g.input("input_ids", "int64", ["rows", "new"]);
  const past: Array<{ key: Value; value: Value }> = [];
  const cross: Array<{ key: Value; value: Value }> = [];
  for (let i = 0; i < L; i++) {
    const shape = ["rows", heads, "past", headDim];
    past.push({
      key: g.input(`past_key.${i}`, "float32", shape),
      value: g.input(`past_value.${i}`, "float32", shape),
    });
  }
  for (let i = 0; i < L; i++) {
    const shape = ["images", heads, "image_tokens", headDim];
    cross.push({
      key: g.input(`cross_key.${i}`, "float32", shape),
      value: g.input(`cross_value.${i}`, "float32", shape),
    });
  }
  const { rows, images, newLength, pastLength } = g.scope("lengths", () => {
    const idsShape = g.op("Shape", [ids]);
    const rows = g.op("Slice", [idsShape, g.ints([0]), g.ints([1])]); // [1] = rows
    const newLength = g.op("Slice", [idsShape, g.ints([1]), g.ints([2])]); // [1] = new
    const images = g.op("Slice", [g.op("Shape", [cross[0]?.key ?? ids]), g.ints([0]), g.ints([1])]);
    const pastLength = L === 0
      ? g.ints([0])
      : g.op("Slice", [g.op("Shape", [past[0]!.key]), g.ints([2]), g.ints([3])]); // [1] = past
    return { rows, images, newLength, pastLength };
  });

  // 2. Embeddings: words + positions past..past+new-1, LayerNorm.
  const e = "text_decoder.bert.embeddings";
  const wordTable = c.param(`${e}.word_embeddings.weight`, [config.vocabSize, H]);
  const positionTable = c.param(`${e}.position_embeddings.weight`, [
    config.maxPositionEmbeddings,
    H,
  ]);
  const summed = g.scope(e, () => {
    // [rows, new] -> [rows, new, H]
    const words = g.op("Gather", [wordTable, ids], { axis: 0 });
    const end = g.op("Add", [pastLength, newLength]);
    // position_embeddings[past : past + new]: [new, H]
    const positions = g.op("Slice", [positionTable, pastLength, end, g.ints([0])]);
    // [rows, new, H] -> [rows*new, H]
    return g.op("Reshape", [g.op("Add", [words, positions]), g.ints([-1, H])]);
  });
  let h = layerNorm(c, `${e}.LayerNorm`, summed, H, eps);

  // 3. Causal mask [new, past + new]: MASKED where key j > past + query i, else 0.
  const mask = g.scope("causal_mask", () => {
    const total = g.op("Add", [pastLength, newLength]);
    const full = g.op("ConstantOfShape", [g.op("Concat", [newLength, total], { axis: 0 })], {
      value: { tensor: { dtype: "float32", shape: [1], data: Float32Array.of(MASKED) } },
    });
    // Trilu keeps j - i >= k: k = past + 1 keeps exactly the masked entries.
    const k = g.op("Squeeze", [g.op("Add", [pastLength, g.ints([1])]), g.ints([0])]);
    return g.op("Trilu", [full, k], { upper: 1 });
  });

  // 4. Layers: self-attention with the cache, cross-attention, feed-forward (all post-norm).
  for (let i = 0; i < L; i++) {
    const l = `text_decoder.bert.encoder.layer.${i}`;
    // 4a. Self-attention.
    const sa = `${l}.attention.self`;
    const q = linear(c, `${sa}.query`, h, H, H);
    const k = linear(c, `${sa}.key`, h, H, H);
    const v = linear(c, `${sa}.value`, h, H, H);
    const context = g.scope(sa, () => {
      // [rows*new, H] -> [rows, h, new, d]
      const [qh, kh, vh] = [q, k, v].map((t) => splitHeads(g, t, rows, heads, headDim));
      // [rows, h, past, d] ++ [rows, h, new, d] -> [rows, h, past + new, d]
      const keys = g.op("Concat", [past[i]!.key, kh!], { axis: 2 });
      const values = g.op("Concat", [past[i]!.value, vh!], { axis: 2 });
      g.output(keys, `present_key.${i}`, "float32", ["rows", heads, "total", headDim]);
      g.output(values, `present_value.${i}`, "float32", ["rows", heads, "total", headDim]);
      // [rows, h, new, d] -> [rows*new, H]
      return mergeHeads(g, scaledAttention(g, qh!, keys, values, headDim, mask), H);
    });
    const saOut = linear(c, `${l}.attention.output.dense`, context, H, H);
    const saSum = g.scope(`${l}.attention.output`, () => g.op("Add", [saOut, h]));
    const attended = layerNorm(c, `${l}.attention.output.LayerNorm`, saSum, H, eps);

    // 4b. Cross-attention to the image (cached keys/values; no mask: every image token counts).
    const ca = `${l}.crossattention.self`;
    const cq = linear(c, `${ca}.query`, attended, H, H);
    const crossContext = g.scope(ca, () => {
      // [rows*new, H] -> [images, h, k*new, d]: the k rows of an image share its cache.
      const qh = splitHeads(g, cq, images, heads, headDim);
      const out = scaledAttention(g, qh, cross[i]!.key, cross[i]!.value, headDim, null);
      // [images, h, k*new, d] -> [rows*new, H]
      return mergeHeads(g, out, H);
    });
    const caOut = linear(c, `${l}.crossattention.output.dense`, crossContext, H, H);
    const caSum = g.scope(`${l}.crossattention.output`, () => g.op("Add", [caOut, attended]));
    const crossed = layerNorm(c, `${l}.crossattention.output.LayerNorm`, caSum, H, eps);

    // 4c. Feed-forward.
    const inter = linear(c, `${l}.intermediate.dense`, crossed, H, config.intermediateSize);
    const act = g.scope(`${l}.intermediate`, () => gelu(g, inter));
    const ffOut = linear(c, `${l}.output.dense`, act, config.intermediateSize, H);
    const ffSum = g.scope(`${l}.output`, () => g.op("Add", [ffOut, crossed]));
    h = layerNorm(c, `${l}.output.LayerNorm`, ffSum, H, eps);
  }

  // 5. LM head on the last new token only (generation reads nothing else).
  const last = g.scope("last_token", () => {
    // [rows*new, H] -> [rows, new, H] -> [rows, H] at new - 1
    const seq = g.op("Reshape", [h, g.op("Concat", [rows, g.ints([-1, H])], { axis: 0 })]);
    const index = g.op("Squeeze", [g.op("Sub", [newLength, g.ints([1])]), g.ints([0])]);
    return g.op("Gather", [seq, index], { axis: 1 });
  });
  const p = "text_decoder.cls.predictions";
  const dense = linear(c, `${p}.transform.dense`, last, H, H);
  const transformed = layerNorm(
    c,
    `${p}.transform.LayerNorm`,
    g.scope(`${p}.transform`, () => gelu(g, dense)),
    H,
    eps,
  );
  const decoderWeight = c.param(`${p}.decoder.weight`, [config.vocabSize, H]);
  const bias = c.param(`${p}.bias`, [config.vocabSize]);
  // decoder (no bias of its own) + the head's `bias`: [rows, H] -> [rows, vocab]
  const logits = g.scope(
    `${p}.decoder`,
    () => g.op("Gemm", [transformed, decoderWeight, bias], { transB: 1 }),
  );
  g.output(logits, "logits", "float32", ["rows", config.vocabSize]);
  c.finish();
  return g.build({ metadata: { architecture: "BlipTextLMHeadModel" } });
}

/**
 * Names and shapes of the `text_decoder.*` weights, exactly as the two builders read them
 * (without the `position_ids` buffer and the tied `cls.predictions.decoder.bias` alias).
 */
export function blipTextParameterShapes(config: BlipTextConfig): Map<string, number[]> {
  const shapes = collectParameterShapes(() => buildBlipTextDecoder(config, new Map()));
  for (const [k, v] of collectParameterShapes(() => buildBlipCrossKeyValues(config, new Map()))) {
    shapes.set(k, v);
  }
  return shapes;
}
