/**
 * int8 layers for CPU inference: weights quantised per output channel when the graph is built,
 * activations quantised per tensor at run time (ONNX `DynamicQuantizeLinear`, uint8 with a zero
 * point), products accumulated in int32 by `MatMulInteger` and scaled back to float32.
 *
 * - Linear layers (`[N, in] -> [N, out]`): `DynamicQuantizeLinear` + `MatMulInteger` with the
 *   weight transposed to `[in, out]` int8 + `Cast` + `Mul` by `x_scale * w_scale[out]` + `Add`
 *   bias. onnxruntime fuses the chain into one `MatMulIntegerToFloat` or `DynamicQuantizeMatMul`
 *   kernel (optimisation level "extended").
 * - Convolutions (`[B, C, H, W]`, square kernels): the quantised input is moved to NHWC, padded
 *   with its zero point (which stands for 0.0), and its `k * k` shifted views are concatenated
 *   on the channel axis (im2col in uint8, `[B, H', W', k*k*C]`), so the convolution is one
 *   `MatMulInteger` with the weight laid out `[k*k*C, out]`, then scaled and moved back to NCHW.
 *   ORT's own `ConvInteger` ran 5x slower than the float convolution on the AVX-512 VNNI machine
 *   of docs/performance.md; this form ran 1.5-4x faster than it.
 *
 * Weights are symmetric (zero point 0) with scale `max |w| / 127` per output channel, so a
 * channel's largest weight is exact and none saturates. The int8 weights and their scales are
 * computed once, when the model is written (the float weight is read then), and stored in the
 * model's own data file: an int8 graph holds a quarter of the float weights' bytes.
 *
 * @module
 */
import type { GraphBuilder, TensorSource, Value } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";

/** Quantisation modes a graph can be built with. */
export type QuantizeMode = "int8";

/**
 * Layers with fewer input or output channels than this stay float32: a UNet's conv_in (4 latent
 * channels in) and conv_out (4 out), where quantising saves nothing and costs accuracy.
 */
export const MIN_QUANTIZED_CHANNELS = 16;

/** True when a layer with these channel counts is quantised in int8 graphs. */
export function quantizes(inChannels: number, outChannels: number): boolean {
  return inChannels >= MIN_QUANTIZED_CHANNELS && outChannels >= MIN_QUANTIZED_CHANNELS;
}

/** A weight quantised per output channel: `q[o][i] * scale[o]` approximates `w[o][i]`. */
export interface QuantizedRows {
  /** int8 values, in the layout asked for. */
  q: Int8Array;
  /** One float32 scale per output channel. */
  scale: Float32Array;
}

/**
 * Quantises a float32 weight `[rows, cols]` (rows = output channels) symmetrically per row:
 * `scale = max |w| / 127`, `q = round(w / scale)`. An all-zero row gets scale 1. Non-finite
 * weights throw (they are checked before graphs are built; this is the last line).
 *
 * @example
 * ```ts
 * import { quantizeRows } from "./quantize.ts";
 * const { q, scale } = quantizeRows(Float32Array.of(1, -0.5, 0, 0), 2, 2);
 * console.assert(q[0] === 127 && q[1] === -64 && scale[0] === 1 / 127 && scale[1] === 1);
 * ```
 */
export function quantizeRows(w: Float32Array, rows: number, cols: number): QuantizedRows {
  if (w.length !== rows * cols) {
    throw new RangeError(`Cannot quantise ${w.length} values as ${rows} rows of ${cols}`);
  }
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let max = 0;
    let sum = 0; // NaN-sticky, where comparisons are not
    for (let i = 0; i < cols; i++) {
      const a = Math.abs(w[base + i]!);
      sum += a;
      if (a > max) max = a;
    }
    if (!Number.isFinite(sum)) {
      throw new RangeError(`Cannot quantise row ${r}: it holds a NaN or an infinite weight`);
    }
    const s = max > 0 ? Math.fround(max / 127) : 1;
    scale[r] = s;
    const inv = 1 / s;
    // |w| * inv <= 127 (up to rounding), so no value needs clamping.
    for (let i = 0; i < cols; i++) q[base + i] = Math.round(w[base + i]! * inv);
  }
  return { q, scale };
}

