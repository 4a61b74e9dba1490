/**
 * The only importer of onnxruntime-node in denoise: session creation (threads, execution
 * provider, optimisation level) and a typed `run()` over plain typed arrays, so no other module
 * touches ORT types.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import type { ElemType } from "./graph.ts";
import { ModelNotFoundError } from "../errors.ts";
import { resolveThreads } from "./threads.ts";

/** Execution providers denoise knows how to ask for. */
export type ExecutionProvider = "cpu" | "cuda";

/** ORT graph optimisation levels. */
export type OptimizationLevel = "disabled" | "basic" | "extended" | "all";

/** Options of {@linkcode createSession}. */
export interface SessionOptions {
  /**
   * Threads inside one op (default: the cores this process may use, see threads.ts; never more
   * than them).
   */
  threads?: number;
  /** Threads across independent ops (default 1: sequential execution). */
  interOpThreads?: number;
  /** Execution provider (default `"cpu"`); `"cuda"` falls back to nothing: it fails if absent. */
  executionProvider?: ExecutionProvider;
  /** CUDA device index (default 0). */
  deviceId?: number;
  /** Graph optimisation level (default `"all"`). */
  optimizationLevel?: OptimizationLevel;
  /**
   * Where ORT should save the optimised model, for a faster next start. Weights of 1 KiB and
   * more go to `<file>.data` beside it.
   */
  optimizedModelPath?: string;
  /** Log severity: 0 verbose .. 4 fatal (default 3, errors only). */
  logLevel?: 0 | 1 | 2 | 3 | 4;
  /** Fixed sizes for named dynamic dimensions, e.g. `{ batch: 1 }`. */
  freeDimensions?: Record<string, number>;
  /**
   * Turns on ORT's profiler: every node's run time is recorded and written, when the session
   * ends profiling ({@linkcode OnnxSession.endProfiling}) or is released, to
   * `<profilePrefix>_<date>.json` (Chrome trace format; lib/onnx/profile.ts reads it). For
   * benches: profiling slows every run a little.
   */
  profilePrefix?: string;
  /**
   * Raw ORT session configuration entries (`session.intra_op.allow_spinning`, ...), set after
   * denoise's own; for experiments and benches.
   */
  configEntries?: Record<string, string>;
}

/** Typed arrays that carry tensor data across the ORT boundary. */
export type HostData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Int8Array
  | Int16Array;

/** A tensor on the host: element type, dims and data (float16/bfloat16 as `Uint16Array` bits). */
export interface HostTensor {
  readonly type: ElemType;
  readonly dims: readonly number[];
  readonly data: HostData;
}

/** Builds a {@linkcode HostTensor}, checking that data and dims agree. */
export function hostTensor(type: ElemType, data: HostData, dims: readonly number[]): HostTensor {
  let n = 1;
  for (const d of dims) n *= d;
  if (data.length !== n) {
    throw new TypeError(
      `Cannot make a ${type} tensor of shape [${dims}]: it needs ${n} elements, got ${data.length}`,
    );
  }
  return { type, dims, data };
}

const ORT_TYPE: Record<ElemType, string> = {
  float32: "float32",
  float16: "float16",
  bfloat16: "bfloat16",
  float64: "float64",
  int64: "int64",
  int32: "int32",
  int16: "int16",
  int8: "int8",
  uint8: "uint8",
  bool: "bool",
};

const ELEM_FROM_ORT = new Map<string, ElemType>(
  Object.entries(ORT_TYPE).map(([k, v]) => [v, k as ElemType]),
);

/** A loaded model ready to run. Call {@linkcode OnnxSession.release} when done. */
export class OnnxSession {
  #session: ort.InferenceSession;

  /** @internal Use {@linkcode createSession}. */
  constructor(session: ort.InferenceSession) {
    this.#session = session;
  }

  /** Names of the model's inputs, in order. */
  get inputNames(): readonly string[] {
    return this.#session.inputNames;
  }

