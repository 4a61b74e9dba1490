/**
 * Neural-network building blocks over {@linkcode GraphBuilder}, shared by the UNet and VAE
 * builders: weights with a ledger (missing / misshapen / unused names are reported together),
 * conv2d, group norm, linear, SiLU, attention, GEGLU feed-forward, ResnetBlock2D, up/downsample,
 * sinusoidal timestep embedding, Transformer2DModel and the VAE's single-head attention.
 *
 * Semantics follow Diffusers 0.27 (src/diffusers/models/resnet.py, attention.py,
 * attention_processor.py, embeddings.py, downsampling.py, upsampling.py,
 * transformers/transformer_2d.py); each function names its source. Tokens inside transformer
 * blocks are kept 2-D (`[B*S, C]`) so every linear layer is one `Gemm` with `transB=1`, which
 * reads the checkpoint's `[out, in]` matrix as is: no weight is transposed or copied.
 *
 * @module
 */
import {
  type GraphBuilder,
  onnxType,
  sliceRows,
  type TensorSource,
  type Value,
} from "../onnx/graph.ts";
import { WeightLedger } from "../onnx/weight_ledger.ts";
import { readSource } from "../onnx/model_file.ts";
import { convertFloat } from "../onnx/tensor_sources.ts";
import { quantizedConv, quantizedLinear, type QuantizeMode, quantizes } from "./quantize.ts";

/**
 * How attention is computed: `"fused"` uses onnxruntime's `com.microsoft.MultiHeadAttention`
 * (CPU and CUDA; 1.3-3x faster than the plain ops in bench/unet_bench.ts measurements), `"onnx"`
 * plain MatMul/Softmax/MatMul with standard ops only (for other runtimes).
 */
export type AttentionKernel = "fused" | "onnx";

/**
 * Float type of a UNet or VAE graph. `"float16"` graphs keep float32 inputs and outputs (cast
 * at the edges) and compute group norm, layer norm, GELU, softmax and the timestep sinusoids in
 * float32, where float16 overflows or loses too much.
 */
export type GraphFloatType = "float32" | "float16";

/**
 * Called by {@linkcode linear} with the layer's parameter prefix (`down_blocks.1.attentions.0.
 * transformer_blocks.0.attn1.to_q`), its input `x` `[N, in]` and output `y` `[N, out]`; returns
 * the value that replaces `y`. lib/train adds LoRA branches this way (`y + s * x down^T up^T`
 * with down/up as graph inputs). Without a hook the graph is exactly the plain one.
 */
export type LinearHook = (
  c: ModelContext,
  name: string,
  x: Value,
  y: Value,
  inFeatures: number,
  outFeatures: number,
) => Value;

/** Options of {@linkcode ModelContext}. */
export interface ModelContextOptions {
  /** How attention is computed (default `"fused"`). */
  attention?: AttentionKernel;
  /** Float type of weights and activations (default `"float32"`). */
  floatType?: GraphFloatType;
  /** Rewrites the output of every {@linkcode linear} layer (default none); see {@linkcode LinearHook}. */
  linearHook?: LinearHook;
  /**
   * Quantise linear and convolution weights (default none): `"int8"` stores them per output
   * channel in int8 and quantises activations at run time (quantize.ts). float32 graphs only.
   */
  quantize?: QuantizeMode | undefined;
}

/**
 * A graph under construction plus the weight ledger of lib/onnx: `param()` adds a weight as an
 * initializer named after its Diffusers parameter name and checks its shape; `finish()` throws
 * one error listing all missing, misshapen and unused weights.
 */
export class ModelContext {
  readonly g: GraphBuilder;
  readonly ledger: WeightLedger;
  /** How attention is computed; see {@linkcode AttentionKernel}. */
  readonly attention: AttentionKernel;
  /** Float type of weights and activations; see {@linkcode GraphFloatType}. */
  readonly floatType: GraphFloatType;
  /** Rewrites linear layers' outputs; see {@linkcode LinearHook}. */
  readonly linearHook: LinearHook | undefined;
  /** Weight quantisation of linear and convolution layers, if any. */
  readonly quantize: QuantizeMode | undefined;

  /**
   * @param what Names the model in error messages, e.g. `UNet2DConditionModel`.
   * @param weights The checkpoint's tensors by Diffusers parameter name (lib/onnx
   *   `tensorSources(file, { floatType })`), all of the context's float type.
   */
  constructor(
    g: GraphBuilder,
    what: string,
    weights: ReadonlyMap<string, TensorSource>,
    options: ModelContextOptions = {},
  ) {
    this.g = g;
    this.ledger = new WeightLedger(what, weights);
    this.attention = options.attention ?? "fused";
    this.floatType = options.floatType ?? "float32";
    this.linearHook = options.linearHook;
    this.quantize = options.quantize;
    if (this.quantize !== undefined && this.floatType !== "float32") {
      throw new TypeError(
        `Cannot build ${what} in ${this.quantize}: quantised graphs are built from float32 ` +
          `weights, not ${this.floatType}`,
      );
    }
  }

