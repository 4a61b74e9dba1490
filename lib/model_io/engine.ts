/**
 * Turning a component (config + weight file) into a running ONNX session, through the on-disk
 * cache of built graphs (lib/onnx/cache.ts). The first run builds the graph, checks the weights
 * for NaN/Inf, and writes `<cache>/graphs/<key>/model.onnx` whose initializers point into the
 * weight file (hard linked beside it, so nothing big is copied); later runs load that directly.
 *
 * @module
 */
import { join } from "node:path";
import { InputError } from "../errors.ts";
import type { OnnxModel, TensorSource } from "../onnx/graph.ts";
import { cacheKey, contentIdentity, createCachedSession } from "../onnx/cache.ts";
import { readSource } from "../onnx/model_file.ts";
import type { ExecutionProvider, OnnxSession, OptimizationLevel } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { castWeights, type GraphFloatType } from "../models/layers.ts";
import type { QuantizeMode } from "../models/quantize.ts";

/**
 * Bumped whenever a builder changes the graphs it emits, so stale cached graphs are not reused.
 */
export const GRAPH_REVISION = 2;

/** Options shared by every session of a run. */
export interface EngineOptions {
  /** Root of the build cache (graphs go to `<cacheDir>/graphs/`). */
  cacheDir: string;
  /** Intra-op threads (default: ORT's choice). */
  threads?: number | undefined;
  /** Execution provider (default cpu). */
  executionProvider?: ExecutionProvider;
  /**
   * ORT graph optimisation level (default {@linkcode DEFAULT_OPTIMIZATION_LEVEL}, "extended").
   */
  optimizationLevel?: OptimizationLevel;
  /**
   * Keep ORT's optimised graph in the cache (a second copy of the weights) and start from it
   * (default false: the builders emit the fused forms, so ORT has little to rewrite at
   * "extended" and each start maps the weight file itself).
   */
  cacheOptimized?: boolean;
}

/**
 * The optimisation level components run at. "all" adds ORT's NCHWc layout transform, which
 * took 62-98 s on an SD 1.5 UNet here (reordering the convolution weights costs more than
 * linear time in their size) and ran no faster (0.93-1.05x, docs/performance.md); "extended"
 * takes under a second beyond loading.
 */
export const DEFAULT_OPTIMIZATION_LEVEL: OptimizationLevel = "extended";

/** What to build. */
export interface ComponentSpec {
  /** A short name used in messages and the cache key, e.g. "unet". */
  kind: string;
  /**
   * The weight file (.safetensors; with `sources`, any file: its identity is part of the cache
   * key).
   */
  weights: string;
  /** The raw config (part of the cache key). */
  config: unknown;
  /** Builds the graph from tensor sources of `floatType`. */
  build: (sources: Map<string, TensorSource>) => OnnxModel;
  /**
   * Float type of the weights `build` gets (default float32; part of the cache key). Transforms
   * still see float32 sources; their result is converted.
   */
  floatType?: GraphFloatType;
  /** Weight quantisation `build` applies (part of the cache key; default none). */
  quantize?: QuantizeMode | undefined;
  /**
   * Changes applied to the sources before building (LoRA merges); `key` identifies them in the
   * cache key.
   */
  transform?: {
    key: string;
    apply: (sources: Map<string, TensorSource>) => Promise<Map<string, TensorSource>>;
  };
  /**
   * Opens the weight sources instead of reading `weights` as one safetensors file (a `.pth`, or
   * an original-layout file renamed to Diffusers names): sources of `floatType` (float32 with a
   * `transform`), and `close`, called once the model is written. Only called on a cache miss.
   */
  sources?: () => Promise<{ sources: Map<string, TensorSource>; close: () => void }>;
}

/** The cache key of a component: graph revision, kind, config, weight file identity, edits. */
export async function componentKey(spec: ComponentSpec, cacheDir?: string): Promise<string> {
  return `${spec.kind}-${
    cacheKey({
      revision: GRAPH_REVISION,
      kind: spec.kind,
      config: spec.config,
      file: await contentIdentity(spec.weights, { indexDir: cacheDir }),
      transform: spec.transform?.key ?? null,
      // Only float16 adds to the key, so float32 graphs cached before keep their keys.
      ...(spec.floatType === "float16" ? { floatType: "float16" } : {}),
      ...(spec.quantize !== undefined ? { quantize: spec.quantize } : {}),
    })
  }`;
}

/**
 * Checks every float tensor for NaN or infinity, throwing an {@linkcode InputError} that names
 * the first bad tensors. Runs once, when a graph is built.
 */
export async function assertFiniteWeights(
  what: string,
  sources: ReadonlyMap<string, TensorSource>,
): Promise<void> {
  const bad: string[] = [];
  for (const [name, source] of sources) {
    if (source.dtype !== "float32" && source.dtype !== "float16") continue;
    const bytes = await readSource(name, source);
    if (source.dtype === "float16") {
      // IEEE half: exponent bits all ones = infinity or NaN.
      const half = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 1);
      if (half.some((h) => (h & 0x7c00) === 0x7c00)) bad.push(name);
      if (bad.length >= 3) break;
      continue;
    }
    const view = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
    for (let i = 0; i < view.length; i++) {
      const v = view[i]!;
      if (v - v !== 0) {
        bad.push(name);
        break;
      }
    }
    if (bad.length >= 3) break;
  }
  if (bad.length > 0) {
    throw new InputError(
      `Cannot use the ${what} weights: NaN or infinite values in ${
        bad.map((n) => `"${n}"`).join(", ")
      }`,
      { hint: "the weight file is corrupt or was saved from a diverged training run" },
    );
  }
}

/** Builds (or reuses) the graph of a component and opens a session on it. */
export async function openComponent(
  spec: ComponentSpec,
  options: EngineOptions,
): Promise<OnnxSession> {
  const key = await componentKey(spec, options.cacheDir);
  // The weight file stays open until the model is written: converted tensors (fp16 -> fp32,
  // merged LoRA deltas) are read from it then, not while the graph is built.
  let close: (() => void) | undefined;
  const { session } = await createCachedSession(
    join(options.cacheDir, "graphs"),
    key,
    async () => {
      if (spec.sources !== undefined) {
        const opened = await spec.sources();
        close = opened.close;
        return await build(spec, opened.sources);
      }
      const file = await SafetensorsFile.open(spec.weights);
      close = () => file.close();
      return await build(
        spec,
        tensorSources(file, {
          floatType: spec.transform ? "float32" : spec.floatType ?? "float32",
        }),
      );
    },
    {
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      executionProvider: options.executionProvider ?? "cpu",
      optimizationLevel: options.optimizationLevel ?? DEFAULT_OPTIMIZATION_LEVEL,
      cacheOptimized: options.cacheOptimized ?? false,
    },
  ).finally(() => close?.());
  return session;
}

/** Applies the transform (float32 sources in), checks the weights and builds the graph. */
async function build(
  spec: ComponentSpec,
  opened: Map<string, TensorSource>,
): Promise<OnnxModel> {
  const floatType = spec.floatType ?? "float32";
  let sources = opened;
  if (spec.transform) sources = castWeights(await spec.transform.apply(sources), floatType);
  // float16 graphs are checked after conversion: float32 weights beyond 65504 become infinite.
  await assertFiniteWeights(spec.kind, sources);
  return spec.build(sources);
}
