/**
 * VJPs of the ops that move data without arithmetic: Reshape, Flatten, Squeeze, Unsqueeze,
 * Transpose, Concat, Split, Slice, Pad, Expand, Tile, Gather and GatherND. Each routes the
 * output gradient back to where its elements came from (summing where an element was used
 * more than once: Expand, Tile, Gather with repeated indices).
 *
 * @module
 */
import type { Value } from "../../onnx/graph.ts";
import { resolveSlice } from "./shape_inference.ts";
import {
  inversePerm,
  onlyInputs,
  reduceSum,
  single,
  sumToShape,
  unsupportedInput,
  type VjpContext,
  type VjpRule,
  zeros,
} from "./vjp.ts";

/** Gradient of an op that only reinterprets the shape: reshape it back. */
const reshapeBack: VjpRule = (ctx, dY) => {
  onlyInputs(ctx, [0], "only the data input is differentiable");
  return [ctx.g.op("Reshape", [single(ctx, dY), ctx.g.ints([...ctx.inInfo(0).shape])])];
};

function transpose(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  const r = ctx.inInfo(0).shape.length;
  const perm = ctx.attrs.ints("perm", [...Array(r).keys()].reverse());
  return [ctx.g.op("Transpose", [single(ctx, dY)], { perm: inversePerm(perm) })];
}

function concat(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  const g = ctx.g;
  const d = single(ctx, dY);
  const r = ctx.outInfo(0).shape.length;
  const axis0 = ctx.attrs.int("axis", 0);
  const axis = axis0 < 0 ? axis0 + r : axis0;
  const n = ctx.node.input.length;
  const sizes = ctx.node.input.map((_, i) => ctx.inInfo(i).shape[axis]!);
  if (n === 1) return [d];
  const parts = ctx.shapes.opset >= 13
    ? g.opN("Split", [d, g.ints(sizes)], n, { axis })
    : g.opN("Split", [d], n, { axis, split: sizes });
  return parts.map((p, i) => (ctx.needs(i) ? p : null));
}

function split(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "only the data input is differentiable");
  const g = ctx.g;
  const r = ctx.inInfo(0).shape.length;
  const axis0 = ctx.attrs.int("axis", 0);
  const axis = axis0 < 0 ? axis0 + r : axis0;
  const parts = ctx.node.output.map((_, i) => {
    const d = dY[i];
    if (d !== null && d !== undefined) return d;
    const info = ctx.outInfo(i);
    return zeros(g, info.dtype, info.shape);
  });
  return [parts.length === 1 ? parts[0]! : g.op("Concat", parts, { axis })];
}

function slice(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "only the data input is differentiable");
  const X = ctx.inInfo(0);
  const value = (i: number) => {
    if (ctx.node.input[i] === undefined || ctx.node.input[i] === "") return undefined;
    const v = ctx.inInfo(i).value;
    if (v === undefined) {
      throw new TypeError(
        `Cannot differentiate Slice "${ctx.node.name}": its input ${i} is not static`,
      );
    }
    return v;
  };
  const spec = resolveSlice(X.shape, value(1)!, value(2)!, value(3), value(4));
  const r = X.shape.length;
  const pads = new Array<number>(2 * r).fill(0);
  for (const s of spec) {
    if (s.step !== 1) {
      unsupportedInput(ctx, 0, `slices with step ${s.step} are not supported`);
    }
    pads[s.axis] = s.start;
    pads[s.axis + r] = X.shape[s.axis]! - Math.max(s.end, s.start);
  }
  // The slice's gradient is the output gradient placed back in a zero tensor.
  return [ctx.g.op("Pad", [single(ctx, dY), ctx.g.ints(pads)], { mode: "constant" })];
}

function pad(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "the padding value is not differentiable here");
  const g = ctx.g;
  const mode = ctx.attrs.string("mode", "constant");
  if (mode !== "constant") unsupportedInput(ctx, 0, `Pad mode "${mode}" is not supported`);
  const X = ctx.inInfo(0);
  const r = X.shape.length;
  const padsIn = ctx.inInfo(1).value;
  if (padsIn === undefined) {
    throw new TypeError(`Cannot differentiate Pad "${ctx.node.name}": its pads are not static`);
  }
  const axesValue = ctx.node.input[3] ? ctx.inInfo(3).value : undefined;
  const axes = axesValue === undefined
    ? [...Array(r).keys()]
    : axesValue.map((a) => (a < 0 ? a + r : a));
  const begin = new Array<number>(r).fill(0);
  const end = new Array<number>(r).fill(0);
  axes.forEach((a, i) => {
    begin[a] = padsIn[i]!;
    end[a] = padsIn[i + axes.length]!;
  });
  const Y = ctx.outInfo(0);
  // Positive pads: cut the padded border off; negative pads (crops): pad the gradient back.
  let d = single(ctx, dY);
  if (begin.some((p) => p > 0) || end.some((p) => p > 0)) {
    const starts = begin.map((p) => Math.max(p, 0));
    const ends = Y.shape.map((n, i) => n - Math.max(end[i]!, 0));
    d = g.op("Slice", [d, g.ints(starts), g.ints(ends), g.ints([...Array(r).keys()])]);
  }
  if (begin.some((p) => p < 0) || end.some((p) => p < 0)) {
    const back = [...begin.map((p) => Math.max(-p, 0)), ...end.map((p) => Math.max(-p, 0))];
    d = g.op("Pad", [d, g.ints(back)], { mode: "constant" });
  }
  return [d];
}