  /** `x` (of the graph's float type) as float32; no node in float32 graphs. */
  toF32(x: Value): Value {
    return this.floatType === "float32" ? x : this.g.op("Cast", [x], { to: onnxType("float32") });
  }

  /** `x` (float32) in the graph's float type; no node in float32 graphs. */
  fromF32(x: Value): Value {
    return this.floatType === "float32"
      ? x
      : this.g.op("Cast", [x], { to: onnxType(this.floatType) });
  }

  /** A scalar constant of the graph's float type. */
  scalar(value: number): Value {
    return this.g.scalar(value, this.floatType);
  }

  /** Model name used in error messages. */
  get what(): string {
    return this.ledger.what;
  }

  /** The initializer for weight `name`, which must have `shape` (recorded in the ledger). */
  param(name: string, shape: readonly number[]): Value {
    if (recording !== null) {
      if (recording.has(name)) throw new RangeError(`Weight "${name}" is requested twice`);
      recording.set(name, [...shape]);
      const n = shape.reduce((a, b) => a * b, 1);
      const load = this.floatType === "float32"
        ? () => new Float32Array(n)
        : () => new Uint16Array(n);
      return this.g.initializer(name, { dtype: this.floatType, shape, load });
    }
    const value = this.ledger.param(this.g, name, shape);
    if (value.type !== this.floatType) {
      throw new RangeError(
        `Cannot build ${this.what}: weight "${name}" is ${value.type} but the graph is ` +
          `${this.floatType}; pass tensorSources(file, { floatType: "${this.floatType}" })`,
      );
    }
    return value;
  }

  /**
   * The source of weight `name` (which must have `shape`), recorded in the ledger, without
   * adding it to the graph: for layers that use a weight in parts ({@linkcode sliceRows}) or
   * store it converted (int8). Asking twice returns the same source.
   */
  source(name: string, shape: readonly number[]): TensorSource {
    if (recording !== null) {
      const known = recording.get(name);
      if (known !== undefined && known.join() !== shape.join()) {
        throw new RangeError(`Weight "${name}" is requested with two shapes`);
      }
      recording.set(name, [...shape]);
      const n = shape.reduce((a, b) => a * b, 1);
      const load = this.floatType === "float32"
        ? () => new Float32Array(n)
        : () => new Uint16Array(n);
      return { dtype: this.floatType, shape, load };
    }
    let whole = this.#taken.get(name);
    if (whole === undefined) {
      whole = this.ledger.take(name, shape);
      this.#taken.set(name, whole);
    }
    if (whole.dtype !== this.floatType) {
      throw new RangeError(
        `Cannot build ${this.what}: weight "${name}" is ${whole.dtype} but the graph is ` +
          `${this.floatType}; pass tensorSources(file, { floatType: "${this.floatType}" })`,
      );
    }
    return whole;
  }

  #taken = new Map<string, TensorSource>();

  /**
   * Rows `start .. start + count` of weight `name` (which must have `shape`) as an initializer
   * of their own, named `name[start:end]`: a region of the weight file, so nothing is copied.
   */
  paramRows(name: string, shape: readonly number[], start: number, count: number): Value {
    const part = sliceRows(this.source(name, shape), start, count);
    return this.g.initializer(`${name}[${start}:${start + count}]`, part);
  }

  /** Throws listing every missing, misshapen and unused weight, if any. */
  finish(): void {
    if (recording === null) this.ledger.finish();
  }
}

// Set while collectParameterShapes() runs a builder (builders are synchronous).
let recording: Map<string, number[]> | null = null;

/**
 * The weights a builder asks for, by name, with their shapes: runs `build` (which must build its
 * graph synchronously with {@linkcode ModelContext}, as the UNet and VAE builders do) in a mode
 * where every requested weight is recorded instead of looked up. Used to make random models
 * with exactly the layout the builders read.
 *
 * @example
 * ```ts
 * import { parseVaeConfig } from "./config.ts";
 * import { collectParameterShapes } from "./layers.ts";
 * import { buildVaeDecoder } from "./vae.ts";
 * const config = parseVaeConfig({ block_out_channels: [4], norm_num_groups: 2 });
 * const shapes = collectParameterShapes(() => buildVaeDecoder(config, new Map()));
 * console.assert(shapes.get("decoder.conv_in.weight")?.join() === "4,4,3,3");
 * ```
 */
