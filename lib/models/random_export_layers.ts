/**
 * Pieces of the tiny random ONNX graphs that stand in for published vision-language exports in
 * tests and benchmarks (lib/models/random_florence2.ts, random_llava.ts): seeded random
 * parameters, and small transformer layers over `[batch, tokens, width]` values with dynamic
 * batch and token counts. The graphs have the exports' input and output names, element types
 * and shapes; what they compute inside is a small transformer of the same kind (attention with
 * masks and caches, layer norms, an LM head), not the real architecture.
 *
 * @module
 */
import type { GraphBuilder, Value } from "../onnx/graph.ts";
import { gelu } from "./layers.ts";

/** Seeded random initializers (xorshift32, uniform with the given standard deviation). */
export class RandomParams {
  #g: GraphBuilder;
  #state: number;

  constructor(g: GraphBuilder, seed: number) {
    this.#g = g;
    this.#state = (0x9e3779b9 ^ (seed * 2654435761)) >>> 0 || 1;
  }

  #next(): number {
    let s = this.#state;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.#state = s >>> 0;
    return this.#state / 2 ** 32;
  }

  /** A float32 initializer of `shape` with values uniform on ±std·√3 around `mean`. */
  tensor(name: string, shape: readonly number[], std: number, mean = 0): Value {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const a = std * Math.sqrt(3);
    for (let i = 0; i < n; i++) data[i] = mean + a * (2 * this.#next() - 1);
    return this.#g.initializer(name, { dtype: "float32", shape, data });
  }

  /** A `[inputs, outputs]` matrix with std 1/√inputs. */
  matrix(name: string, inputs: number, outputs: number): Value {
    return this.tensor(name, [inputs, outputs], 1 / Math.sqrt(inputs));
  }

  /** A constant-valued vector (layer-norm weights and biases). */
  vector(name: string, n: number, value: number): Value {
    return this.#g.initializer(name, {
      dtype: "float32",
      shape: [n],
      data: new Float32Array(n).fill(value),
    });
  }
}

/** `x @ W + b` on `[..., in]`. */
export function dense(
  g: GraphBuilder,
  p: RandomParams,
  name: string,
  x: Value,
  i: number,
  o: number,
) {
  return g.op("Add", [
    g.op("MatMul", [x, p.matrix(`${name}.weight`, i, o)]),
    p.tensor(`${name}.bias`, [o], 0.02),
  ]);
}

/** LayerNorm over the last axis with unit weight and zero bias. */
export function norm(g: GraphBuilder, p: RandomParams, name: string, x: Value, width: number) {
  return g.op("LayerNormalization", [
    x,
    p.vector(`${name}.weight`, width, 1),
    p.vector(`${name}.bias`, width, 0),
  ], {
    axis: -1,
    epsilon: 1e-5,
  });
}

/** `[b, s, heads * d]` -> `[b, heads, s, d]`. */
export function splitHeads(g: GraphBuilder, x: Value, heads: number, headDim: number): Value {
  return g.op("Transpose", [g.op("Reshape", [x, g.ints([0, 0, heads, headDim])])], {
    perm: [0, 2, 1, 3],
  });
}

/** `[b, heads, s, d]` -> `[b, s, heads * d]`. */
export function mergeHeads(g: GraphBuilder, x: Value, width: number): Value {
  return g.op("Reshape", [g.op("Transpose", [x], { perm: [0, 2, 1, 3] }), g.ints([0, 0, width])]);
}

/** `softmax(q k^T / sqrt(d) + mask) v` on `[b, h, s, d]` (mask broadcasts to `[b, h, s, t]`). */
export function attend(
  g: GraphBuilder,
  q: Value,
  k: Value,
  v: Value,
  headDim: number,
  mask: Value | null,
) {
  const product = g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 1, 3, 2] })]);
  let scores = g.op("Div", [product, g.scalar(Math.sqrt(headDim))]);
  if (mask !== null) scores = g.op("Add", [scores, mask]);
  return g.op("MatMul", [g.op("Softmax", [scores], { axis: -1 }), v]);
}

/** `[b, t]` int64 attention mask (1 = attend) -> additive float `[b, 1, 1, t]` (0 or -1e9). */
export function paddingMask(g: GraphBuilder, mask: Value): Value {
  const f = g.op("Cast", [mask], { to: 1 });
  const additive = g.op("Mul", [g.op("Sub", [g.scalar(1), f]), g.scalar(-1e9)]);
  return g.op("Unsqueeze", [additive, g.ints([1, 2])]);
}

/**
 * The causal mask `[new, past + new]` (-1e9 where key j > past + query i) for `newLength` and
 * `pastLength` as 1-D int64 values of one element.
 */
export function causalMask(g: GraphBuilder, pastLength: Value, newLength: Value): Value {
  const total = g.op("Add", [pastLength, newLength]);
  const full = g.op("ConstantOfShape", [g.op("Concat", [newLength, total], { axis: 0 })], {
    value: { tensor: { dtype: "float32", shape: [1], data: Float32Array.of(-1e9) } },
  });
  const k = g.op("Squeeze", [g.op("Add", [pastLength, g.ints([1])]), g.ints([0])]);
  return g.op("Trilu", [full, k], { upper: 1 });
}

/** Dimension `axis` of `x` as a 1-D int64 value of one element. */
export function dim(g: GraphBuilder, x: Value, axis: number): Value {
  return g.op("Slice", [g.op("Shape", [x]), g.ints([axis]), g.ints([axis + 1])]);
}

/** A GELU feed-forward block with a residual and a post-norm: `norm(x + W2 gelu(W1 x))`. */
export function feedForward(
  g: GraphBuilder,
  p: RandomParams,
  name: string,
  x: Value,
  width: number,
) {
  const inner = gelu(g, dense(g, p, `${name}.fc1`, x, width, 2 * width));
  return norm(
    g,
    p,
    `${name}.norm`,
    g.op("Add", [x, dense(g, p, `${name}.fc2`, inner, 2 * width, width)]),
    width,
  );
}
