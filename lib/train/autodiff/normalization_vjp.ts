/**
 * VJPs of the normalisations and softmax: LayerNormalization (over axes `axis..`),
 * InstanceNormalization (over the spatial axes; the builders' GroupNorm is Reshape +
 * InstanceNormalization + affine), Softmax and LogSoftmax.
 *
 * The normalisations recompute their statistics in the backward pass (mean, `1/sqrt(var+eps)`,
 * `xhat`) from the forward input rather than keeping them from the forward pass:
 * `dx = invstd * (g - mean(g) - xhat * mean(g * xhat))` with `g = dy * scale`, means over the
 * normalised axes (the formula of torch's native_layer_norm_backward).
 *
 * @module
 */
import type { Value } from "../../onnx/graph.ts";
import {
  onlyInputs,
  reduceMean,
  reduceSum,
  scalarOf,
  single,
  sumToShape,
  type VjpContext,
  type VjpRule,
} from "./vjp.ts";

/** xhat and 1/sqrt(var + eps) of `x` over `axes` (kept as size-1 axes). */
function standardize(
  ctx: VjpContext,
  x: Value,
  axes: readonly number[],
  eps: number,
): { xhat: Value; invstd: Value } {
  const g = ctx.g;
  const dtype = ctx.inInfo(0).dtype;
  const mean = reduceMean(g, x, axes, true);
  const centered = g.op("Sub", [x, mean]);
  const variance = reduceMean(g, g.op("Mul", [centered, centered]), axes, true);
  const invstd = g.op("Reciprocal", [
    g.op("Sqrt", [g.op("Add", [variance, scalarOf(g, eps, dtype)])]),
  ]);
  return { xhat: g.op("Mul", [centered, invstd]), invstd };
}

/** dx from the gradient `gx` of xhat. */
function normalizedInputGrad(
  ctx: VjpContext,
  gx: Value,
  xhat: Value,
  invstd: Value,
  axes: readonly number[],
): Value {
  const g = ctx.g;
  const meanG = reduceMean(g, gx, axes, true);
  const meanGX = reduceMean(g, g.op("Mul", [gx, xhat]), axes, true);
  const inner = g.op("Sub", [g.op("Sub", [gx, meanG]), g.op("Mul", [xhat, meanGX])]);
  return g.op("Mul", [inner, invstd]);
}

function layerNormalization(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  if (dY.slice(1).some((d) => d !== null && d !== undefined)) {
    throw new TypeError(
      `Cannot differentiate LayerNormalization "${ctx.node.name}" through its Mean/InvStdDev outputs`,
    );
  }
  const g = ctx.g;
  const d = single(ctx, dY);
  const X = ctx.inInfo(0);
  const r = X.shape.length;
  const axis0 = ctx.attrs.int("axis", -1);
  const axis = axis0 < 0 ? axis0 + r : axis0;
  const axes = Array.from({ length: r - axis }, (_, i) => axis + i);
  const eps = ctx.attrs.float("epsilon", 1e-5);
  const { xhat, invstd } = standardize(ctx, ctx.input(0)!, axes, eps);
  const scale = ctx.input(1)!;
  let dX: Value | null = null;
  if (ctx.needs(0)) {
    const gx = g.op("Mul", [d, scale]);
    dX = normalizedInputGrad(ctx, gx, xhat, invstd, axes);
  }
  const dScale = ctx.needs(1)
    ? sumToShape(g, g.op("Mul", [d, xhat]), X.shape, ctx.inInfo(1).shape)
    : null;
  const dB = ctx.needs(2) ? sumToShape(g, d, X.shape, ctx.inInfo(2).shape) : null;
  return [dX, dScale, dB];
}

function instanceNormalization(
  ctx: VjpContext,
  dY: ReadonlyArray<Value | null>,
): Array<Value | null> {
  const g = ctx.g;
  const d = single(ctx, dY);
  const X = ctx.inInfo(0);
  const r = X.shape.length;
  const spatial = Array.from({ length: r - 2 }, (_, i) => i + 2);
  const eps = ctx.attrs.float("epsilon", 1e-5);
  const { xhat, invstd } = standardize(ctx, ctx.input(0)!, spatial, eps);
  let dX: Value | null = null;
  if (ctx.needs(0)) {
    // scale: [C] -> [C, 1, ...]
    const scale = g.op("Reshape", [ctx.input(1)!, g.ints([X.shape[1]!, ...spatial.map(() => 1)])]);
    dX = normalizedInputGrad(ctx, g.op("Mul", [d, scale]), xhat, invstd, spatial);
  }
  const perChannel = [0, ...spatial];
  const dScale = ctx.needs(1) ? reduceSum(g, g.op("Mul", [d, xhat]), perChannel, false) : null;
  const dB = ctx.needs(2) ? reduceSum(g, d, perChannel, false) : null;
  return [dX, dScale, dB];
}

/** The axes a (Log)Softmax normalises over: one axis from opset 13, `axis..` before. */
function softmaxAxes(ctx: VjpContext): number[] {
  const r = ctx.inInfo(0).shape.length;
  const opset = ctx.shapes.opset;
  const axis0 = ctx.attrs.int("axis", opset >= 13 ? -1 : 1);
  const axis = axis0 < 0 ? axis0 + r : axis0;
  return opset >= 13 ? [axis] : Array.from({ length: r - axis }, (_, i) => axis + i);
}

// y = softmax(x): dx = y * (dy - sum(dy * y))
function softmax(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "");
  const g = ctx.g;
  const d = single(ctx, dY);
  const y = ctx.output(0);
  const dot = reduceSum(g, g.op("Mul", [d, y]), softmaxAxes(ctx), true);
  return [g.op("Mul", [y, g.op("Sub", [d, dot])])];
}

// y = log softmax(x): dx = dy - exp(y) * sum(dy)
function logSoftmax(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  const g = ctx.g;
  const d = single(ctx, dY);
  const total = reduceSum(g, d, softmaxAxes(ctx), true);
  return [g.op("Sub", [d, g.op("Mul", [g.op("Exp", [ctx.output(0)]), total])])];
}

/** VJP rules of the normalisations and softmax. */
export const NORMALIZATION_VJPS: Readonly<Record<string, VjpRule>> = {
  LayerNormalization: layerNormalization,
  InstanceNormalization: instanceNormalization,
  Softmax: softmax,
  LogSoftmax: logSoftmax,
};