export function collectParameterShapes(build: () => unknown): Map<string, number[]> {
  if (recording !== null) throw new RangeError("collectParameterShapes() cannot be nested");
  const shapes = new Map<string, number[]>();
  recording = shapes;
  try {
    build();
  } finally {
    recording = null;
  }
  return shapes;
}

/**
 * Float32 weights held in memory (random models, tests) as initializer sources.
 *
 * @example
 * ```ts
 * import { memoryWeights } from "./layers.ts";
 * const w = memoryWeights(new Map([["fc.weight", { shape: [1, 2], data: new Float32Array(2) }]]));
 * console.assert(w.get("fc.weight")?.dtype === "float32");
 * ```
 */
export function memoryWeights(
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
): Map<string, TensorSource> {
  const out = new Map<string, TensorSource>();
  for (const [name, t] of tensors) {
    out.set(name, { dtype: "float32", shape: t.shape, data: t.data });
  }
  return out;
}

/**
 * `weights` with every float32/float16 tensor in `floatType`: others are converted (lazily,
 * when the graph is written) and tensors already of that type or not float are kept as they
 * are. For weights edited in float32 (LoRA merges, memory weights) that a float16 graph reads.
 *
 * @example
 * ```ts
 * import { castWeights, memoryWeights } from "./layers.ts";
 * const w = memoryWeights(new Map([["fc.weight", { shape: [2], data: Float32Array.of(1, 2) }]]));
 * console.assert(castWeights(w, "float16").get("fc.weight")?.dtype === "float16");
 * ```
 */
export function castWeights(
  weights: ReadonlyMap<string, TensorSource>,
  floatType: GraphFloatType,
): Map<string, TensorSource> {
  const out = new Map<string, TensorSource>();
  for (const [name, source] of weights) {
    const from = source.dtype === "float32" ? "F32" : source.dtype === "float16" ? "F16" : null;
    if (from === null || source.dtype === floatType) {
      out.set(name, source);
      continue;
    }
    out.set(name, {
      dtype: floatType,
      shape: source.shape,
      load: async () => convertFloat(await readSource(name, source), from, floatType),
    });
  }
  return out;
}

/** The subset of `weights` whose names start with one of `prefixes` (encoder vs decoder). */
export function selectWeights(
  weights: ReadonlyMap<string, TensorSource>,
  prefixes: readonly string[],
): Map<string, TensorSource> {
  const out = new Map<string, TensorSource>();
  for (const [name, source] of weights) {
    if (prefixes.some((p) => name.startsWith(p))) out.set(name, source);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Elementary layers

/** SiLU: `x * sigmoid(x)` (torch.nn.SiLU). */
export function silu(g: GraphBuilder, x: Value): Value {
  return g.op("Mul", [x, g.op("Sigmoid", [x])]);
}

/** Exact (erf) GELU, torch.nn.functional.gelu with approximate="none". */
export function gelu(g: GraphBuilder, x: Value): Value {
  const erf = g.op("Erf", [g.op("Div", [x, g.scalar(Math.SQRT2)])]);
  return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [erf, g.scalar(1)])]);
}

/** Options of {@linkcode conv2d}. */
export interface Conv2dOptions {
  kernel?: number;
  stride?: number;
  /** Symmetric zero padding (default `dilation * (kernel - 1) / 2`). */
  padding?: number;
  bias?: boolean;
  /** Spacing between kernel taps (default 1). */
  dilation?: number;
  /** Channel groups (default 1); `groups = inChannels` is a depthwise convolution. */
  groups?: number;
}

/**
 * torch.nn.Conv2d with weights `${name}.weight` [out, in / groups, k, k] and `${name}.bias`
 * [out].
 */
export function conv2d(
  c: ModelContext,
  name: string,
  x: Value,
  inChannels: number,
  outChannels: number,
  options: Conv2dOptions = {},
): Value {
  const k = options.kernel ?? 3;
  const stride = options.stride ?? 1;
  const dilation = options.dilation ?? 1;
  const groups = options.groups ?? 1;
  const pad = options.padding ?? Math.floor((dilation * (k - 1)) / 2);
  if (inChannels % groups !== 0 || outChannels % groups !== 0) {
    throw new RangeError(
      `Cannot build ${c.what}: "${name}" has ${inChannels} -> ${outChannels} channels, not divisible into ${groups} groups`,
    );
  }
  const shape = [outChannels, inChannels / groups, k, k];
  const b = options.bias === false ? null : c.param(`${name}.bias`, [outChannels]);
  if (
    c.quantize !== undefined && dilation === 1 && groups === 1 && quantizes(inChannels, outChannels)
  ) {
    const weight = c.source(`${name}.weight`, shape);
    return c.g.scope(name, () =>
      // [B, Cin, H, W] -> [B, Cout, H', W']
      quantizedConv(c.g, x, { name: `${name}.weight`, weight, bias: b }, inChannels, outChannels, {
        kernel: k,
        stride,
        padding: pad,
      }));
  }
  const w = c.param(`${name}.weight`, shape);
  return c.g.scope(name, () =>
    // [B, Cin, H, W] -> [B, Cout, H', W']
    c.g.op("Conv", [x, w, b], {
      kernel_shape: [k, k],
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
      ...(dilation !== 1 ? { dilations: [dilation, dilation] } : {}),
      ...(groups !== 1 ? { group: groups } : {}),
    }));
}

