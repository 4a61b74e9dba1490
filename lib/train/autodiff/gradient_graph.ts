/**
 * Reverse-mode differentiation of a built ONNX graph: {@linkcode gradientGraph} appends, after
 * the forward nodes, the vector-Jacobian products of every node between the chosen inputs and a
 * scalar loss, so that one graph outputs the loss and its gradients. onnxruntime runs it as an
 * ordinary inference session; frozen weights stay initializers (external data, zero copy).
 *
 * Only what is needed is built: a value gets a gradient when it is a float that depends on one
 * of the `wrt` inputs and the loss depends on it. The gradient of a value used several times is
 * the sum of its uses' contributions. Shapes are static (see shape_inference.ts), so a graph is
 * made per input shape.
 *
 * @module
 */
import {
  type ElemType,
  GraphBuilder,
  numel,
  type OnnxModel,
  type Value,
} from "../../onnx/graph.ts";
import type { NodeMessage } from "../../onnx/proto.ts";
import { NodeAttributes, opKey } from "./attributes.ts";
import { mergeGraphs } from "./merge_graphs.ts";
import { Recomputation, type SegmentOf } from "./recompute.ts";
import { inferShapes, type ShapeTable } from "./shape_inference.ts";
import { addAll, FLOAT_TYPES, type VjpContext, zeros } from "./vjp.ts";
import { VJP_RULES } from "./vjp_rules.ts";

/** Options of {@linkcode gradientGraph}. */
export interface GradientGraphOptions {
  /** The value to differentiate: a scalar (any shape with one element) of the graph. */
  loss: string;
  /** The values (graph inputs, or weights) to differentiate with respect to. */
  wrt: readonly string[];
  /** Concrete shapes of the graph inputs that have dynamic dimensions. */
  inputShapes: Readonly<Record<string, readonly number[]>>;
  /** Output name of each gradient (default `<name>.grad`). */
  gradientName?: (name: string) => string;
  /** Output name of the loss (default `loss`). */
  lossOutput?: string;
  /** Forward outputs to keep besides the loss (default none). */
  keepOutputs?: boolean | readonly string[];
  /**
   * Activation checkpointing: the segment of each forward node (recompute.ts); the backward
   * pass of a segment recomputes its activations instead of keeping them from the forward pass.
   * Default none: every activation is kept.
   */
  recompute?: SegmentOf;
}

/** The default output name of a gradient: `<name>.grad`. */
export function defaultGradientName(name: string): string {
  return `${name}.grad`;
}

/**
 * The model extended with the backward pass: outputs the loss (as `lossOutput`) and, for every
 * `wrt` value, its gradient (same shape and type). A `wrt` value the loss does not depend on gets
 * zeros. Throws a TypeError naming the op when a node on the way has no VJP rule.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../../onnx/graph.ts";
 * import { gradientGraph } from "./gradient_graph.ts";
 * const g = new GraphBuilder("square");
 * const x = g.input("x", "float32", [3]);
 * g.output(g.op("ReduceSum", [g.op("Mul", [x, x]), g.ints([0])], { keepdims: 0 }), "l");
 * const training = gradientGraph(g.build(), { loss: "l", wrt: ["x"], inputShapes: {} });
 * console.assert(training.proto.graph.output.map((o) => o.name).join() === "loss,x.grad");
 * ```
 */
