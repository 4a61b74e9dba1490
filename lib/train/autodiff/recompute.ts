/**
 * Activation checkpointing for {@linkcode gradientGraph} (`--checkpointing`): the forward nodes
 * are grouped into segments (a transformer block, a resnet, a text-encoder layer), and the
 * backward pass of a segment reads activations from a copy of the segment's forward nodes,
 * emitted just before that backward, instead of the forward pass's own values. The forward
 * values inside a segment then die when the forward pass is done with them; only the values at
 * segment boundaries live on into the backward pass (Chen et al. 2016, "Training Deep Nets with
 * Sublinear Memory Cost").
 *
 * Two things make onnxruntime do it as written. The copy's inputs from outside the segment pass
 * through a barrier `x + 0 * dY[0]` that depends on the gradient arriving at the segment, so the
 * copy cannot run before the backward pass reaches it (onnxruntime orders nodes by a depth-first
 * walk from the outputs, so it runs right before its first use), and common-subexpression
 * elimination cannot merge it back into the forward nodes, whose inputs differ.
 *
 * @module
 */
import type { ElemType, GraphBuilder, Value } from "../../onnx/graph.ts";
import { onnxType } from "../../onnx/graph.ts";
import type { NodeMessage } from "../../onnx/proto.ts";
import type { ShapeTable } from "./shape_inference.ts";
import { FLOAT_TYPES } from "./vjp.ts";

/** Names the segment of a forward node (by node name), or undefined to keep its activations. */
export type SegmentOf = (nodeName: string) => string | undefined;

/** The suffix of recomputed values and nodes. */
const SUFFIX = "@recompute";

/**
 * UNet segments: each resnet, each transformer block, and the rest of each Transformer2D
 * (norm, proj_in, proj_out) of the down, mid and up blocks, by the builders' parameter scopes.
 *
 * @example
 * ```ts
 * import { unetSegments } from "./recompute.ts";
 * console.assert(unetSegments("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q/Gemm") ===
 *   "down_blocks.1.attentions.0.transformer_blocks.0");
 * console.assert(unetSegments("conv_in/Conv") === undefined);
 * ```
 */
export const unetSegments: SegmentOf = (name) =>
  /^((?:down_blocks|up_blocks)\.\d+\.(?:resnets|attentions)\.\d+(?:\.transformer_blocks\.\d+)?|mid_block\.(?:resnets|attentions)\.\d+(?:\.transformer_blocks\.\d+)?)(?:[./]|$)/
    .exec(name)?.[1];

/**
 * CLIP text-encoder segments: each encoder layer.
 *
 * @example
 * ```ts
 * import { clipTextSegments } from "./recompute.ts";
 * console.assert(clipTextSegments("text_model.encoder.layers.3.mlp/Mul") === "text_model.encoder.layers.3");
 * ```
 */
export const clipTextSegments: SegmentOf = (name) =>
  /^(text_model\.encoder\.layers\.\d+)(?:[./]|$)/.exec(name)?.[1];

/**
 * The recomputation plan of one gradient graph (used by gradientGraph's `recompute` option).
 *
 * @example
 * ```ts ignore
 * const plan = new Recomputation(graph.node, unetSegments, shapes);
 * // in the reverse sweep, before the first VJP of a segment:
 * plan.materialise(g, segment, dY);
 * const name = plan.read(segment, forwardValue); // the recomputed copy's name
 * ```
 */
export class Recomputation {
  #nodes: readonly NodeMessage[];
  #segmentOf: Array<string | undefined>;
  /** Forward node index of each value's producer. */
  #producer = new Map<string, number>();
  /** Segment -> forward node indices, in order. */
  #members = new Map<string, number[]>();
  /** Segment -> (original value -> recomputed value), once materialised. */
  #renamed = new Map<string, Map<string, string>>();
  /** Segment -> the backward value after which its copy is spliced, and the copy. */
  #copies: Array<{ anchor: string; nodes: NodeMessage[] }> = [];
  #shapes: ShapeTable;
  #defined: Set<string>;

  constructor(nodes: readonly NodeMessage[], segmentOf: SegmentOf, shapes: ShapeTable) {
    this.#nodes = nodes;
    this.#shapes = shapes;
    this.#segmentOf = nodes.map((n) => segmentOf(n.name ?? ""));
    this.#defined = new Set();
    nodes.forEach((n, k) => {
      for (const o of n.output) {
        if (o === "") continue;
        this.#producer.set(o, k);
        this.#defined.add(o);
      }
      const s = this.#segmentOf[k];
      if (s !== undefined) {
        const list = this.#members.get(s);
        if (list === undefined) this.#members.set(s, [k]);
        else list.push(k);
      }
    });
  }