/**
 * torch.nn.GroupNorm over `[B, C, ...]` as Reshape + InstanceNormalization + Reshape + affine
 * (ONNX GroupNormalization changed meaning between opsets 18 and 21; this works on every ORT).
 */
export function groupNorm(
  c: ModelContext,
  name: string,
  x: Value,
  channels: number,
  groups: number,
  eps: number,
): Value {
  if (channels % groups !== 0) {
    throw new RangeError(
      `Cannot build ${c.what}: "${name}" has ${channels} channels, not divisible into ${groups} groups`,
    );
  }
  const gamma = c.param(`${name}.weight`, [channels]);
  const beta = c.param(`${name}.bias`, [channels]);
  const g = c.g;
  return g.scope(name, () => {
    const shape = g.op("Shape", [x]);
    // float16 graphs: the statistics and the affine run in float32 (sums over H*W overflow).
    // [B, C, H, W] -> [B, G, C/G*H*W]
    const grouped = g.op("Reshape", [c.toF32(x), g.ints([0, groups, -1])]);
    const ones = g.constant(new Float32Array(groups).fill(1), "float32", [groups]);
    const zeros = g.constant(new Float32Array(groups), "float32", [groups]);
    const normed = g.op("InstanceNormalization", [grouped, ones, zeros], { epsilon: eps });
    // [B, G, C/G*H*W] -> [B, C, H, W]
    const back = g.op("Reshape", [normed, shape]);
    const axes = g.ints([1, 2]);
    // gamma, beta: [C] -> [C, 1, 1]
    return c.fromF32(g.op("Add", [
      g.op("Mul", [back, g.op("Unsqueeze", [c.toF32(gamma), axes])]),
      g.op("Unsqueeze", [c.toF32(beta), axes]),
    ]));
  });
}

/** torch.nn.LayerNorm over the last axis (weight and bias `[dim]`). */
export function layerNorm(
  c: ModelContext,
  name: string,
  x: Value,
  dim: number,
  eps: number,
): Value {
  const w = c.param(`${name}.weight`, [dim]);
  const b = c.param(`${name}.bias`, [dim]);
  // float16 graphs normalise in float32.
  return c.g.scope(name, () =>
    c.fromF32(
      c.g.op("LayerNormalization", [c.toF32(x), c.toF32(w), c.toF32(b)], {
        axis: -1,
        epsilon: eps,
      }),
    ));
}

/** torch.nn.Linear on 2-D input `[N, in] -> [N, out]`, as Gemm with the weight as stored. */
export function linear(
  c: ModelContext,
  name: string,
  x: Value,
  inFeatures: number,
  outFeatures: number,
  bias = true,
): Value {
  const b = bias ? c.param(`${name}.bias`, [outFeatures]) : null;
  let y: Value;
  if (c.quantize !== undefined && quantizes(inFeatures, outFeatures)) {
    const weight = c.source(`${name}.weight`, [outFeatures, inFeatures]);
    y = c.g.scope(
      name,
      () =>
        quantizedLinear(
          c.g,
          x,
          { name: `${name}.weight`, weight, bias: b },
          inFeatures,
          outFeatures,
        ),
    );
  } else {
    const w = c.param(`${name}.weight`, [outFeatures, inFeatures]);
    y = c.g.scope(name, () => c.g.op("Gemm", [x, w, b], { transB: 1 }));
  }
  return c.linearHook === undefined ? y : c.linearHook(c, name, x, y, inFeatures, outFeatures);
}

// ---------------------------------------------------------------------------------------------
// Attention and transformer blocks

/** Shape helpers a transformer needs at run time: the batch dimension as a 1-D int64 tensor. */
export interface TokenLayout {
  /** `[B]` (1-D int64), from `Shape(x)[0:1]`. */
  batch: Value;
}

/** `[B]` (1-D int64) of a tensor whose first axis is the batch. */
export function batchDim(g: GraphBuilder, x: Value): Value {
  return g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([1])]);
}

/** Options of {@linkcode attention}. */
export interface AttentionOptions {
  queryDim: number;
  /** Width of the context tokens (cross-attention), or undefined for self-attention. */
  contextDim?: number;
  heads: number;
  headDim: number;
  /** Biases on to_q/to_k/to_v (Diffusers `bias`; false in UNet transformers). */
  qkvBias: boolean;
  /** Output width (default `queryDim`). */
  outDim?: number;
}