/**
 * `[rows, k*k*C]`-ordered int8 (row-major per output channel, input index `(ky*k + kx)*C + c`,
 * the im2col order of {@linkcode quantizedConv}) transposed to `[k*k*C, rows]`, from a
 * `[rows, C, k, k]` quantised weight.
 */
function im2colWeight(q: Int8Array, rows: number, channels: number, k: number): Int8Array {
  const kk = k * k;
  const inner = channels * kk;
  const out = new Int8Array(inner * rows);
  // Blocks of output channels keep the strided reads within a few cache lines.
  for (let o0 = 0; o0 < rows; o0 += BLOCK) {
    const o1 = Math.min(rows, o0 + BLOCK);
    for (let c = 0; c < channels; c++) {
      for (let s = 0; s < kk; s++) {
        const dst = (s * channels + c) * rows;
        const src = c * kk + s;
        for (let o = o0; o < o1; o++) out[dst + o] = q[o * inner + src]!;
      }
    }
  }
  return out;
}

/** `[rows, cols]` int8 transposed to `[cols, rows]`. */
function transposeInt8(q: Int8Array, rows: number, cols: number): Int8Array {
  const out = new Int8Array(rows * cols);
  for (let r0 = 0; r0 < rows; r0 += BLOCK) {
    const r1 = Math.min(rows, r0 + BLOCK);
    for (let c = 0; c < cols; c++) {
      const dst = c * rows;
      for (let r = r0; r < r1; r++) out[dst + r] = q[r * cols + c]!;
    }
  }
  return out;
}

const BLOCK = 64;

/**
 * The int8 weight (as MatMulInteger's `[inner, rows]` right operand) and its scales as tensor
 * sources over one quantisation, run when the first of them is written and dropped once both
 * were read.
 */
function quantizedSources(
  name: string,
  source: TensorSource,
  rows: number,
  layout: { kind: "matrix"; cols: number } | { kind: "conv"; channels: number; k: number },
): { weight: TensorSource; scale: TensorSource } {
  if (source.dtype !== "float32") {
    throw new TypeError(
      `Cannot quantise weight "${name}": it is ${source.dtype}; int8 graphs are built from ` +
        `float32 weights`,
    );
  }
  const inner = layout.kind === "matrix" ? layout.cols : layout.channels * layout.k * layout.k;
  let pending: Promise<{ q: Int8Array; scale: Float32Array }> | undefined;
  let reads = 0;
  const get = () => {
    pending ??= (async () => {
      const bytes = await readSource(name, source);
      const w = bytes.byteOffset % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
        : new Float32Array(bytes.slice().buffer);
      const { q, scale } = quantizeRows(w, rows, inner);
      const laid = layout.kind === "matrix"
        ? transposeInt8(q, rows, inner)
        : im2colWeight(q, rows, layout.channels, layout.k);
      return { q: laid, scale };
    })();
    const result = pending;
    if (++reads === 2) pending = undefined;
    return result;
  };
  return {
    weight: { dtype: "int8", shape: [inner, rows], load: async () => (await get()).q },
    scale: { dtype: "float32", shape: [rows], load: async () => (await get()).scale },
  };
}

/** A float weight (and optional bias) given by name and source, for the int8 emitters. */
export interface QuantizedLayerWeights {
  /** Initializer name prefix (the checkpoint name of the weight). */
  name: string;
  /** The float32 weight. */
  weight: TensorSource;
  /** The float32 bias `[out]` as a graph value, or null. */
  bias: Value | null;
}

/** `x * scale[out] * x_scale + bias` from an int32 accumulator (NHWC / `[N, out]` layout). */
function dequantize(
  g: GraphBuilder,
  acc: Value,
  xScale: Value,
  wScale: Value,
  bias: Value | null,
): Value {
  const scaled = g.op("Mul", [g.op("Cast", [acc], { to: 1 }), g.op("Mul", [xScale, wScale])]);
  return bias === null ? scaled : g.op("Add", [scaled, bias]);
}

