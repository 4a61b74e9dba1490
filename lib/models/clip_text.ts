/**
 * CLIPTextModel and CLIPTextModelWithProjection as ONNX graphs, built from a transformers
 * `config.json` and the checkpoint's weights (initializer names = parameter names).
 *
 * Semantics follow transformers 4.30 `models/clip/modeling_clip.py` (`CLIPTextTransformer`,
 * `CLIPEncoderLayer`, `CLIPAttention`, `CLIPMLP`): learned absolute positions 0..S-1, a causal
 * mask, pre-norm layers, and the pooled output taken at `argmax(input_ids)` (the EOS token has
 * the largest id in CLIP's vocabulary).
 *
 * Graph inputs and outputs:
 * - `input_ids` int64 [batch, sequence] (both dynamic; sequence <= max_position_embeddings);
 * - `last_hidden_state` [batch, sequence, hidden]: final_layer_norm(last layer);
 * - `pooler_output` [batch, hidden];
 * - `text_embeds` [batch, projection_dim] (only when the weights have `text_projection.weight`);
 * - `hidden_states.{i}` [batch, sequence, hidden] for i = 0..L: transformers' `hidden_states`
 *   tuple (0 = embeddings, i = after layer i), e.g. SDXL's penultimate layer is
 *   `hidden_states.{L-1}`;
 * - `normed_hidden_states.{i}` for i = 0..L-1: final_layer_norm(hidden_states.i), what Diffusers'
 *   `clip_skip = c` feeds the UNet (`normed_hidden_states.{L-c}`).
 *
 * @module
 */
import {
  type ElemType,
  GraphBuilder,
  type OnnxModel,
  onnxType,
  type TensorSource,
  type Value,
} from "../onnx/graph.ts";
import { WeightLedger } from "../onnx/weight_ledger.ts";
import { quantizedLinear, type QuantizeMode, quantizes } from "./quantize.ts";

/** Activations CLIP configs name in `hidden_act`. */
export type ClipActivation = "quick_gelu" | "gelu" | "gelu_new" | "gelu_pytorch_tanh";

/** A parsed transformers CLIPTextConfig. */
export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  projectionDim: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: ClipActivation;
  layerNormEps: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
}

const ACTIVATIONS = new Set<string>(["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh"]);

/**
 * Parses a transformers text-encoder `config.json` (CLIPTextConfig; defaults as in transformers
 * 4.30 `configuration_clip.py`). A full CLIPConfig's `text_config` is accepted too.
 *
 * @example
 * ```ts
 * import { parseClipTextConfig } from "./clip_text.ts";
 * const config = parseClipTextConfig({ hidden_size: 768, num_attention_heads: 12 });
 * console.assert(config.numHiddenLayers === 12 && config.hiddenAct === "quick_gelu");
 * ```
 */
export function parseClipTextConfig(json: unknown): ClipTextConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError("Cannot parse CLIP text config: expected a JSON object");
  }
  let obj = json as Record<string, unknown>;
  if (typeof obj["text_config"] === "object" && obj["text_config"] !== null) {
    obj = obj["text_config"] as Record<string, unknown>;
  }
  const int = (key: string, fallback: number): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new RangeError(`Cannot parse CLIP text config: "${key}" must be an integer >= 0`);
    }
    return v;
  };
  const hiddenAct = obj["hidden_act"] ?? "quick_gelu";
  if (typeof hiddenAct !== "string" || !ACTIVATIONS.has(hiddenAct)) {
    throw new RangeError(
      `Cannot parse CLIP text config: hidden_act ${JSON.stringify(hiddenAct)} is not supported; ` +
        `use one of ${[...ACTIVATIONS].join(", ")}`,
    );
  }
  const eps = obj["layer_norm_eps"] ?? 1e-5;
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new RangeError(`Cannot parse CLIP text config: "layer_norm_eps" must be a number > 0`);
  }
  const config: ClipTextConfig = {
    vocabSize: int("vocab_size", 49408),
    hiddenSize: int("hidden_size", 512),
    intermediateSize: int("intermediate_size", 2048),
    projectionDim: int("projection_dim", 512),
    numHiddenLayers: int("num_hidden_layers", 12),
    numAttentionHeads: int("num_attention_heads", 8),
    maxPositionEmbeddings: int("max_position_embeddings", 77),
    hiddenAct: hiddenAct as ClipActivation,
    layerNormEps: eps,
    bosTokenId: int("bos_token_id", 0),
    eosTokenId: int("eos_token_id", 2),
    padTokenId: int("pad_token_id", 1),
  };
  if (config.numAttentionHeads === 0 || config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new RangeError(
      `Cannot parse CLIP text config: hidden_size ${config.hiddenSize} is not divisible by ` +
        `num_attention_heads ${config.numAttentionHeads}`,
    );
  }
  return config;
}