/**
 * Diffusers `Attention` with `AttnProcessor` (attention_processor.py): `to_q`, `to_k`, `to_v`,
 * `softmax(q k^T / sqrt(d)) v` per head, then `to_out.0`. Tokens are 2-D: `x` is `[B*S, C]`,
 * `context` is `[B*L, Cc]` (or null for self-attention); returns `[B*S, outDim]`.
 */
export function attention(
  c: ModelContext,
  name: string,
  x: Value,
  context: Value | null,
  layout: TokenLayout,
  o: AttentionOptions,
): Value {
  const g = c.g;
  const inner = o.heads * o.headDim;
  const ctx = context ?? x;
  const ctxDim = context === null ? o.queryDim : (o.contextDim ?? o.queryDim);
  const q = linear(c, `${name}.to_q`, x, o.queryDim, inner, o.qkvBias);
  const k = linear(c, `${name}.to_k`, ctx, ctxDim, inner, o.qkvBias);
  const v = linear(c, `${name}.to_v`, ctx, ctxDim, inner, o.qkvBias);
  const out = g.scope(name, () => {
    if (c.attention === "fused") {
      // [B*S, h*d] -> [B, S, h*d] (and the same for k, v with L tokens)
      const bsc = g.op("Concat", [layout.batch, g.ints([-1, inner])], { axis: 0 });
      const [q3, k3, v3] = [q, k, v].map((t) => g.op("Reshape", [t, bsc]));
      // softmax(q k^T / sqrt(d)) v per head: [B, S, h*d]
      const heads = g.op("MultiHeadAttention", [q3!, k3!, v3!], { num_heads: o.heads }, {
        domain: "com.microsoft",
      });
      // [B, S, h*d] -> [B*S, h*d]
      return g.op("Reshape", [heads, g.ints([-1, inner])]);
    }
    const split = g.op("Concat", [layout.batch, g.ints([-1, o.heads, o.headDim])], { axis: 0 });
    // Diffusers multiplies q k^T by scale; scaling q first is the same up to rounding.
    const qs = g.op("Mul", [q, c.scalar(1 / Math.sqrt(o.headDim))]);
    // [B*S, h*d] -> [B, S, h, d] -> [B, h, S, d]
    const qh = g.op("Transpose", [g.op("Reshape", [qs, split])], { perm: [0, 2, 1, 3] });
    // [B*L, h*d] -> [B, L, h, d] -> [B, h, d, L]
    const kh = g.op("Transpose", [g.op("Reshape", [k, split])], { perm: [0, 2, 3, 1] });
    // [B*L, h*d] -> [B, L, h, d] -> [B, h, L, d]
    const vh = g.op("Transpose", [g.op("Reshape", [v, split])], { perm: [0, 2, 1, 3] });
    // [B, h, S, d] @ [B, h, d, L] -> [B, h, S, L]
    // float16 graphs: softmax in float32.
    const probs = c.fromF32(g.op("Softmax", [c.toF32(g.op("MatMul", [qh, kh]))], { axis: -1 }));
    // [B, h, S, L] @ [B, h, L, d] -> [B, h, S, d] -> [B, S, h, d]
    const heads = g.op("Transpose", [g.op("MatMul", [probs, vh])], { perm: [0, 2, 1, 3] });
    // [B, S, h, d] -> [B*S, h*d]
    return g.op("Reshape", [heads, g.ints([-1, inner])]);
  });
  return linear(c, `${name}.to_out.0`, out, inner, o.outDim ?? o.queryDim, true);
}

/**
 * Diffusers `FeedForward` with GEGLU (attention.py, activations.py): `[N, dim] -> [N, dim]`.
 *
 * `proj.chunk(2, dim=-1)` splits the projection's output; the graph instead projects twice, with
 * the first and second halves of the weight's rows (regions of the weight file, no copy), so no
 * `Split` copies the `[N, 8 * dim]` output (3% of an SD 1.5 UNet evaluation at 512 px on CPU).
 * With a {@linkcode LinearHook} the projection stays one layer, as the hook expects.
 */
