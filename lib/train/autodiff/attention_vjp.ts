/**
 * VJP of onnxruntime's fused `com.microsoft.MultiHeadAttention` (separate 3-D query, key and
 * value, no bias, mask or cache): `O = softmax(scale * Q K^T) V` per head.
 *
 * The forward op keeps no attention probabilities, so the backward recomputes them from Q and K
 * with plain ops (as flash-attention backward passes do): P exists only while its own layer's
 * gradient is computed, never for the whole forward pass. Then
 * `dV = P^T dO`, `dP = dO V^T`, `dS = P * (dP - rowsum(dP * P))`,
 * `dQ = scale * dS K`, `dK = scale * dS^T Q`.
 *
 * @module
 */
import type { Value } from "../../onnx/graph.ts";
import { onlyInputs, reduceSum, scalarOf, single, type VjpContext, type VjpRule } from "./vjp.ts";

function multiHeadAttention(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  const node = ctx.node;
  if (node.input.slice(3).some((n) => n !== "") || ctx.attrs.int("unidirectional", 0) !== 0) {
    throw new TypeError(
      `Cannot differentiate MultiHeadAttention "${node.name}": only separate query/key/value ` +
        `inputs without bias, masks or cache are supported`,
    );
  }
  if (dY.slice(1).some((d) => d !== null && d !== undefined)) {
    throw new TypeError(
      `Cannot differentiate MultiHeadAttention "${node.name}" through its cache outputs`,
    );
  }
  onlyInputs(ctx, [0, 1, 2], "");
  const g = ctx.g;
  const Q = ctx.inInfo(0).shape;
  const K = ctx.inInfo(1).shape;
  const V = ctx.inInfo(2).shape;
  if (Q.length !== 3 || K.length !== 3 || V.length !== 3) {
    throw new TypeError(
      `Cannot differentiate MultiHeadAttention "${node.name}": packed or 4-D inputs are not supported`,
    );
  }
  const h = ctx.attrs.int("num_heads", 0);
  const [B, S, D] = Q as [number, number, number];
  const L = K[1]!;
  const Dv = V[2]!;
  const d = D / h;
  const dv = Dv / h;
  const dtype = ctx.inInfo(0).dtype;
  const scale = ctx.attrs.float("scale", 0) || 1 / Math.sqrt(d);
  // [B, T, h*e] -> [B, h, T, e]
  const heads = (x: Value, T: number, e: number) =>
    g.op("Transpose", [g.op("Reshape", [x, g.ints([B, T, h, e])])], { perm: [0, 2, 1, 3] });
  // [B, h, T, e] -> [B, T, h*e]
  const merge = (x: Value, T: number, e: number) =>
    g.op("Reshape", [g.op("Transpose", [x], { perm: [0, 2, 1, 3] }), g.ints([B, T, h * e])]);
  const q = heads(ctx.input(0)!, S, d); // [B, h, S, d]
  const k = heads(ctx.input(1)!, L, d); // [B, h, L, d]
  const v = heads(ctx.input(2)!, L, dv); // [B, h, L, dv]
  const dO = heads(single(ctx, dY), S, dv); // [B, h, S, dv]
  const kT = g.op("Transpose", [k], { perm: [0, 1, 3, 2] }); // [B, h, d, L]
  const s = g.op("Mul", [g.op("MatMul", [q, kT]), scalarOf(g, scale, dtype)]); // [B, h, S, L]
  const p = g.op("Softmax", [s], { axis: -1 });
  let dQ: Value | null = null;
  let dK: Value | null = null;
  let dV: Value | null = null;
  if (ctx.needs(2)) {
    // [B, h, L, S] @ [B, h, S, dv] -> [B, h, L, dv]
    dV = merge(g.op("MatMul", [g.op("Transpose", [p], { perm: [0, 1, 3, 2] }), dO]), L, dv);
  }
  if (ctx.needs(0) || ctx.needs(1)) {
    // [B, h, S, dv] @ [B, h, dv, L] -> [B, h, S, L]
    const dP = g.op("MatMul", [dO, g.op("Transpose", [v], { perm: [0, 1, 3, 2] })]);
    const rows = reduceSum(g, g.op("Mul", [dP, p]), [3], true);
    const dS = g.op("Mul", [g.op("Mul", [p, g.op("Sub", [dP, rows])]), scalarOf(g, scale, dtype)]);
    // [B, h, S, L] @ [B, h, L, d] -> [B, h, S, d]
    if (ctx.needs(0)) dQ = merge(g.op("MatMul", [dS, k]), S, d);
    // [B, h, L, S] @ [B, h, S, d] -> [B, h, L, d]
    if (ctx.needs(1)) {
      dK = merge(g.op("MatMul", [g.op("Transpose", [dS], { perm: [0, 1, 3, 2] }), q]), L, d);
    }
  }
  return [dQ, dK, dV];
}

/** VJP rules of onnxruntime contrib ops. */
export const ATTENTION_VJPS: Readonly<Record<string, VjpRule>> = {
  "com.microsoft::MultiHeadAttention": multiHeadAttention,
};
