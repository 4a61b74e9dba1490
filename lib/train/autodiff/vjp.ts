/**
 * The contract of a vector-Jacobian product rule: given one forward node and the gradients of
 * the loss with respect to its outputs, emit ONNX nodes (into the backward builder) that compute
 * the gradients with respect to the inputs asked for. Forward values are referenced by name, so
 * the backward nodes read the activations the forward pass computed; a recomputing variant
 * (`--checkpointing`) only has to hand rules other names for them through
 * {@linkcode VjpContext.input}.
 *
 * Plus the small graph helpers every rule needs: summing a broadcast gradient back to an
 * input's shape, opset-aware reductions, zeros and scalars of a value's element type.
 *
 * @module
 */
import { type ElemType, type GraphBuilder, toBytes, type Value } from "../../onnx/graph.ts";
import type { NodeMessage } from "../../onnx/proto.ts";
import type { NodeAttributes } from "./attributes.ts";
import { reduceAxesAreInput, type ShapeTable, type TensorInfo } from "./shape_inference.ts";

/** What a rule sees of the forward node it differentiates. */
export interface VjpContext {
  /** The builder the backward nodes go into (opset = the forward graph's). */
  readonly g: GraphBuilder;
  readonly node: NodeMessage;
  readonly attrs: NodeAttributes;
  /** Static facts about every forward value. */
  readonly shapes: ShapeTable;
  /** Forward input `i` (null when the optional input is omitted). */
  input(i: number): Value | null;
  /** Forward output `i`. */
  output(i: number): Value;
  /** Static facts about input `i` (throws when omitted or unknown). */
  inInfo(i: number): TensorInfo;
  /** Static facts about output `i`. */
  outInfo(i: number): TensorInfo;
  /** True when the gradient of input `i` is wanted (it is float, depends on the parameters and reaches the loss). */
  needs(i: number): boolean;
}

/**
 * Gradients of the node's inputs, one entry per input: a value, or null/undefined for inputs not
 * asked for (or whose gradient is zero). `dY[i]` is the gradient of output `i`, null when output
 * `i` does not reach the loss.
 */
export type VjpRule = (
  ctx: VjpContext,
  dY: ReadonlyArray<Value | null>,
) => Array<Value | null | undefined>;

/** Float element types (the only ones that carry gradients). */
export const FLOAT_TYPES: ReadonlySet<ElemType> = new Set([
  "float32",
  "float16",
  "bfloat16",
  "float64",
]);

/** Throws the standard "this input's gradient is not supported" error. */
export function unsupportedInput(ctx: VjpContext, i: number, why: string): never {
  throw new TypeError(
    `Cannot differentiate ${ctx.node.opType} node "${ctx.node.name}" with respect to input ${i}: ` +
      `${why}`,
  );
}

/** Throws unless every input the node needs a gradient for is in `supported`. */
export function onlyInputs(ctx: VjpContext, supported: readonly number[], why: string): void {
  for (let i = 0; i < ctx.node.input.length; i++) {
    if (ctx.needs(i) && !supported.includes(i)) unsupportedInput(ctx, i, why);
  }
}

/** The first non-null output gradient (for single-output ops). */
export function single(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Value {
  const d = dY[0];
  if (d === null || d === undefined) {
    throw new RangeError(`Internal: ${ctx.node.opType} "${ctx.node.name}" has no output gradient`);
  }
  return d;
}

/** A scalar constant of element type `dtype`. */
export function scalarOf(g: GraphBuilder, value: number, dtype: ElemType): Value {
  return g.scalar(value, dtype);
}

/** A static-shape tensor of zeros. */
export function zeros(g: GraphBuilder, dtype: ElemType, shape: readonly number[]): Value {
  const value = { tensor: { dtype, shape: [1], data: toBytes([0], dtype) } };
  return g.op("ConstantOfShape", [g.ints([...shape])], { value });
}

/** `Reshape(x, shape)` with a static target (no node when already that shape). */
export function reshapeTo(
  g: GraphBuilder,
  x: Value,
  from: readonly number[],
  to: readonly number[],
): Value {
  if (from.length === to.length && from.every((d, i) => d === to[i])) return x;
  return g.op("Reshape", [x, g.ints([...to])]);
}

/** `ReduceSum` over `axes`, spelled for the graph's opset. */
export function reduceSum(
  g: GraphBuilder,
  x: Value,
  axes: readonly number[],
  keepdims: boolean,
): Value {
  if (axes.length === 0) return x;
  return reduceSumOp(g, "ReduceSum", x, axes, keepdims);
}

/** `ReduceMean` over `axes`, spelled for the graph's opset. */
export function reduceMean(
  g: GraphBuilder,
  x: Value,
  axes: readonly number[],
  keepdims: boolean,
): Value {
  if (axes.length === 0) return x;
  return reduceSumOp(g, "ReduceMean", x, axes, keepdims);
}

function reduceSumOp(
  g: GraphBuilder,
  op: string,
  x: Value,
  axes: readonly number[],
  keepdims: boolean,
): Value {
  const keep = keepdims ? 1 : 0;
  return reduceAxesAreInput(op, g.opset)
    ? g.op(op, [x, g.ints([...axes])], { keepdims: keep })
    : g.op(op, [x], { axes: [...axes], keepdims: keep });
}

/**
 * Sums a gradient of broadcast shape `from` back to the shape `to` of the input that was
 * broadcast (numpy rules): leading axes and axes where the input had size 1 are summed.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../../onnx/graph.ts";
 * import { sumToShape } from "./vjp.ts";
 * const g = new GraphBuilder("t");
 * const d = g.input("d", "float32", [2, 3, 4]);
 * g.output(sumToShape(g, d, [2, 3, 4], [3, 1]), "r");
 * ```
 */
export function sumToShape(
  g: GraphBuilder,
  grad: Value,
  from: readonly number[],
  to: readonly number[],
): Value {
  const lead = from.length - to.length;
  if (lead < 0) throw new RangeError(`Cannot sum [${from}] down to the larger rank of [${to}]`);
  const axes: number[] = [];
  for (let i = 0; i < from.length; i++) {
    if (i < lead) axes.push(i);
    else if (to[i - lead] === 1 && from[i] !== 1) axes.push(i);
    else if (to[i - lead] !== from[i]) {
      throw new RangeError(`Cannot sum [${from}] down to [${to}]: they do not broadcast`);
    }
  }
  if (axes.length === 0) return grad;
  const summed = reduceSum(g, grad, axes, true);
  const kept = from.map((d, i) => (axes.includes(i) ? 1 : d));
  return reshapeTo(g, summed, kept, to);
}

/** Adds gradient contributions (one `Add`, or `Sum` for three and more). */
export function addAll(g: GraphBuilder, parts: readonly Value[]): Value {
  if (parts.length === 0) throw new RangeError("Internal: no gradient parts to add");
  if (parts.length === 1) return parts[0]!;
  if (parts.length === 2) return g.op("Add", [parts[0]!, parts[1]!]);
  return g.op("Sum", [...parts]);
}

/** The inverse of a permutation. */
export function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

/** `Transpose` swapping the last two axes of a rank-`rank` tensor. */
export function transposeLast2(g: GraphBuilder, x: Value, rank: number): Value {
  const perm = [...Array(rank).keys()];
  [perm[rank - 1], perm[rank - 2]] = [perm[rank - 2]!, perm[rank - 1]!];
  return g.op("Transpose", [x], { perm });
}