export function feedForwardGeglu(c: ModelContext, name: string, x: Value, dim: number): Value {
  const inner = dim * 4;
  const g = c.g;
  const projName = `${name}.net.0.proj`;
  let hidden: Value;
  let gate: Value;
  if (c.linearHook === undefined) {
    // [N, dim] -> [N, inner] twice: rows 0..inner of proj are the hidden states, the rest the gate
    const shape = [inner * 2, dim];
    const quantized = c.quantize !== undefined && quantizes(dim, inner);
    [hidden, gate] = g.scope(projName, () =>
      [0, inner].map((start) => {
        const b = c.paramRows(`${projName}.bias`, [inner * 2], start, inner);
        if (quantized) {
          const weight = sliceRows(c.source(`${projName}.weight`, shape), start, inner);
          const name = `${projName}.weight[${start}:${start + inner}]`;
          return quantizedLinear(g, x, { name, weight, bias: b }, dim, inner);
        }
        const w = c.paramRows(`${projName}.weight`, shape, start, inner);
        return g.op("Gemm", [x, w, b], { transB: 1 });
      })) as [Value, Value];
  } else {
    // [N, dim] -> [N, 2*inner]
    const proj = linear(c, projName, x, dim, inner * 2);
    // hidden_states, gate = proj.chunk(2, dim=-1)
    [hidden, gate] = g.scope(
      `${name}.net.0`,
      () => g.opN("Split", [proj, g.ints([inner, inner])], 2, { axis: -1 }),
    ) as [Value, Value];
  }
  const gated = g.scope(`${name}.net.0`, () =>
    // hidden_states * gelu(gate); float16 graphs: GELU in float32 (ORT's CPU Erf is float32 only).
    g.op("Mul", [hidden, c.fromF32(gelu(g, c.toF32(gate)))]));
  // net.1 is dropout; [N, inner] -> [N, dim]
  return linear(c, `${name}.net.2`, gated, inner, dim);
}

/** Options of {@linkcode basicTransformerBlock}. */
export interface TransformerBlockOptions {
  dim: number;
  heads: number;
  headDim: number;
  crossAttentionDim: number;
}

/**
 * Diffusers `BasicTransformerBlock` (attention.py, norm_type "layer_norm"): self-attention,
 * cross-attention and GEGLU feed-forward, each pre-normed and residual. `x` is `[B*S, dim]`.
 */
export function basicTransformerBlock(
  c: ModelContext,
  name: string,
  x: Value,
  context: Value,
  layout: TokenLayout,
  o: TransformerBlockOptions,
): Value {
  const g = c.g;
  const attn = { queryDim: o.dim, heads: o.heads, headDim: o.headDim, qkvBias: false };
  let h = x;
  const n1 = layerNorm(c, `${name}.norm1`, h, o.dim, 1e-5);
  h = g.op("Add", [attention(c, `${name}.attn1`, n1, null, layout, attn), h]);
  const n2 = layerNorm(c, `${name}.norm2`, h, o.dim, 1e-5);
  const cross = { ...attn, contextDim: o.crossAttentionDim };
  h = g.op("Add", [attention(c, `${name}.attn2`, n2, context, layout, cross), h]);
  const n3 = layerNorm(c, `${name}.norm3`, h, o.dim, 1e-5);
  return g.op("Add", [feedForwardGeglu(c, `${name}.ff`, n3, o.dim), h]);
}

/** Options of {@linkcode transformer2d}. */
export interface Transformer2dOptions {
  channels: number;
  heads: number;
  layers: number;
  crossAttentionDim: number;
  groups: number;
  useLinearProjection: boolean;
}

/**
 * Diffusers `Transformer2DModel` for continuous input (transformers/transformer_2d.py):
 * GroupNorm(eps 1e-6), proj_in (1x1 conv or linear), `layers` BasicTransformerBlocks, proj_out,
 * plus the input as residual. `x` is `[B, C, H, W]`, `context` is `[B*L, Cc]`.
 */
export function transformer2d(
  c: ModelContext,
  name: string,
  x: Value,
  context: Value,
  o: Transformer2dOptions,
): Value {
  const g = c.g;
  const ch = o.channels;
  const headDim = Math.floor(ch / o.heads);
  const inner = o.heads * headDim;
  const layout: TokenLayout = { batch: g.scope(name, () => batchDim(g, x)) };
  const shape = g.scope(name, () => g.op("Shape", [x]));
  const normed = groupNorm(c, `${name}.norm`, x, ch, o.groups, 1e-6);
  // [B, C, H, W] -> [B, H, W, C] -> [B*H*W, C]
  const toTokens = (v: Value, width: number) =>
    g.scope(
      name,
      () => g.op("Reshape", [g.op("Transpose", [v], { perm: [0, 2, 3, 1] }), g.ints([-1, width])]),
    );
  let tokens: Value;
  if (o.useLinearProjection) {
    tokens = linear(c, `${name}.proj_in`, toTokens(normed, ch), ch, inner);
  } else {
    const projected = conv2d(c, `${name}.proj_in`, normed, ch, inner, { kernel: 1, padding: 0 });
    tokens = toTokens(projected, inner);
  }
  for (let i = 0; i < o.layers; i++) {
    tokens = basicTransformerBlock(c, `${name}.transformer_blocks.${i}`, tokens, context, layout, {
      dim: inner,
      heads: o.heads,
      headDim,
      crossAttentionDim: o.crossAttentionDim,
    });
  }
  // [B*H*W, C] -> [B, H, W, C] -> [B, C, H, W]
  const toImage = (v: Value, width: number) =>
    g.scope(name, () => {
      const b = layout.batch;
      const hw = g.op("Slice", [shape, g.ints([2]), g.ints([4])]);
      const bhwc = g.op("Concat", [b, hw, g.ints([width])], { axis: 0 });
      return g.op("Transpose", [g.op("Reshape", [v, bhwc])], { perm: [0, 3, 1, 2] });
    });
  let out: Value;
  if (o.useLinearProjection) {
    out = toImage(linear(c, `${name}.proj_out`, tokens, inner, ch), ch);
  } else {
    out = conv2d(c, `${name}.proj_out`, toImage(tokens, inner), inner, ch, {
      kernel: 1,
      padding: 0,
    });
  }
  return g.op("Add", [out, x]);
}

