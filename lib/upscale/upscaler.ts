/**
 * An ESRGAN-family network ready to run: its config and an onnxruntime session of the graph
 * built from its weights, optionally kept in the build cache.
 *
 * @module
 */
import type { TensorSource } from "../onnx/graph.ts";
import { cacheKey, createCachedSession, fileIdentity } from "../onnx/cache.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type OnnxSession, type SessionOptions } from "../onnx/session.ts";
import { buildUpscaler, type UpscalerConfig } from "../models/esrgan.ts";
import type { UpscalerKeyLayout } from "../models/esrgan_keys.ts";
import { loadUpscalerWeights } from "../models/esrgan_load.ts";

/** A network and its session. Call {@linkcode Upscaler.release} when done. */
export interface Upscaler {
  /** What the network is (architecture, scale, ...). */
  readonly config: UpscalerConfig;
  /** Its session: input `image` [1, C, H, W], output `upscaled` [1, C, sH, sW]. */
  readonly session: OnnxSession;
  /** Frees the session. */
  release(): Promise<void>;
}

/** An upscaler read from a file. */
export interface UpscalerFile extends Upscaler {
  readonly path: string;
  /** The file's key layout. */
  readonly layout: UpscalerKeyLayout;
  /** True when the built graph came from the cache. */
  readonly cacheHit: boolean;
}

/** Options of {@linkcode openUpscaler} and {@linkcode createUpscaler}. */
export interface UpscalerOptions extends SessionOptions {
  /**
   * Build cache folder: the graph (and ORT's optimised graph) is kept there, keyed by the file's
   * identity, so the next start skips building and optimising. Default: no cache.
   */
  cacheDir?: string;
}

// Bump when the graphs change, so cached builds are not reused.
const BUILDER_VERSION = "esrgan@1";

/**
 * Reads an upscaler file (.pth or .safetensors, any key layout esrgan_keys.ts knows), detects
 * its config and creates the session.
 *
 * @example
 * ```ts ignore
 * import { openUpscaler } from "./upscaler.ts";
 * const upscaler = await openUpscaler("RealESRGAN_x4plus.pth", { threads: 4 });
 * console.log(upscaler.config.scale); // 4
 * await upscaler.release();
 * ```
 */
export async function openUpscaler(
  path: string,
  options: UpscalerOptions = {},
): Promise<UpscalerFile> {
  const { cacheDir, ...sessionOptions } = options;
  const loaded = await loadUpscalerWeights(path);
  const build = () => buildUpscaler(loaded.config, loaded.weights, { source: path });
  let session: OnnxSession;
  let cacheHit = false;
  if (cacheDir !== undefined) {
    const key = cacheKey({ builder: BUILDER_VERSION, weights: await fileIdentity(path) });
    const cached = await createCachedSession(cacheDir, key, build, sessionOptions);
    session = cached.session;
    cacheHit = cached.hit;
  } else {
    session = await createSession(await serializeModel(build()), sessionOptions);
  }
  return {
    path,
    layout: loaded.layout,
    config: loaded.config,
    session,
    cacheHit,
    release: () => session.release(),
  };
}

/**
 * An upscaler from weights in memory (random models in tests and benchmarks). `cacheDir` is
 * ignored: there is no file to key the cache on.
 *
 * @example
 * ```ts ignore
 * const config = rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 });
 * const weights = memoryWeights(randomWeights(upscalerParameterShapes(config), 0));
 * const upscaler = await createUpscaler(config, weights);
 * ```
 */
export async function createUpscaler(
  config: UpscalerConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: UpscalerOptions = {},
): Promise<Upscaler> {
  const { cacheDir: _ignored, ...sessionOptions } = options;
  const session = await createSession(
    await serializeModel(buildUpscaler(config, weights)),
    sessionOptions,
  );
  return { config, session, release: () => session.release() };
}
