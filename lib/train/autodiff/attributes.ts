/**
 * Reading a node's attributes from its `NodeMessage`, with ONNX's defaults supplied by the
 * caller. Values written by lib/onnx GraphBuilder are plain numbers; int64 values decoded by
 * protobufjs may be `Long`s, so every number goes through `Number()`.
 *
 * @module
 */
import type { AttributeMessage, NodeMessage } from "../../onnx/proto.ts";

/** Typed access to one node's attributes. */
export class NodeAttributes {
  readonly node: NodeMessage;
  #byName: Map<string, AttributeMessage>;

  constructor(node: NodeMessage) {
    this.node = node;
    this.#byName = new Map((node.attribute ?? []).map((a) => [a.name, a]));
  }

  /** True when the node sets attribute `name`. */
  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /**
   * An int attribute, or `fallback` when absent.
   *
   * @example
   * ```ts
   * import { NodeAttributes } from "./attributes.ts";
   * const a = new NodeAttributes({ opType: "Gemm", input: [], output: [], attribute: [
   *   { name: "transB", type: 2, i: 1 }] });
   * console.assert(a.int("transB", 0) === 1 && a.int("transA", 0) === 0);
   * ```
   */
  int(name: string, fallback: number): number {
    const a = this.#byName.get(name);
    return a?.i === undefined ? fallback : Number(a.i);
  }

  /** A float attribute (as the float32 that is stored), or `fallback` when absent. */
  float(name: string, fallback: number): number {
    const a = this.#byName.get(name);
    return Math.fround(a?.f === undefined ? fallback : Number(a.f));
  }

  /** An ints attribute, or `fallback` when absent. */
  ints(name: string, fallback: readonly number[]): number[];
  ints(name: string): number[] | undefined;
  ints(name: string, fallback?: readonly number[]): number[] | undefined {
    const a = this.#byName.get(name);
    if (a?.ints === undefined) return fallback === undefined ? undefined : [...fallback];
    return a.ints.map(Number);
  }

  /** A floats attribute, or `fallback` when absent. */
  floats(name: string, fallback: readonly number[]): number[] {
    const a = this.#byName.get(name);
    return a?.floats === undefined ? [...fallback] : a.floats.map(Number);
  }

  /** A string attribute, or `fallback` when absent. */
  string(name: string, fallback: string): string {
    const a = this.#byName.get(name);
    return a?.s === undefined ? fallback : new TextDecoder().decode(a.s);
  }

  /** A tensor attribute's message, or undefined. */
  tensor(name: string): AttributeMessage["t"] {
    return this.#byName.get(name)?.t;
  }
}

/** `domain::opType` of a node, with the default domain spelled "" (e.g. `com.microsoft::MultiHeadAttention`). */
export function opKey(node: NodeMessage): string {
  const domain = node.domain ?? "";
  return domain === "" || domain === "ai.onnx" ? node.opType : `${domain}::${node.opType}`;
}
