/**
 * Appends the nodes of a second graph (built with its own GraphBuilder, reading the first
 * graph's values by name) to a built model: the loss after a UNet, the backward pass after the
 * forward. Inputs, inline constants, opsets and outputs are merged; nodes and weights no output
 * needs are dropped; names the two graphs both define are an error. Weight sources stay as they
 * are (references into their files).
 *
 * @module
 */
import type { OnnxModel } from "../../onnx/graph.ts";
import type { NodeMessage, ValueInfoMessage } from "../../onnx/proto.ts";

/** Options of {@linkcode mergeGraphs}. */
export interface MergeGraphsOptions {
  /** Keep the base model's outputs too (default false: only the addition's outputs). */
  keepBaseOutputs?: boolean | readonly string[];
}

/**
 * The base model extended with `addition`'s nodes, inputs and constants, with `addition`'s
 * outputs (and optionally the base's).
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../../onnx/graph.ts";
 * import { mergeGraphs } from "./merge_graphs.ts";
 * const a = new GraphBuilder("a");
 * a.output(a.op("Relu", [a.input("x", "float32", [2])]), "y");
 * const b = new GraphBuilder("b");
 * b.output(b.op("Neg", [{ name: "y", type: "float32" }]), "z");
 * const merged = mergeGraphs(a.build(), b.build());
 * console.assert(merged.proto.graph.output[0]!.name === "z");
 * ```
 */
export function mergeGraphs(
  base: OnnxModel,
  addition: OnnxModel,
  options: MergeGraphsOptions = {},
): OnnxModel {
  const bg = base.proto.graph;
  const ag = addition.proto.graph;
  const defined = new Set<string>();
  for (const i of bg.input) defined.add(i.name);
  for (const t of bg.initializer) defined.add(t.name!);
  for (const { name } of base.initializers) defined.add(name);
  for (const n of bg.node) for (const o of n.output) if (o !== "") defined.add(o);
  const clash = (name: string, what: string) => {
    if (defined.has(name)) {
      throw new RangeError(
        `Cannot merge graph "${ag.name}" into "${bg.name}": its ${what} "${name}" is already ` +
          `defined; rename it (use a scope)`,
      );
    }
  };
  for (const i of ag.input) clash(i.name, "input");
  for (const t of ag.initializer) clash(t.name!, "constant");
  for (const { name } of addition.initializers) clash(name, "weight");
  for (const n of ag.node) for (const o of n.output) if (o !== "") clash(o, "value");

  const keep = options.keepBaseOutputs ?? false;
  const baseOutputs = keep === true
    ? bg.output
    : keep === false
    ? []
    : bg.output.filter((o) => keep.includes(o.name));
  const outputs: ValueInfoMessage[] = [...baseOutputs, ...ag.output];
  const nodes = liveNodes([...bg.node, ...ag.node], outputs.map((o) => o.name));
  const used = new Set<string>(outputs.map((o) => o.name));
  for (const n of nodes) for (const i of n.input) used.add(i);

  const opsets = new Map<string, number>();
  for (const o of [...base.proto.opsetImport, ...addition.proto.opsetImport]) {
    opsets.set(o.domain, Math.max(opsets.get(o.domain) ?? 0, Number(o.version)));
  }
  return {
    proto: {
      ...base.proto,
      opsetImport: [...opsets].map(([domain, version]) => ({ domain, version })),
      graph: {
        ...bg,
        node: nodes,
        initializer: [...bg.initializer, ...ag.initializer].filter((t) => used.has(t.name!)),
        input: [...bg.input, ...ag.input],
        output: outputs,
      },
    },
    initializers: [...base.initializers, ...addition.initializers].filter((w) => used.has(w.name)),
  };
}

/** The nodes (in order) that some output depends on. */
export function liveNodes(
  nodes: readonly NodeMessage[],
  outputs: readonly string[],
): NodeMessage[] {
  const wanted = new Set(outputs);
  const live: boolean[] = new Array(nodes.length).fill(false);
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    if (n.output.some((o) => wanted.has(o))) {
      live[k] = true;
      for (const i of n.input) if (i !== "") wanted.add(i);
    }
  }
  return nodes.filter((_, k) => live[k]);
}
