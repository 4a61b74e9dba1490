/**
 * VJPs of ReduceSum, ReduceMean and ReduceSumSquare: the output gradient is broadcast back over
 * the reduced axes (divided by their size for the mean, times `2x` for the sum of squares).
 *
 * @module
 */
import { numel, type Value } from "../../onnx/graph.ts";
import { reduceAxesAreInput } from "./shape_inference.ts";
import { onlyInputs, scalarOf, single, type VjpContext, type VjpRule } from "./vjp.ts";

/** The reduced axes of a reduce node (all axes when none are given). */
function reducedAxes(ctx: VjpContext): number[] {
  const r = ctx.inInfo(0).shape.length;
  let list: readonly number[];
  if (reduceAxesAreInput(ctx.node.opType, ctx.shapes.opset)) {
    const given = ctx.node.input[1];
    if (given === undefined || given === "") list = [];
    else {
      const v = ctx.inInfo(1).value;
      if (v === undefined) {
        throw new TypeError(
          `Cannot differentiate ${ctx.node.opType} "${ctx.node.name}": axes are not static`,
        );
      }
      list = v;
    }
  } else list = ctx.attrs.ints("axes", []);
  if (list.length === 0) {
    return ctx.attrs.int("noop_with_empty_axes", 0) === 1 ? [] : [...Array(r).keys()];
  }
  return list.map((a) => (a < 0 ? a + r : a));
}

/** dY broadcast back to the input's shape. */
function spread(ctx: VjpContext, d: Value, axes: readonly number[]): Value {
  const g = ctx.g;
  const X = ctx.inInfo(0).shape;
  const kept = X.map((n, i) => (axes.includes(i) ? 1 : n));
  const r = g.op("Reshape", [d, g.ints(kept)]);
  return g.op("Expand", [r, g.ints([...X])]);
}

function reduceRule(kind: "sum" | "mean" | "sumSquare"): VjpRule {
  return (ctx, dY) => {
    onlyInputs(ctx, [0], "only the data input is differentiable");
    const g = ctx.g;
    const axes = reducedAxes(ctx);
    const X = ctx.inInfo(0);
    let d = spread(ctx, single(ctx, dY), axes);
    if (kind === "mean") {
      const count = numel(axes.map((a) => X.shape[a]!));
      // torch's mean backward divides by the count
      d = g.op("Div", [d, scalarOf(g, count, X.dtype)]);
    } else if (kind === "sumSquare") {
      d = g.op("Mul", [d, g.op("Mul", [ctx.input(0)!, scalarOf(g, 2, X.dtype)])]);
    }
    return [d];
  };
}

/** VJP rules of the differentiable reductions. */
export const REDUCE_VJPS: Readonly<Record<string, VjpRule>> = {
  ReduceSum: reduceRule("sum"),
  ReduceMean: reduceRule("mean"),
  ReduceSumSquare: reduceRule("sumSquare"),
};