/**
 * Called by the encoder's linear layers (`q_proj`, `k_proj`, `v_proj`, `out_proj`, `fc1`,
 * `fc2`) with the layer's parameter prefix (`text_model.encoder.layers.0.self_attn.q_proj`), its
 * input `x` `[B, S, in]` and output `y` `[B, S, out]`; returns the value that replaces `y`.
 * lib/train adds LoRA branches this way. Without a hook the graph is exactly the plain one.
 */
export type ClipLinearHook = (
  g: GraphBuilder,
  name: string,
  x: Value,
  y: Value,
  inFeatures: number,
  outFeatures: number,
) => Value;

/** Options of {@linkcode buildClipTextModel}. */
export interface ClipTextBuildOptions {
  /**
   * Float type of the graph (default `"float32"`). With `"float16"` the weights must be
   * float16 sources; layer norms and softmax still run in float32 (fp16 overflows there) and
   * every output is float32.
   */
  floatType?: "float32" | "float16";
  /** Names the weights in error messages, e.g. the file path. */
  source?: string;
  /** Opset (default 17). */
  opset?: number;
  /**
   * Quantise the encoder layers' linear weights (default none): `"int8"` stores them per output
   * channel in int8 and quantises activations at run time (quantize.ts). float32 weights only;
   * the embeddings, layer norms and the text projection stay float32.
   */
  quantize?: QuantizeMode | undefined;
  /** Rewrites linear layers' outputs (default none); see {@linkcode ClipLinearHook}. */
  linearHook?: ClipLinearHook;
}

/** The float32 value torch uses for masked positions (`torch.finfo(torch.float32).min`). */
const FLOAT32_MIN = -3.4028234663852886e38;

/**
 * Builds the text encoder graph. `weights` are the checkpoint's tensors by parameter name
 * (`text_model.…`, plus `text_projection.weight` for CLIPTextModelWithProjection, which is
 * detected from its presence). Throws a TypeError listing missing, misshapen and unused weights.
 *
 * @example
 * ```ts ignore
 * const file = await SafetensorsFile.open("text_encoder/model.safetensors");
 * const config = parseClipTextConfig(JSON.parse(await Deno.readTextFile("text_encoder/config.json")));
 * const model = buildClipTextModel(config, tensorSources(file));
 * ```
 */