export function gradientGraph(model: OnnxModel, options: GradientGraphOptions): OnnxModel {
  const graph = model.proto.graph;
  const shapes = inferShapes(model, options.inputShapes);
  const gradName = options.gradientName ?? defaultGradientName;
  const lossInfo = shapes.require(options.loss);
  if (numel(lossInfo.shape) !== 1 || !FLOAT_TYPES.has(lossInfo.dtype)) {
    throw new TypeError(
      `Cannot differentiate "${options.loss}": the loss must be one float, it is ` +
        `${lossInfo.dtype} [${lossInfo.shape}]`,
    );
  }
  for (const w of options.wrt) {
    const info = shapes.get(w);
    if (info === undefined) {
      throw new RangeError(
        `Cannot differentiate with respect to "${w}": the graph has no such value`,
      );
    }
    if (!FLOAT_TYPES.has(info.dtype)) {
      throw new TypeError(
        `Cannot differentiate with respect to "${w}": it is ${info.dtype}, not a float`,
      );
    }
  }

  // 1. Forward: which values depend on the wrt values (floats only carry gradients).
  const active = new Set<string>(options.wrt);
  const isFloat = (name: string) => {
    const t = shapes.get(name)?.dtype;
    return t !== undefined && FLOAT_TYPES.has(t);
  };
  for (const node of graph.node) {
    if (!node.input.some((i) => i !== "" && active.has(i) && isFloat(i))) continue;
    for (const o of node.output) if (o !== "" && isFloat(o)) active.add(o);
  }

  // 2. Backward: which values the loss depends on.
  const relevant = new Set<string>([options.loss]);
  for (let k = graph.node.length - 1; k >= 0; k--) {
    const node = graph.node[k]!;
    if (node.output.some((o) => relevant.has(o))) {
      for (const i of node.input) if (i !== "") relevant.add(i);
    }
  }
  const wanted = (name: string) => name !== "" && active.has(name) && relevant.has(name);

  // 3. Reverse sweep: gradient contributions per value.
  const g = new GraphBuilder(`${graph.name}_backward`, {
    opset: shapes.opset,
    domains: Object.fromEntries(
      model.proto.opsetImport.filter((o) => o.domain !== "" && o.domain !== "ai.onnx")
        .map((o) => [o.domain, Number(o.version)]),
    ),
  });
  const contributions = new Map<string, Value[]>();
  const contribute = (name: string, v: Value) => {
    const list = contributions.get(name);
    if (list === undefined) contributions.set(name, [v]);
    else list.push(v);
  };
  const valueOf = (name: string): Value => ({ name, type: shapes.get(name)?.dtype as ElemType });
  const plan = options.recompute === undefined
    ? undefined
    : new Recomputation(graph.node, options.recompute, shapes);
  const seed = g.scope(
    "grad",
    () => g.constant(new Array(numel(lossInfo.shape)).fill(1), lossInfo.dtype, lossInfo.shape),
  );
  contribute(options.loss, seed);
  const gradOf = (name: string): Value | null => {
    const parts = contributions.get(name);
    if (parts === undefined || parts.length === 0) return null;
    if (parts.length === 1) return parts[0]!;
    const sum = g.scope("grad", () => addAll(g, parts));
    contributions.set(name, [sum]);
    return sum;
  };
  for (let k = graph.node.length - 1; k >= 0; k--) {
    const node = graph.node[k]!;
    if (!node.output.some(wanted)) continue;
    const dY = node.output.map((o) => (wanted(o) ? gradOf(o) : null));
    if (dY.every((d) => d === null)) continue;
    const needs = node.input.map((i) => wanted(i) && isFloat(i));
    if (!needs.some((n) => n)) continue;
    const rule = VJP_RULES.get(opKey(node));
    if (rule === undefined) {
      throw new TypeError(
        `Cannot differentiate ${opKey(node)} node "${node.name}": no VJP rule for ${
          opKey(node)
        }; ` +
          `add one in lib/train/autodiff/`,
      );
    }
    const segment = plan?.segmentOfNode(k);
    if (plan !== undefined && segment !== undefined && !plan.has(segment)) {
      plan.materialise(g, segment, dY.find((d) => d !== null)!);
    }
    const read = (name: string): Value => ({
      name: plan === undefined ? name : plan.read(segment, name),
      type: shapes.get(name)?.dtype as ElemType,
    });
    const ctx = contextFor(g, node, shapes, needs, read);
    const grads = g.scope(`grad/${node.name ?? node.opType}`, () => rule(ctx, dY));
    node.input.forEach((name, i) => {
      const d = grads[i];
      if (!needs[i]) return;
      if (d === null || d === undefined) {
        throw new RangeError(
          `Internal: the VJP of ${node.opType} "${node.name}" gave no gradient for input ${i}`,
        );
      }
      contribute(name, d);
    });
  }

  // 4. Outputs: the loss, then one gradient per wrt value.
  const lossOutput = options.lossOutput ?? "loss";
  g.output(valueOf(options.loss), lossOutput, lossInfo.dtype, lossInfo.shape);
  for (const w of options.wrt) {
    const info = shapes.require(w);
    const d = gradOf(w) ?? g.scope("grad", () => zeros(g, info.dtype, info.shape));
    g.output(d, gradName(w), info.dtype, info.shape);
  }
  let backward = g.build();
  if (plan !== undefined) {
    const bg = backward.proto.graph;
    backward = {
      ...backward,
      proto: { ...backward.proto, graph: { ...bg, node: plan.splice(bg.node) } },
    };
  }
  const merged = mergeGraphs(model, backward, {
    keepBaseOutputs: options.keepOutputs ?? false,
  });
  const pinned = pinInputShapes(merged, shapes);
  checkGradientShapes(pinned, options, gradName);
  return pinned;
}

/** The model with every input's dynamic dimensions replaced by the sizes it was built for. */
function pinInputShapes(model: OnnxModel, shapes: ShapeTable): OnnxModel {
  const graph = model.proto.graph;
  const input = graph.input.map((i) => {
    const info = shapes.get(i.name);
    if (info === undefined) return i;
    return {
      ...i,
      type: {
        tensorType: {
          ...i.type.tensorType,
          shape: { dim: info.shape.map((d) => ({ dimValue: d })) },
        },
      },
    };
  });
  return { ...model, proto: { ...model.proto, graph: { ...graph, input } } };
}

function contextFor(
  g: GraphBuilder,
  node: NodeMessage,
  shapes: ShapeTable,
  needs: readonly boolean[],
  valueOf: (name: string) => Value,
): VjpContext {
  const attrs = new NodeAttributes(node);
  const inputName = (i: number) => node.input[i] ?? "";
  return {
    g,
    node,
    attrs,
    shapes,
    input: (i) => (inputName(i) === "" ? null : valueOf(inputName(i))),
    output: (i) => valueOf(node.output[i]!),
    inInfo: (i) => {
      if (inputName(i) === "") {
        throw new RangeError(`Internal: ${node.opType} "${node.name}" has no input ${i}`);
      }
      return shapes.require(inputName(i));
    },
    outInfo: (i) => shapes.require(node.output[i]!),
    needs: (i) => needs[i] ?? false,
  };
}

/** Re-infers the finished graph's shapes: every gradient must have its value's shape. */
function checkGradientShapes(
  model: OnnxModel,
  options: GradientGraphOptions,
  gradName: (name: string) => string,
): void {
  const shapes = inferShapes(model, options.inputShapes);
  for (const w of options.wrt) {
    const want = shapes.require(w);
    const got = shapes.require(gradName(w));
    if (got.shape.join() !== want.shape.join() || got.dtype !== want.dtype) {
      throw new RangeError(
        `Internal: the gradient of "${w}" is ${got.dtype} [${got.shape}], expected ` +
          `${want.dtype} [${want.shape}]`,
      );
    }
  }
}