/**
 * The VAE mid-block attention: Diffusers `Attention` built with `_from_deprecated_attn_block`
 * (one head of width C, group_norm, biases on q/k/v, residual connection). `[B, C, H, W]` in
 * and out.
 */
export function spatialSelfAttention(
  c: ModelContext,
  name: string,
  x: Value,
  channels: number,
  groups: number,
  eps: number,
): Value {
  const g = c.g;
  const shape = g.scope(name, () => g.op("Shape", [x]));
  const layout: TokenLayout = { batch: g.scope(name, () => batchDim(g, x)) };
  const normed = groupNorm(c, `${name}.group_norm`, x, channels, groups, eps);
  // [B, C, H, W] -> [B, H, W, C] -> [B*H*W, C]
  const tokens = g.scope(
    name,
    () =>
      g.op("Reshape", [
        g.op("Transpose", [normed], { perm: [0, 2, 3, 1] }),
        g.ints([-1, channels]),
      ]),
  );
  const attended = attention(c, name, tokens, null, layout, {
    queryDim: channels,
    heads: 1,
    headDim: channels,
    qkvBias: true,
  });
  return g.scope(name, () => {
    const hw = g.op("Slice", [shape, g.ints([2]), g.ints([4])]);
    const bhwc = g.op("Concat", [layout.batch, hw, g.ints([channels])], { axis: 0 });
    // [B*H*W, C] -> [B, H, W, C] -> [B, C, H, W]
    const image = g.op("Transpose", [g.op("Reshape", [attended, bhwc])], { perm: [0, 3, 1, 2] });
    return g.op("Add", [image, x]);
  });
}

// ---------------------------------------------------------------------------------------------
// Convolutional blocks

/** Options of {@linkcode resnetBlock2d}. */
export interface ResnetBlockOptions {
  inChannels: number;
  outChannels: number;
  /** Width of the time embedding, or null (VAE: no time embedding). */
  tembChannels: number | null;
  groups: number;
  eps: number;
  /** Divides the output (`output_scale_factor`, default 1). */
  outputScaleFactor?: number;
}

/**
 * Diffusers `ResnetBlock2D` (resnet.py, time_embedding_norm "default"): norm1, SiLU, conv1,
 * `+ time_emb_proj(silu(temb))`, norm2, SiLU, conv2, plus a 1x1 `conv_shortcut` when the
 * channel count changes. `x` is `[B, Cin, H, W]`, `temb` is `[B, T]`.
 */
export function resnetBlock2d(
  c: ModelContext,
  name: string,
  x: Value,
  tembAct: Value | null,
  o: ResnetBlockOptions,
): Value {
  const g = c.g;
  let h = groupNorm(c, `${name}.norm1`, x, o.inChannels, o.groups, o.eps);
  h = g.scope(name, () => silu(g, h));
  h = conv2d(c, `${name}.conv1`, h, o.inChannels, o.outChannels);
  if (o.tembChannels !== null) {
    if (tembAct === null) throw new TypeError(`"${name}" needs a time embedding`);
    // silu(temb) is computed once by the caller; [B, T] -> [B, Cout] -> [B, Cout, 1, 1]
    const t = linear(c, `${name}.time_emb_proj`, tembAct, o.tembChannels, o.outChannels);
    h = g.scope(name, () => g.op("Add", [h, g.op("Unsqueeze", [t, g.ints([2, 3])])]));
  }
  h = groupNorm(c, `${name}.norm2`, h, o.outChannels, o.groups, o.eps);
  h = g.scope(name, () => silu(g, h));
  h = conv2d(c, `${name}.conv2`, h, o.outChannels, o.outChannels);
  const shortcut = o.inChannels === o.outChannels
    ? x
    : conv2d(c, `${name}.conv_shortcut`, x, o.inChannels, o.outChannels, { kernel: 1, padding: 0 });
  return g.scope(name, () => {
    const sum = g.op("Add", [shortcut, h]);
    const scale = o.outputScaleFactor ?? 1;
    return scale === 1 ? sum : g.op("Div", [sum, c.scalar(scale)]);
  });
}