function expand(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "only the data input is differentiable");
  return [sumToShape(ctx.g, single(ctx, dY), ctx.outInfo(0).shape, ctx.inInfo(0).shape)];
}

function tile(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "only the data input is differentiable");
  const g = ctx.g;
  const X = ctx.inInfo(0).shape;
  const reps = X.map((d, i) => ctx.outInfo(0).shape[i]! / d);
  // [r0*d0, r1*d1, ...] -> [r0, d0, r1, d1, ...], summed over the r axes
  const split = X.flatMap((d, i) => [reps[i]!, d]);
  const r = g.op("Reshape", [single(ctx, dY), g.ints(split)]);
  const summed = reduceSum(g, r, X.map((_, i) => 2 * i), false);
  return [summed];
}

/** int64 indices with negative entries wrapped by `dim`. */
function wrappedIndices(ctx: VjpContext, i: number, dim: number): Value {
  const g = ctx.g;
  let idx = ctx.input(i)!;
  if (ctx.inInfo(i).dtype !== "int64") idx = g.op("Cast", [idx], { to: 7 });
  const zero = g.constant(new BigInt64Array([0n]), "int64", []);
  const size = g.constant(new BigInt64Array([BigInt(dim)]), "int64", []);
  return g.op("Where", [g.op("Less", [idx, zero]), g.op("Add", [idx, size]), idx]);
}

function needScatterAdd(ctx: VjpContext): void {
  if (ctx.shapes.opset < 16) {
    unsupportedInput(
      ctx,
      0,
      `ScatterND with reduction needs opset 16, the graph has ${ctx.shapes.opset}`,
    );
  }
}

function gather(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "indices are not differentiable");
  needScatterAdd(ctx);
  const g = ctx.g;
  const D = ctx.inInfo(0);
  const I = ctx.inInfo(1);
  const r = D.shape.length;
  const q = I.shape.length;
  const axis0 = ctx.attrs.int("axis", 0);
  const a = axis0 < 0 ? axis0 + r : axis0;
  const idx = g.op("Unsqueeze", [wrappedIndices(ctx, 1, D.shape[a]!), g.ints([-1])]);
  let d = single(ctx, dY);
  // dY: [D[:a], I, D[a+1:]] -> [I, D[:a], D[a+1:]], scattered into [D[a], D[:a], D[a+1:]]
  if (a > 0) {
    const perm = [
      ...Array.from({ length: q }, (_, i) => a + i),
      ...Array.from({ length: a }, (_, i) => i),
      ...Array.from({ length: r - a - 1 }, (_, i) => a + q + i),
    ];
    d = g.op("Transpose", [d], { perm });
  }
  const moved = [D.shape[a]!, ...D.shape.slice(0, a), ...D.shape.slice(a + 1)];
  let out = g.op("ScatterND", [zeros(g, D.dtype, moved), idx, d], { reduction: "add" });
  if (a > 0) {
    const back = [
      ...Array.from({ length: a }, (_, i) => i + 1),
      0,
      ...Array.from({ length: r - a - 1 }, (_, i) => a + 1 + i),
    ];
    out = g.op("Transpose", [out], { perm: back });
  }
  return [out, null];
}

function gatherNd(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "indices are not differentiable");
  needScatterAdd(ctx);
  const g = ctx.g;
  const D = ctx.inInfo(0);
  const I = ctx.inInfo(1).shape;
  const b = ctx.attrs.int("batch_dims", 0);
  let indices = ctx.input(1)!;
  if (ctx.inInfo(1).dtype !== "int64") indices = g.op("Cast", [indices], { to: 7 });
  if (b > 0) {
    // ScatterND has no batch_dims: prefix every index tuple with its batch coordinates.
    // [b1..bk, i..., m] -> [b1..bk, i..., k + m]
    const lead = I.slice(0, -1);
    const count = lead.reduce((x, y) => x * y, 1);
    const coords = new BigInt64Array(count * b);
    for (let n = 0; n < count; n++) {
      let rest = n;
      const digits = new Array<number>(lead.length);
      for (let a = lead.length - 1; a >= 0; a--) {
        digits[a] = rest % lead[a]!;
        rest = Math.floor(rest / lead[a]!);
      }
      for (let a = 0; a < b; a++) coords[n * b + a] = BigInt(digits[a]!);
    }
    const prefix = g.constant(coords, "int64", [...lead, b]);
    indices = g.op("Concat", [prefix, indices], { axis: -1 });
  }
  return [
    g.op("ScatterND", [zeros(g, D.dtype, D.shape), indices, single(ctx, dY)], {
      reduction: "add",
    }),
    null,
  ];
}

/** VJP rules of the data-movement ops. */
export const SHAPE_VJPS: Readonly<Record<string, VjpRule>> = {
  Reshape: reshapeBack,
  Flatten: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,
  Transpose: transpose,
  Concat: concat,
  Split: split,
  Slice: slice,
  Pad: pad,
  Expand: expand,
  Tile: tile,
  Gather: gather,
  GatherND: gatherNd,
};