/**
 * An int8 linear layer: `x [N, in] -> [N, out]` with the float32 weight `[out, in]` quantised per
 * output channel (see the module documentation).
 *
 * @example
 * ```ts ignore
 * const y = quantizedLinear(g, x, { name: "fc.weight", weight: source, bias }, 768, 3072);
 * ```
 */
export function quantizedLinear(
  g: GraphBuilder,
  x: Value,
  layer: QuantizedLayerWeights,
  inFeatures: number,
  outFeatures: number,
): Value {
  const { weight, scale } = quantizedSources(layer.name, layer.weight, outFeatures, {
    kind: "matrix",
    cols: inFeatures,
  });
  const wq = g.initializer(`${layer.name}.int8`, weight);
  const ws = g.initializer(`${layer.name}.scale`, scale);
  // x: [N, in] float32 -> uint8 with a per-tensor scale and zero point
  const [xq, xScale, xZero] = g.opN("DynamicQuantizeLinear", [x], 3);
  // [N, in] @ [in, out] -> [N, out] int32
  const acc = g.op("MatMulInteger", [xq!, wq, xZero!, null], {}, { outputType: "int32" });
  return dequantize(g, acc, xScale!, ws, layer.bias);
}

/** Options of {@linkcode quantizedConv}. */
export interface QuantizedConvOptions {
  kernel: number;
  stride: number;
  /** Symmetric zero padding. */
  padding: number;
}

/**
 * An int8 convolution `[B, C, H, W] -> [B, out, H', W']` (square kernel, symmetric padding) with
 * the float32 weight `[out, C, k, k]` quantised per output channel, as uint8 im2col and one
 * `MatMulInteger` (see the module documentation).
 */
export function quantizedConv(
  g: GraphBuilder,
  x: Value,
  layer: QuantizedLayerWeights,
  inChannels: number,
  outChannels: number,
  o: QuantizedConvOptions,
): Value {
  const k = o.kernel;
  const { weight, scale } = quantizedSources(layer.name, layer.weight, outChannels, {
    kind: "conv",
    channels: inChannels,
    k,
  });
  const wq = g.initializer(`${layer.name}.int8`, weight);
  const ws = g.initializer(`${layer.name}.scale`, scale);
  const [xq, xScale, xZero] = g.opN("DynamicQuantizeLinear", [x], 3);
  // [B, C, H, W] -> [B, H, W, C] (uint8)
  let nhwc = g.op("Transpose", [xq!], { perm: [0, 2, 3, 1] });
  const p = o.padding;
  if (p > 0) {
    // The zero point stands for 0.0: [B, H, W, C] -> [B, H+2p, W+2p, C]
    nhwc = g.op("Pad", [nhwc, g.ints([0, p, p, 0, 0, p, p, 0]), xZero!], { mode: "constant" });
  }
  let cols = nhwc;
  if (k > 1 || o.stride > 1) {
    // Shift (ky, kx) of the window, every stride-th position: rows ky, ky+s, ... up to
    // (padded size) - (k - 1) + ky, which gives floor((Hp - k) / s) + 1 rows as Conv does.
    const views: Value[] = [];
    for (let ky = 0; ky < k; ky++) {
      for (let kx = 0; kx < k; kx++) {
        const end = (shift: number) => shift === k - 1 ? 2 ** 62 : shift - (k - 1);
        views.push(g.op("Slice", [
          nhwc,
          g.ints([ky, kx]),
          g.ints([end(ky), end(kx)]),
          g.ints([1, 2]),
          g.ints([o.stride, o.stride]),
        ]));
      }
    }
    // k*k x [B, H', W', C] -> [B, H', W', k*k*C]
    cols = views.length === 1 ? views[0]! : g.op("Concat", views, { axis: 3 });
  }
  // [B, H', W', k*k*C] @ [k*k*C, out] -> [B, H', W', out] int32
  const acc = g.op("MatMulInteger", [cols, wq, xZero!, null], {}, { outputType: "int32" });
  const y = dequantize(g, acc, xScale!, ws, layer.bias);
  // [B, H', W', out] -> [B, out, H', W']
  return g.op("Transpose", [y], { perm: [0, 3, 1, 2] });
}