  /** Names of the model's outputs, in order. */
  get outputNames(): readonly string[] {
    return this.#session.outputNames;
  }

  /**
   * The element type of an input, from the model's metadata; `undefined` when there is no such
   * input or it is not a tensor (or its type is one denoise does not know).
   */
  inputType(name: string): ElemType | undefined {
    const meta = this.#session.inputMetadata.find((m) => m.name === name);
    return meta?.isTensor ? ELEM_FROM_ORT.get(meta.type) : undefined;
  }

  /**
   * The declared shape of an input: numbers for fixed dimensions, names (or undefined) for
   * dynamic ones; `undefined` when there is no such tensor input.
   */
  inputShape(name: string): ReadonlyArray<number | string | undefined> | undefined {
    const meta = this.#session.inputMetadata.find((m) => m.name === name);
    return meta?.isTensor ? [...meta.shape] : undefined;
  }

  /**
   * Runs the model. `outputs` selects outputs by name (default all).
   *
   * @example
   * ```ts ignore
   * const out = await session.run({ x: hostTensor("float32", new Float32Array(4), [1, 4]) });
   * out.y.data; // Float32Array
   * ```
   */
  async run(
    feeds: Record<string, HostTensor>,
    outputs?: readonly string[],
  ): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(t);
    const result = outputs === undefined
      ? await this.#session.run(ortFeeds)
      : await this.#session.run(ortFeeds, [...outputs]);
    const out: Record<string, HostTensor> = {};
    for (const [name, value] of Object.entries(result)) {
      const t = value as ort.Tensor;
      const type = ELEM_FROM_ORT.get(t.type);
      if (type === undefined) {
        throw new TypeError(`Cannot read output "${name}": ORT type ${t.type} is not supported`);
      }
      out[name] = { type, dims: [...t.dims], data: fromOrtData(t.data) };
    }
    return out;
  }

  /**
   * Stops ORT's profiler (sessions created with `profilePrefix`) and writes its trace file;
   * returns nothing (ORT names the file `<prefix>_<date>.json`).
   */
  endProfiling(): void {
    this.#session.endProfiling();
  }

  /** Frees the native session. */
  async release(): Promise<void> {
    await this.#session.release();
  }
}

/**
 * A HostTensor as an ORT feed. float16 is special: where the runtime has `Float16Array` (Deno
 * 2.x), onnxruntime-common 1.30 wraps the `Uint16Array` bits in a `Float16Array` view, which
 * onnxruntime-node's native binding cannot read (Node-API has no float16 typed array kind, so it
 * sees 0 bytes: "not enough space: expected 64, got 0"). The binding only reads `type`, `dims`
 * and `data`, so float16 feeds go as a plain tensor-shaped object over the `Uint16Array`.
 */
function toOrtTensor(t: HostTensor): ort.Tensor {
  if (t.type === "float16") {
    const data = t.data instanceof Uint16Array ? t.data : null;
    if (data === null) {
      throw new TypeError(
        `Cannot feed a float16 tensor held in a ${t.data.constructor.name}; pass the IEEE ` +
          `half-precision bits as a Uint16Array`,
      );
    }
    return { type: "float16", dims: [...t.dims], data, location: "cpu" } as unknown as ort.Tensor;
  }
  return new ort.Tensor(ORT_TYPE[t.type] as "float32", t.data as Float32Array, [...t.dims]);
}

/**
 * ORT output data as {@linkcode HostData}: float16 outputs arrive as `Float16Array` views where
 * the runtime has that type; they are returned as `Uint16Array` bits over the same memory.
 */
function fromOrtData(data: unknown): HostData {
  const f16 = (globalThis as { Float16Array?: new (...args: never[]) => unknown }).Float16Array;
  if (f16 !== undefined && data instanceof f16) {
    const view = data as unknown as { buffer: ArrayBuffer; byteOffset: number; length: number };
    return new Uint16Array(view.buffer, view.byteOffset, view.length);
  }
  return data as HostData;
}

