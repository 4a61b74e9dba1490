/**
 * Bookkeeping for builders: every weight a builder asks for is checked against what the
 * checkpoint holds, and at the end missing, misshapen and unused weights are reported together
 * in one error (nanoGPT's `from_pretrained` asserts; sd.cpp's applied/skipped ledger).
 *
 * @module
 */
import { WeightsError } from "../errors.ts";
import type { GraphBuilder, TensorSource, Value } from "./graph.ts";

/** Options of {@linkcode WeightLedger}. */
export interface WeightLedgerOptions {
  /** Weights that may be present and are not used (e.g. `position_ids` buffers). */
  ignore?: Iterable<string>;
}

/** Tracks which weights a builder used. */
export class WeightLedger {
  readonly what: string;
  #sources: ReadonlyMap<string, TensorSource>;
  #used = new Set<string>();
  #missing: string[] = [];
  #misshapen: string[] = [];
  #ignore: Set<string>;
  #params = new Map<string, Value>();

  /**
   * @param what Names the model in error messages, e.g. `CLIPTextModel "te/model.safetensors"`.
   * @param sources The checkpoint's tensors by parameter name.
   */
  constructor(
    what: string,
    sources: ReadonlyMap<string, TensorSource>,
    options: WeightLedgerOptions = {},
  ) {
    this.what = what;
    this.#sources = sources;
    this.#ignore = new Set(options.ignore ?? []);
  }

  /** True when the checkpoint has this weight (for optional parts such as biases). */
  has(name: string): boolean {
    return this.#sources.has(name);
  }

  /** The shape of a weight the checkpoint holds, or undefined. */
  shapeOf(name: string): readonly number[] | undefined {
    return this.#sources.get(name)?.shape;
  }

  /**
   * Takes a weight, checking its shape when `shape` is given. A missing or misshapen weight is
   * recorded (see {@linkcode WeightLedger.finish}) and a zero placeholder of the expected shape
   * is returned so the builder can go on and report every problem at once.
   */
  take(name: string, shape?: readonly number[]): TensorSource {
    const source = this.#sources.get(name);
    this.#used.add(name);
    if (source === undefined) {
      this.#missing.push(name);
      return placeholder(shape ?? [0]);
    }
    if (shape !== undefined && !sameShape(source.shape, shape)) {
      this.#misshapen.push(
        `"${name}" [${source.shape.join(", ")}] (expected [${shape.join(", ")}])`,
      );
      return placeholder(shape);
    }
    return source;
  }

  /**
   * Takes a weight and adds it to `g` as an initializer named after it; asking again for the
   * same name returns the same value (a ledger serves one graph).
   */
  param(g: GraphBuilder, name: string, shape?: readonly number[]): Value {
    const known = this.#params.get(name);
    if (known !== undefined) return known;
    const value = g.initializer(name, this.take(name, shape));
    this.#params.set(name, value);
    return value;
  }

  /** Marks a weight as deliberately unused. */
  skip(name: string): void {
    this.#used.add(name);
  }

  /** Names the builder never took. */
  unused(): string[] {
    return [...this.#sources.keys()].filter((k) => !this.#used.has(k) && !this.#ignore.has(k));
  }

  /**
   * Throws a {@linkcode WeightsError} (a TypeError the CLI counts as bad input, exit 3) listing
   * missing, misshapen and unused weights, if there are any.
   *
   * @example
   * ```ts
   * import { WeightLedger } from "./weight_ledger.ts";
   * const ledger = new WeightLedger("Tiny", new Map());
   * ledger.take("fc.weight", [2, 2]);
   * try { ledger.finish(); } catch (e) { console.assert(String(e).includes("fc.weight")); }
   * ```
   */
  finish(): void {
    const parts: string[] = [];
    if (this.#missing.length > 0) parts.push(`missing ${list(this.#missing.map((n) => `"${n}"`))}`);
    if (this.#misshapen.length > 0) parts.push(`misshapen ${list(this.#misshapen)}`);
    const unused = this.unused();
    if (unused.length > 0) parts.push(`unused ${list(unused.map((n) => `"${n}"`))}`);
    if (parts.length > 0) {
      throw new WeightsError(
        `Cannot build ${this.what}: ${parts.join("; ")}; ` +
          `check that the weights match the config (architecture and sizes)`,
      );
    }
  }
}

function list(items: string[]): string {
  const shown = items.slice(0, 8).join(", ");
  return items.length > 8 ? `${shown} and ${items.length - 8} more` : shown;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function placeholder(shape: readonly number[]): TensorSource {
  let n = 1;
  for (const d of shape) n *= d;
  return { dtype: "float32", shape, load: () => new Float32Array(n) };
}
