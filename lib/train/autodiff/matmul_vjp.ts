/**
 * VJPs of MatMul (numpy batched matrix product with broadcasting) and Gemm
 * (`alpha * A' B' + beta * C` with optional transposes), the linear layers of every builder.
 *
 * @module
 */
import type { Value } from "../../onnx/graph.ts";
import {
  onlyInputs,
  scalarOf,
  single,
  sumToShape,
  transposeLast2,
  type VjpContext,
  type VjpRule,
} from "./vjp.ts";

function matmul(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  const g = ctx.g;
  const d = single(ctx, dY);
  const A = ctx.inInfo(0);
  const B = ctx.inInfo(1);
  if (A.shape.length < 2 || B.shape.length < 2) {
    throw new TypeError(
      `Cannot differentiate MatMul "${ctx.node.name}": 1-D operands ([${A.shape}] @ [${B.shape}]) ` +
        `are not supported; unsqueeze them to 2-D`,
    );
  }
  const outShape = ctx.outInfo(0).shape;
  const r = outShape.length;
  let dA: Value | null = null;
  let dB: Value | null = null;
  if (ctx.needs(0)) {
    // dA = dY @ B^T  ([..., M, N] @ [..., N, K])
    const full = g.op("MatMul", [d, transposeLast2(g, ctx.input(1)!, B.shape.length)]);
    dA = sumToShape(g, full, [...outShape.slice(0, -1), A.shape[A.shape.length - 1]!], A.shape);
  }
  if (ctx.needs(1)) {
    const K = A.shape[A.shape.length - 1]!;
    const N = B.shape[B.shape.length - 1]!;
    if (B.shape.length === 2 && A.shape.length > 2) {
      // A shared weight: fold the batch into rows. [.., M, K] -> [R, K]; dB = A^T dY: [K, N]
      const a2 = g.op("Reshape", [ctx.input(0)!, g.ints([-1, K])]);
      const d2 = g.op("Reshape", [d, g.ints([-1, N])]);
      dB = g.op("Gemm", [a2, d2], { transA: 1 });
    } else {
      // dB = A^T @ dY  ([..., K, M] @ [..., M, N])
      const full = g.op("MatMul", [transposeLast2(g, ctx.input(0)!, A.shape.length), d]);
      dB = sumToShape(g, full, [...outShape.slice(0, r - 2), K, N], B.shape);
    }
  }
  return [dA, dB];
}

function gemm(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0, 1, 2], "");
  const g = ctx.g;
  const d = single(ctx, dY);
  const a = ctx.attrs;
  const alpha = a.float("alpha", 1);
  const beta = a.float("beta", 1);
  const transA = a.int("transA", 0) === 1;
  const transB = a.int("transB", 0) === 1;
  const A = ctx.input(0)!;
  const B = ctx.input(1)!;
  const scaled = alpha === 1 ? {} : { alpha };
  // Y = alpha A' B' with A' = transA ? A^T : A, B' = transB ? B^T : B.
  let dA: Value | null = null;
  if (ctx.needs(0)) {
    dA = transA
      // dA = (alpha dY B'^T)^T = alpha B' dY^T
      ? g.op("Gemm", [B, d], { ...scaled, transA: transB ? 1 : 0, transB: 1 })
      // dA = alpha dY B'^T
      : g.op("Gemm", [d, B], { ...scaled, transB: transB ? 0 : 1 });
  }
  let dB: Value | null = null;
  if (ctx.needs(1)) {
    dB = transB
      // dB = (alpha A'^T dY)^T = alpha dY^T A'
      ? g.op("Gemm", [d, A], { ...scaled, transA: 1, transB: transA ? 1 : 0 })
      // dB = alpha A'^T dY
      : g.op("Gemm", [A, d], { ...scaled, transA: transA ? 0 : 1 });
  }
  let dC: Value | null = null;
  if (ctx.needs(2)) {
    const summed = sumToShape(g, d, ctx.outInfo(0).shape, ctx.inInfo(2).shape);
    dC = beta === 1 ? summed : g.op("Mul", [summed, scalarOf(g, beta, ctx.outInfo(0).dtype)]);
  }
  return [dA, dB, dC];
}

/** VJP rules of MatMul and Gemm. */
export const MATMUL_VJPS: Readonly<Record<string, VjpRule>> = {
  MatMul: matmul,
  Gemm: gemm,
};