/** Builds ORT's session options from ours. */
function ortOptions(options: SessionOptions): ort.InferenceSession.SessionOptions {
  const ep = options.executionProvider ?? "cpu";
  const o: ort.InferenceSession.SessionOptions = {
    executionProviders: ep === "cuda"
      ? [{ name: "cuda", deviceId: options.deviceId ?? 0 }]
      : ["cpu"],
    graphOptimizationLevel: options.optimizationLevel ?? "all",
    logSeverityLevel: options.logLevel ?? 3,
    interOpNumThreads: options.interOpThreads ?? 1,
    executionMode: (options.interOpThreads ?? 1) > 1 ? "parallel" : "sequential",
  };
  const extra: Record<string, string> = {};
  o.intraOpNumThreads = resolveThreads(options.threads).threads;
  if (options.freeDimensions !== undefined) o.freeDimensionOverrides = options.freeDimensions;
  if (options.optimizedModelPath !== undefined) {
    o.optimizedModelFilePath = options.optimizedModelPath;
    extra["session.optimized_model_external_initializers_file_name"] = `${
      options.optimizedModelPath.split(/[\\/]/).pop()
    }.data`;
    extra["session.optimized_model_external_initializers_min_size_in_bytes"] = "1024";
  }
  if (options.profilePrefix !== undefined) {
    o.enableProfiling = true;
    o.profileFilePrefix = options.profilePrefix;
  }
  Object.assign(extra, options.configEntries ?? {});
  if (Object.keys(extra).length > 0) o.extra = extra;
  return o;
}

/**
 * Creates an inference session from a model file (external data resolved beside it) or from
 * model bytes (inline weights only).
 *
 * @example
 * ```ts ignore
 * const session = await createSession("/cache/abc/model.onnx", { threads: 4 });
 * ```
 */
export async function createSession(
  model: string | Uint8Array,
  options: SessionOptions = {},
): Promise<OnnxSession> {
  const opts = ortOptions(options);
  try {
    const session = typeof model === "string"
      ? await ort.InferenceSession.create(model, opts)
      : await ort.InferenceSession.create(model, opts);
    return new OnnxSession(session);
  } catch (e) {
    const what = typeof model === "string" ? `"${model}"` : `a ${model.byteLength}-byte model`;
    const msg = (e instanceof Error ? e.message.split("\n")[0] : String(e)) ?? "";
    if (options.executionProvider === "cuda" && /shared library|providers_|CUDA|cuda/i.test(msg)) {
      throw new ModelNotFoundError(
        "Cannot use --device cuda: onnxruntime-node's CUDA provider is not installed " +
          `(${msg.replace(/^.*?: /, "")})`,
        {
          hint: "onnxruntime-node downloads it in an install script, which Deno skips unless " +
            "allowed: run `deno install --allow-scripts=npm:onnxruntime-node` on a machine with " +
            "CUDA 12 and cuDNN 9 (see docs/distribution.md), or use --device cpu",
          cause: e,
        },
      );
    }
    throw new Error(`Cannot load ONNX model ${what}: ${msg}`, { cause: e });
  }
}

/**
 * Sets how much onnxruntime itself prints on stderr (default "fatal": nothing, since every
 * failure also reaches the caller as an error; `--debug` raises it).
 */
export function setOnnxLogLevel(level: "verbose" | "info" | "warning" | "error" | "fatal"): void {
  ort.env.logLevel = level;
}

// ORT prints its own coloured log lines (ignoring NO_COLOR) before an error reaches us; the error
// itself says what went wrong, so ORT stays quiet unless asked.
ort.env.logLevel = "fatal";

/** The ORT version denoise runs with (part of cache keys: optimised models depend on it). */
export const ORT_VERSION: string = ort.env.versions.common ?? "unknown";
