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
 * Long sequences (SD at 512 px: 4096 tokens, 8 heads, so each `[B, h, S, L]` tensor is 512 MiB
 * in float32) are done in blocks of query rows, as flash-attention's backward does: each block
 * recomputes its rows of P and adds its share to dK and dV, and the next block waits for the
 * previous one through a `+ 0 * x` dependency (so onnxruntime runs them one after another and
 * only one block's `[B, h, rows, L]` tensors are alive at a time). Small attentions are one
 * block, exactly the plain formulas above.
 *
 * @module
 */
import type { GraphBuilder, Value } from "../../onnx/graph.ts";
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
  const wantQK = ctx.needs(0) || ctx.needs(1);
  const blocks = attentionBlocks(B * h * S * L, S);
  if (blocks.length === 1) {
    const r = attentionBlock(g, { q, k, kT, v, dO, scale, dtype }, ctx.needs(2), wantQK);
    return [
      ctx.needs(0) ? merge(r.dQ!, S, d) : null,
      ctx.needs(1) ? merge(r.dK!, L, d) : null,
      ctx.needs(2) ? merge(r.dV!, L, dv) : null,
    ];
  }
  const dQs: Value[] = [];
  const dKs: Value[] = [];
  const dVs: Value[] = [];
  let after: Value | null = null;
  for (const [r0, r1] of blocks) {
    // Rows r0..r1 of Q and dO; from the second block on, after the previous block is done.
    const rows = (x: Value) => {
      const part = g.op("Slice", [x, g.ints([r0]), g.ints([r1]), g.ints([2])]);
      return after === null ? part : g.op("Add", [part, after]);
    };
    const r = attentionBlock(
      g,
      { q: rows(q), k, kT, v, dO: rows(dO), scale, dtype },
      ctx.needs(2),
      wantQK,
    );
    if (ctx.needs(0)) dQs.push(r.dQ!);
    if (ctx.needs(1)) dKs.push(r.dK!);
    if (ctx.needs(2)) dVs.push(r.dV!);
    const done = [
      ctx.needs(0) ? r.dQ : null,
      ctx.needs(1) ? r.dK : null,
      ctx.needs(2) ? r.dV : null,
    ].filter((x): x is Value => x !== null);
    // 0 * (sum of one element of each result): a scalar that exists once this block is done.
    const firsts = done.map((x) =>
      g.op("Slice", [g.op("Reshape", [x, g.ints([-1])]), g.ints([0]), g.ints([1])])
    );
    const sum = firsts.length === 1 ? firsts[0]! : g.op("Sum", firsts);
    after = g.op("Mul", [sum, scalarOf(g, 0, dtype)]);
  }
  const total = (parts: Value[]) => (parts.length === 1 ? parts[0]! : g.op("Sum", parts));
  return [
    ctx.needs(0) ? merge(g.op("Concat", dQs, { axis: 2 }), S, d) : null,
    ctx.needs(1) ? merge(total(dKs), L, d) : null,
    ctx.needs(2) ? merge(total(dVs), L, dv) : null,
  ];
}

/** Elements of one `[B, h, rows, L]` block tensor at most (32 MiB of float32). */
let blockElements = 1 << 23;

/**
 * Sets the block budget of the attention backward (elements per `[B, h, rows, L]` tensor);
 * returns the previous one. For tests, which need blocks on small attentions.
 *
 * @example
 * ```ts
 * import { setAttentionBlockElements } from "./attention_vjp.ts";
 * const before = setAttentionBlockElements(64);
 * setAttentionBlockElements(before);
 * ```
 */
export function setAttentionBlockElements(elements: number): number {
  const previous = blockElements;
  blockElements = elements;
  return previous;
}

/** Query-row ranges `[r0, r1)` so that each block's score tensor fits the budget. */
function attentionBlocks(scoreElements: number, rows: number): Array<[number, number]> {
  const n = Math.min(rows, Math.max(1, Math.ceil(scoreElements / blockElements)));
  const size = Math.ceil(rows / n);
  const out: Array<[number, number]> = [];
  for (let r = 0; r < rows; r += size) out.push([r, Math.min(rows, r + size)]);
  return out;
}

interface BlockInputs {
  q: Value; // [B, h, rows, d]
  k: Value; // [B, h, L, d]
  kT: Value; // [B, h, d, L]
  v: Value; // [B, h, L, dv]
  dO: Value; // [B, h, rows, dv]
  scale: number;
  dtype: Value["type"];
}

/** One block of query rows: its dQ rows and its shares of dK and dV (head layout). */
function attentionBlock(
  g: GraphBuilder,
  x: BlockInputs,
  wantV: boolean,
  wantQK: boolean,
): { dQ: Value | null; dK: Value | null; dV: Value | null } {
  const dtype = x.dtype ?? "float32";
  const s = g.op("Mul", [g.op("MatMul", [x.q, x.kT]), scalarOf(g, x.scale, dtype)]); // [B, h, S, L]
  const p = g.op("Softmax", [s], { axis: -1 });
  let dQ: Value | null = null;
  let dK: Value | null = null;
  let dV: Value | null = null;
  if (wantV) {
    // [B, h, L, S] @ [B, h, S, dv] -> [B, h, L, dv]
    dV = g.op("MatMul", [g.op("Transpose", [p], { perm: [0, 1, 3, 2] }), x.dO]);
  }
  if (wantQK) {
    // [B, h, S, dv] @ [B, h, dv, L] -> [B, h, S, L]
    const dP = g.op("MatMul", [x.dO, g.op("Transpose", [x.v], { perm: [0, 1, 3, 2] })]);
    const rows = reduceSum(g, g.op("Mul", [dP, p]), [3], true);
    const dS = g.op("Mul", [
      g.op("Mul", [p, g.op("Sub", [dP, rows])]),
      scalarOf(g, x.scale, dtype),
    ]);
    // [B, h, S, L] @ [B, h, L, d] -> [B, h, S, d]
    dQ = g.op("MatMul", [dS, x.k]);
    // [B, h, L, S] @ [B, h, S, d] -> [B, h, L, d]
    dK = g.op("MatMul", [g.op("Transpose", [dS], { perm: [0, 1, 3, 2] }), x.q]);
  }
  return { dQ, dK, dV };
}

/** VJP rules of onnxruntime contrib ops. */
export const ATTENTION_VJPS: Readonly<Record<string, VjpRule>> = {
  "com.microsoft::MultiHeadAttention": multiHeadAttention,
};
