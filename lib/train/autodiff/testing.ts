/**
 * Gradient checking for tests: builds a small graph, differentiates `sum(Y * R)` (R random) with
 * {@linkcode gradientGraph}, runs it with onnxruntime and compares every gradient with central
 * finite differences of the same session's loss. float64 graphs where onnxruntime's CPU kernels
 * have double versions, float32 (with a larger step and tolerance) where they do not.
 *
 * @module
 */
import { type ElemType, GraphBuilder, numel, type Value } from "../../onnx/graph.ts";
import { serializeModel } from "../../onnx/model_file.ts";
import { createSession, type HostData, type HostTensor, hostTensor } from "../../onnx/session.ts";
import { gradientGraph } from "./gradient_graph.ts";
import { inferShapes } from "./shape_inference.ts";

/** One input of a checked graph. */
export interface CheckedInput {
  shape: number[];
  /** Element type (default: the check's float type). */
  dtype?: ElemType;
  /** Fixed contents (default: uniform random in [-1, 1), or `positive` in [0.5, 1.5)). */
  data?: readonly number[];
  positive?: boolean;
}

/** Options of {@linkcode checkGradients}. */
export interface CheckGradientsOptions {
  /** Float type of the graph (default float64). */
  dtype?: "float32" | "float64";
  /** Inputs by name. */
  inputs: Record<string, CheckedInput>;
  /** Inputs to differentiate (default all float inputs). */
  wrt?: string[];
  /** Builds the function: returns its (any-shaped) output. */
  build: (g: GraphBuilder, x: Record<string, Value>) => Value;
  /** Largest allowed |analytic - numeric| relative to the tensor's largest |gradient| (default 1e-6 for float64, 2e-3 for float32). */
  tolerance?: number;
  /** Finite-difference step (default 1e-5 for float64, 1e-2 for float32). */
  step?: number;
  /** Opset (default 17). */
  opset?: number;
  /** Seed of the random inputs. */
  seed?: number;
}

/** What {@linkcode checkGradients} measured, per input: the largest error and gradient. */
export type GradientCheckReport = Record<string, { maxError: number; maxGradient: number }>;

/** Uniform numbers in [lo, hi) from a small LCG (deterministic test data). */
export function seededUniform(n: number, seed: number, lo = -1, hi = 1): number[] {
  let s = (seed * 2654435761) >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(lo + (hi - lo) * (s / 2 ** 32));
  }
  return out;
}

function typed(dtype: ElemType, values: readonly number[]): HostData {
  switch (dtype) {
    case "float64":
      return Float64Array.from(values);
    case "float32":
      return Float32Array.from(values);
    case "int64":
      return BigInt64Array.from(values, (v) => BigInt(v));
    case "int32":
      return Int32Array.from(values);
    case "bool":
    case "uint8":
      return Uint8Array.from(values);
    default:
      throw new TypeError(`checkGradients: inputs of type ${dtype} are not supported`);
  }
}

/**
 * Checks the VJPs of the ops `build` uses against central finite differences; throws when an
 * error exceeds the tolerance, and returns the measured errors.
 *
 * @example
 * ```ts ignore
 * await checkGradients({
 *   inputs: { x: { shape: [2, 3] } },
 *   build: (g, { x }) => g.op("Sigmoid", [x!]),
 * });
 * ```
 */
export async function checkGradients(options: CheckGradientsOptions): Promise<GradientCheckReport> {
  const dtype = options.dtype ?? "float64";
  const isF64 = dtype === "float64";
  const tol = options.tolerance ?? (isF64 ? 1e-6 : 2e-3);
  const h = options.step ?? (isF64 ? 1e-5 : 1e-2);
  const seed = options.seed ?? 1;
  const specs = Object.entries(options.inputs);
  const typeOf = (s: CheckedInput) => s.dtype ?? dtype;
  const wrt = options.wrt ?? specs.filter(([, s]) => typeOf(s) === dtype).map(([n]) => n);

  const make = (withLoss: number[] | null) => {
    const g = new GraphBuilder("check", { opset: options.opset ?? 17 });
    const x: Record<string, Value> = {};
    for (const [name, s] of specs) x[name] = g.input(name, typeOf(s), s.shape);
    const y = options.build(g, x);
    if (withLoss === null) {
      g.output(y, "y", dtype);
    } else {
      const r = g.input("r", dtype, withLoss);
      const rank = withLoss.length;
      const prod = g.op("Mul", [y, r]);
      const sum = rank === 0 ? prod : g.op("ReduceSum", [prod, g.ints([...Array(rank).keys()])], {
        keepdims: 0,
      });
      g.output(sum, "l", dtype);
    }
    return g.build();
  };
  const yShape = [...inferShapes(make(null), {}).require("y").shape];
  const training = gradientGraph(make(yShape), { loss: "l", wrt, inputShapes: {} });
  const session = await createSession(await serializeModel(training), { threads: 1 });
  try {
    const values = new Map<string, number[]>();
    specs.forEach(([name, s], k) => {
      const n = numel(s.shape);
      values.set(
        name,
        s.data !== undefined
          ? [...s.data]
          : s.positive
          ? seededUniform(n, seed * 31 + k, 0.5, 1.5)
          : seededUniform(n, seed * 31 + k),
      );
    });
    const r = seededUniform(numel(yShape), seed * 97 + 5);
    const feeds = (override?: { name: string; index: number; delta: number }) => {
      const f: Record<string, HostTensor> = { r: hostTensor(dtype, typed(dtype, r), yShape) };
      for (const [name, s] of specs) {
        let v = values.get(name)!;
        if (override?.name === name) {
          v = [...v];
          v[override.index] = v[override.index]! + override.delta;
        }
        f[name] = hostTensor(typeOf(s), typed(typeOf(s), v), s.shape);
      }
      return f;
    };
    const base = await session.run(feeds());
    const report: GradientCheckReport = {};
    for (const name of wrt) {
      const analytic = base[`${name}.grad`]!.data as Float32Array | Float64Array;
      let maxGradient = 0;
      for (const a of analytic) maxGradient = Math.max(maxGradient, Math.abs(a));
      let maxError = 0;
      for (let i = 0; i < analytic.length; i++) {
        const plus = (await session.run(feeds({ name, index: i, delta: h }), ["loss"])).loss!;
        const minus = (await session.run(feeds({ name, index: i, delta: -h }), ["loss"])).loss!;
        const numeric = (Number(plus.data[0]) - Number(minus.data[0])) / (2 * h);
        maxError = Math.max(maxError, Math.abs(numeric - analytic[i]!));
      }
      report[name] = { maxError, maxGradient };
      const limit = tol * Math.max(maxGradient, 1e-3);
      if (!(maxError <= limit)) {
        throw new RangeError(
          `Gradient of "${name}" is off: max |analytic - numeric| = ${maxError.toExponential(3)} ` +
            `> ${limit.toExponential(3)} (max |gradient| ${maxGradient.toExponential(3)})`,
        );
      }
    }
    return report;
  } finally {
    await session.release();
  }
}

/** Prints a report's max differences (one line per input). */
export function logReport(label: string, report: GradientCheckReport): void {
  for (const [name, r] of Object.entries(report)) {
    console.log(
      `${label} d/d${name}: maxdiff ${r.maxError.toExponential(2)} ` +
        `(max |grad| ${r.maxGradient.toExponential(2)})`,
    );
  }
}