  /** The segment of forward node `k` (undefined when its activations are kept). */
  segmentOfNode(k: number): string | undefined {
    return this.#segmentOf[k];
  }

  /** Whether the segment's copy exists yet. */
  has(segment: string): boolean {
    return this.#renamed.has(segment);
  }

  /**
   * The name the backward pass of a node of `segment` reads value `name` by: the recomputed copy
   * when `name` is made inside the segment, else the forward value.
   */
  read(segment: string | undefined, name: string): string {
    if (segment === undefined) return name;
    return this.#renamed.get(segment)?.get(name) ?? name;
  }

  /**
   * Emits the barrier of `segment` into `g` (depending on `dep`, a gradient available when the
   * segment's backward pass starts) and records the copy of its forward nodes, to be spliced
   * after the barrier by {@linkcode Recomputation.splice}.
   */
  materialise(g: GraphBuilder, segment: string, dep: Value): void {
    const members = this.#members.get(segment) ?? [];
    const inside = new Set<string>();
    for (const k of members) for (const o of this.#nodes[k]!.output) if (o !== "") inside.add(o);
    const renamed = new Map<string, string>();
    for (const name of inside) {
      const re = name + SUFFIX;
      if (this.#defined.has(re)) {
        throw new RangeError(`Cannot recompute "${name}": the graph already has "${re}"`);
      }
      renamed.set(name, re);
    }
    // Barrier: zero = 0 * dY[0] (one element), cast per element type; x' = x + zero.
    const zeros = new Map<ElemType, Value>();
    const depType: ElemType = dep.type ?? "float32";
    let anchor = "";
    const zeroOf = (dtype: ElemType): Value => {
      let z = zeros.get(dtype);
      if (z === undefined) {
        z = g.scope(`recompute/${segment}`, () => {
          const first = g.op("Slice", [
            g.op("Reshape", [dep, g.ints([-1])]),
            g.ints([0]),
            g.ints([1]),
          ]);
          let zero = g.op("Mul", [first, g.scalar(0, depType)]);
          if (depType !== dtype) {
            zero = g.op("Cast", [zero], { to: onnxType(dtype) });
          }
          return zero;
        });
        zeros.set(dtype, z);
        anchor = z.name;
      }
      return z;
    };
    const barriers = new Map<string, string>();
    const copy: NodeMessage[] = [];
    for (const k of members) {
      const node = this.#nodes[k]!;
      const input = node.input.map((i) => {
        if (i === "") return i;
        const inner = renamed.get(i);
        if (inner !== undefined) return inner;
        const producer = this.#producer.get(i);
        const info = this.#shapes.get(i);
        // Graph inputs, weights and non-float values (shapes, masks) are read as they are.
        if (producer === undefined || info === undefined || !FLOAT_TYPES.has(info.dtype)) return i;
        let b = barriers.get(i);
        if (b === undefined) {
          b = g.scope(
            `recompute/${segment}`,
            () => g.op("Add", [{ name: i, type: info.dtype }, zeroOf(info.dtype)]).name,
          );
          barriers.set(i, b);
          anchor = b;
        }
        return b;
      });
      copy.push({
        ...node,
        name: `${node.name ?? node.opType}${SUFFIX}`,
        input,
        output: node.output.map((o) => (o === "" ? o : renamed.get(o)!)),
      });
    }
    if (anchor === "") anchor = zeroOf(depType).name;
    this.#renamed.set(segment, renamed);
    this.#copies.push({ anchor, nodes: copy });
  }

  /** The backward nodes with every segment's copy inserted after its last barrier node. */
  splice(backward: readonly NodeMessage[]): NodeMessage[] {
    const after = new Map<string, NodeMessage[]>();
    for (const { anchor, nodes } of this.#copies) {
      const list = after.get(anchor);
      if (list === undefined) after.set(anchor, [...nodes]);
      else list.push(...nodes);
    }
    const out: NodeMessage[] = [];
    for (const node of backward) {
      out.push(node);
      for (const o of node.output) {
        const copies = after.get(o);
        if (copies !== undefined) out.push(...copies);
      }
    }
    return out;
  }
}