export function buildClipTextModel(
  config: ClipTextConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: ClipTextBuildOptions = {},
): OnnxModel {
  const floatType: ElemType = options.floatType ?? "float32";
  const withProjection = weights.has("text_projection.weight");
  const kind = withProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel";
  const ledger = new WeightLedger(
    options.source === undefined ? kind : `${kind} from "${options.source}"`,
    weights,
    // transformers saves the constant position_ids buffer; positions are computed in the graph.
    { ignore: ["text_model.embeddings.position_ids"] },
  );
  for (const [name, source] of weights) {
    if (source.dtype !== floatType && name !== "text_model.embeddings.position_ids") {
      throw new TypeError(
        `Cannot build ${kind}: weight "${name}" is ${source.dtype} but the graph is ` +
          `${floatType}; convert the weights with tensorSources(file, { floatType })`,
      );
    }
  }
  const H = config.hiddenSize;
  const heads = config.numAttentionHeads;
  const headDim = H / heads;
  const g = new GraphBuilder(kind, { opset: options.opset ?? 17 });
  const p = (name: string, shape: readonly number[]) => ledger.param(g, name, shape);
  // fp32 islands for fp16 graphs: LayerNorm and softmax.
  const toF32 = (x: Value) => floatType === "float32" ? x : g.op("Cast", [x], { to: 1 });
  const fromF32 = (x: Value) =>
    floatType === "float32" ? x : g.op("Cast", [x], { to: onnxType(floatType) });

  if (options.quantize !== undefined && floatType !== "float32") {
    throw new TypeError(
      `Cannot build ${kind} in ${options.quantize}: quantised graphs are built from float32 ` +
        `weights, not ${floatType}`,
    );
  }
  const hook = options.linearHook;
  const linear = (x: Value, prefix: string, inF: number, outF: number, bias = true): Value => {
    const y = g.scope(prefix, () => {
      if (options.quantize !== undefined && quantizes(inF, outF)) {
        const name = `${prefix}.weight`;
        const weight = ledger.take(name, [outF, inF]);
        const b = bias ? p(`${prefix}.bias`, [outF]) : null;
        return quantizedLinear(g, x, { name, weight, bias: b }, inF, outF);
      }
      const w = p(`${prefix}.weight`, [outF, inF]);
      const wt = g.op("Transpose", [w], { perm: [1, 0] }); // [out, in] -> [in, out]
      const y = g.op("MatMul", [x, wt]);
      return bias ? g.op("Add", [y, p(`${prefix}.bias`, [outF])]) : y;
    });
    return hook === undefined ? y : hook(g, prefix, x, y, inF, outF);
  };

  // LayerNormalization in float32, then back to the graph's type.
  const layerNorm = (x: Value, prefix: string): Value =>
    g.scope(prefix, () => {
      const w = toF32(p(`${prefix}.weight`, [H]));
      const b = toF32(p(`${prefix}.bias`, [H]));
      const y = g.op("LayerNormalization", [toF32(x), w, b], {
        axis: -1,
        epsilon: config.layerNormEps,
      });
      return y;
    });

  const activation = (x: Value): Value => {
    switch (config.hiddenAct) {
      case "quick_gelu": {
        // x * sigmoid(1.702 * x)   (transformers activations.py QuickGELUActivation)
        const s = g.op("Sigmoid", [g.op("Mul", [x, g.scalar(1.702, floatType)])]);
        return g.op("Mul", [x, s]);
      }
      case "gelu": {
        // 0.5 * x * (1 + erf(x / sqrt(2)))   (exact GELU, torch.nn.functional.gelu)
        const xf = toF32(x);
        const e = g.op("Erf", [g.op("Mul", [xf, g.scalar(Math.SQRT1_2)])]);
        const y = g.op("Mul", [g.op("Mul", [xf, g.scalar(0.5)]), g.op("Add", [e, g.scalar(1)])]);
        return fromF32(y);
      }
      case "gelu_new":
      case "gelu_pytorch_tanh": {
        // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))   (NewGELUActivation)
        const xf = toF32(x);
        const cube = g.op("Mul", [g.op("Mul", [xf, xf]), xf]);
        const inner = g.op("Add", [xf, g.op("Mul", [cube, g.scalar(0.044715)])]);
        const t = g.op("Tanh", [g.op("Mul", [inner, g.scalar(Math.sqrt(2 / Math.PI))])]);
        const y = g.op("Mul", [g.op("Mul", [xf, g.scalar(0.5)]), g.op("Add", [t, g.scalar(1)])]);
        return fromF32(y);
      }
    }
  };

  // 1. Embeddings: token + absolute position 0..S-1.
  const ids = g.input("input_ids", "int64", ["batch", "sequence"]);
  const seqLen = g.op("Slice", [g.op("Shape", [ids]), g.ints([1]), g.ints([2])]); // [1] = S
  let h = g.scope("text_model.embeddings", () => {
    const tok = g.op("Gather", [
      p("text_model.embeddings.token_embedding.weight", [config.vocabSize, H]),
      ids,
    ], { axis: 0 }); // [B, S, H]
    const table = p("text_model.embeddings.position_embedding.weight", [
      config.maxPositionEmbeddings,
      H,
    ]);
    const pos = g.op("Slice", [table, g.ints([0]), seqLen, g.ints([0])]); // [S, H]
    return g.op("Add", [tok, pos]);
  });
  const hiddenStates: Value[] = [h];

  // 2. Causal mask [S, S]: FLOAT32_MIN strictly above the diagonal, 0 elsewhere
  // (transformers `_build_causal_attention_mask`). Kept in float32: it is added in float32.
  const mask = g.scope("causal_mask", () => {
    const square = g.op("Concat", [seqLen, seqLen], { axis: 0 });
    const full = g.op("ConstantOfShape", [square], {
      value: { tensor: { dtype: "float32", shape: [1], data: new Float32Array([FLOAT32_MIN]) } },
    });
    return g.op("Trilu", [full, g.constant(new BigInt64Array([1n]), "int64", [])], { upper: 1 });
  });

  // 3. Encoder layers (pre-norm).
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const prefix = `text_model.encoder.layers.${i}`;
    h = g.scope(prefix, () => {
      const x = fromF32(layerNorm(h, `${prefix}.layer_norm1`));
      const a = `${prefix}.self_attn`;
      const attn = g.scope(a, () => {
        const heads4 = [0, 0, heads, headDim];
        // q is scaled before the product, as CLIPAttention does (head_dim ** -0.5).
        const q = g.op("Mul", [
          linear(x, `${a}.q_proj`, H, H),
          g.scalar(headDim ** -0.5, floatType),
        ]);
        const k = linear(x, `${a}.k_proj`, H, H);
        const v = linear(x, `${a}.v_proj`, H, H);
        const split = (t: Value, perm: number[]) =>
          g.op("Transpose", [g.op("Reshape", [t, g.ints(heads4)])], { perm }); // [B,S,H] -> [B,h,S,d]
        const qh = split(q, [0, 2, 1, 3]); // [B, h, S, d]
        const kt = split(k, [0, 2, 3, 1]); // [B, h, d, S]
        const vh = split(v, [0, 2, 1, 3]); // [B, h, S, d]
        const scores = g.op("Add", [toF32(g.op("MatMul", [qh, kt])), mask]); // [B, h, S, S]
        const probs = fromF32(g.op("Softmax", [scores], { axis: -1 }));
        const ctx = g.op("MatMul", [probs, vh]); // [B, h, S, d]
        const merged = g.op("Reshape", [
          g.op("Transpose", [ctx], { perm: [0, 2, 1, 3] }), // [B, S, h, d]
          g.ints([0, 0, H]),
        ]); // [B, S, H]
        return linear(merged, `${a}.out_proj`, H, H);
      });
      const h1 = g.op("Add", [h, attn]);
      const y = fromF32(layerNorm(h1, `${prefix}.layer_norm2`));
      const mlp = g.scope(`${prefix}.mlp`, () => {
        const f1 = linear(y, `${prefix}.mlp.fc1`, H, config.intermediateSize);
        return linear(activation(f1), `${prefix}.mlp.fc2`, config.intermediateSize, H);
      });
      return g.op("Add", [h1, mlp]);
    });
    hiddenStates.push(h);
  }

  // 4. Final layer norm; also applied to earlier layers for clip-skip.
  const finalNorm = (x: Value) => layerNorm(x, "text_model.final_layer_norm");
  const last = finalNorm(h); // float32
  g.output(last, "last_hidden_state", "float32", ["batch", "sequence", H]);

  // 5. Pooled output at the first position of the largest id (EOS), per batch row.
  const pooled = g.scope("pooler", () => {
    const ids32 = g.op("Cast", [ids], { to: onnxType("int32") });
    const eos = g.op("ArgMax", [ids32], { axis: -1, keepdims: 1 }); // [B, 1]
    return g.op("GatherND", [last, eos], { batch_dims: 1 }); // [B, H]
  });
  g.output(pooled, "pooler_output", "float32", ["batch", H]);
  if (withProjection) {
    const embeds = g.scope("text_projection", () => {
      const w = toF32(p("text_projection.weight", [config.projectionDim, H]));
      return g.op("MatMul", [pooled, g.op("Transpose", [w], { perm: [1, 0] })]); // [B, P]
    });
    g.output(embeds, "text_embeds", "float32", ["batch", config.projectionDim]);
  }
  for (let i = 0; i < hiddenStates.length; i++) {
    g.output(toF32(hiddenStates[i]!), `hidden_states.${i}`, "float32", ["batch", "sequence", H]);
  }
  for (let i = 0; i < config.numHiddenLayers; i++) {
    g.output(finalNorm(hiddenStates[i]!), `normed_hidden_states.${i}`, "float32", [
      "batch",
      "sequence",
      H,
    ]);
  }
  ledger.finish();
  return g.build({ metadata: { architecture: kind, hidden_act: config.hiddenAct } });
}
