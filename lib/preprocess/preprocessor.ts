/**
 * The shape every preprocessor has: a kind name, its options as data, and a `run` from decoded
 * pixels to the 3-channel 8-bit control image a ControlNet expects.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import type { RgbImage } from "../image/gray.ts";
import type { SessionOptions } from "../onnx/session.ts";
import type { OptionSpec } from "./options.ts";

/**
 * The preprocessors: model-free ones, then those that run a published ONNX model, then those
 * whose network is built from its weights.
 */
export type PreprocessorKind =
  | "canny"
  | "tile"
  | "shuffle"
  | "scribble_xdog"
  | "lineart_standard"
  | "invert"
  | "depth"
  | "openpose"
  | "softedge"
  | "lineart";

/** The model files a model-based preprocessor runs, by role. */
export interface PreprocessorModel {
  /** The models.lock.json alias used when no model is given. */
  readonly defaultAlias: string;
  /**
   * Role -> the file names that fill it in a model folder (first found wins; also looked up in an
   * `onnx/` subfolder). A preprocessor with one role also takes a single file.
   */
  readonly files: Readonly<Record<string, readonly string[]>>;
  /**
   * `"onnx"` (default): published ONNX exports, a single file must be `.onnx`; `"weights"`:
   * weight files (`.pth`, `.pt`, `.bin`, `.safetensors`) whose network is built by denoise, and a
   * single file fills every role.
   */
  readonly format?: "onnx" | "weights";
  /**
   * The roles a run with these (resolved) options needs (default: every role), so that a folder
   * or alias needs only those files.
   */
  readonly roles?: (options: Readonly<Record<string, unknown>>) => readonly string[];
}

/** What a model-based preprocessor's run needs besides pixels and options. */
export interface PreprocessContext {
  /** Role -> path of the model file (see {@linkcode PreprocessorModel}). */
  readonly models?: Readonly<Record<string, string>>;
  /** Threads and execution provider of the ONNX sessions. */
  readonly session?: SessionOptions;
  /**
   * The cache root; networks built from weights keep their graphs in `<cacheDir>/graphs/`
   * (needed by `softedge` and `lineart`).
   */
  readonly cacheDir?: string;
}

/**
 * A preprocessor. `run` takes any decoded 8-bit image (1 to 4 channels; alpha is composited onto
 * white as controlnet_aux's `HWC3`) and options by name (validated, defaults filled in; see
 * {@linkcode OptionSpec}), plus the model files for model-based kinds; it returns RGB pixels of
 * the same width and height as the input. The
 * work happens at the input's own size: controlnet_aux and the A1111 extension first resize to a
 * "detect resolution" (512 on the short side), which a caller can do with codec's resizeImage.
 */
export interface Preprocessor {
  readonly kind: PreprocessorKind;
  /** One line: what it makes, for which ControlNet. */
  readonly summary: string;
  /** Where the semantics come from (the reference implementation it reproduces). */
  readonly reference: string;
  readonly options: readonly OptionSpec[];
  /** The model(s) it runs; absent for model-free preprocessors. */
  readonly model?: PreprocessorModel;
  run(
    image: RawImage,
    options?: Readonly<Record<string, unknown>>,
    context?: PreprocessContext,
  ): Promise<RgbImage>;
}

/**
 * Runs synchronous `work` as a promise, so that a preprocessor's validation errors arrive as
 * rejections like its other failures.
 *
 * @example
 * ```ts
 * import { asPromise } from "./preprocessor.ts";
 * const failed = await asPromise(() => { throw new RangeError("bad"); }).catch((e) => e.name);
 * console.assert(failed === "RangeError");
 * ```
 */
export function asPromise<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}