/**
 * Diffusers `Downsample2D` with a conv (downsampling.py): stride-2 3x3 conv. With padding 0
 * (the VAE) the input is first padded by one on the right and bottom, as Diffusers does.
 */
export function downsample2d(
  c: ModelContext,
  name: string,
  x: Value,
  channels: number,
  padding: number,
): Value {
  const g = c.g;
  let input = x;
  if (padding === 0) {
    // F.pad(x, (0, 1, 0, 1)): [B, C, H, W] -> [B, C, H+1, W+1]
    input = g.scope(
      name,
      () => g.op("Pad", [x, g.ints([0, 0, 0, 0, 0, 0, 1, 1]), c.scalar(0)], { mode: "constant" }),
    );
  }
  return conv2d(c, `${name}.conv`, input, channels, channels, { stride: 2, padding });
}

/**
 * Diffusers `Upsample2D` with a conv (upsampling.py): nearest-neighbour resize then 3x3 conv.
 * `sizeLike` gives the output H, W (the UNet's skip connection, as Diffusers passes
 * `upsample_size` for odd sizes); null doubles H and W.
 */
export function upsample2d(
  c: ModelContext,
  name: string,
  x: Value,
  channels: number,
  sizeLike: Value | null,
): Value {
  const g = c.g;
  const up = g.scope(name, () => {
    // PyTorch "nearest" = ONNX asymmetric coordinates with floor rounding.
    const attrs = {
      mode: "nearest",
      coordinate_transformation_mode: "asymmetric",
      nearest_mode: "floor",
    };
    if (sizeLike === null) {
      const scales = g.constant([1, 1, 2, 2], "float32", [4]);
      // [B, C, H, W] -> [B, C, 2H, 2W]
      return g.op("Resize", [x, null, scales], attrs);
    }
    const bc = g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([2])]);
    const hw = g.op("Slice", [g.op("Shape", [sizeLike]), g.ints([2]), g.ints([4])]);
    const sizes = g.op("Concat", [bc, hw], { axis: 0 });
    // [B, C, H, W] -> [B, C, H', W'] with H', W' from the skip connection
    return g.op("Resize", [x, null, null, sizes], attrs);
  });
  return conv2d(c, `${name}.conv`, up, channels, channels);
}

// ---------------------------------------------------------------------------------------------
// Timestep embeddings

/**
 * The frequencies of Diffusers' `get_timestep_embedding` (embeddings.py), computed in float32
 * the way torch does: `exp(-ln(10000) * i / (half - shift))`.
 */
export function timestepFrequencies(dim: number, downscaleFreqShift: number): Float32Array {
  const half = Math.floor(dim / 2);
  const f = Math.fround;
  const logMax = f(-Math.log(10000));
  const denom = f(half - downscaleFreqShift);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = f(Math.exp(f(f(logMax * i) / denom)));
  return out;
}

/**
 * Diffusers `Timesteps` / `get_timestep_embedding`: `[N]` float timesteps -> `[N, dim]`
 * sinusoidal embedding, `[sin, cos]` or `[cos, sin]` when `flipSinToCos`. Always float32
 * (float16 graphs cast the result).
 */
export function timestepProjection(
  g: GraphBuilder,
  t: Value,
  dim: number,
  flipSinToCos: boolean,
  freqShift: number,
): Value {
  const freqs = timestepFrequencies(dim, freqShift);
  const half = freqs.length;
  // [N] -> [N, 1] * [1, half] -> [N, half]
  const args = g.op("Mul", [
    g.op("Unsqueeze", [t, g.ints([1])]),
    g.constant(freqs, "float32", [1, half]),
  ]);
  const sin = g.op("Sin", [args]);
  const cos = g.op("Cos", [args]);
  // [N, half] x2 -> [N, 2*half]
  let emb = g.op("Concat", flipSinToCos ? [cos, sin] : [sin, cos], { axis: -1 });
  if (dim % 2 === 1) {
    emb = g.op("Pad", [emb, g.ints([0, 0, 0, 1]), g.scalar(0)], { mode: "constant" });
  }
  return emb;
}

/** Diffusers `TimestepEmbedding` (embeddings.py): linear_1, SiLU, linear_2. */
export function timestepEmbedding(
  c: ModelContext,
  name: string,
  x: Value,
  inDim: number,
  outDim: number,
): Value {
  const h = linear(c, `${name}.linear_1`, x, inDim, outDim);
  const a = c.g.scope(name, () => silu(c.g, h));
  return linear(c, `${name}.linear_2`, a, outDim, outDim);
}
