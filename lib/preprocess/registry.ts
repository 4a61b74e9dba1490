/**
 * The table of preprocessors by kind name, so a CLI can list kinds and their options and run one
 * by name. A new preprocessor is a new row, not a branch.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import type { RgbImage } from "../image/gray.ts";
import { cannyPreprocessor } from "./canny.ts";
import { depthPreprocessor } from "./depth.ts";
import { invertPreprocessor } from "./invert.ts";
import { lineartPreprocessor } from "./lineart.ts";
import { lineartStandardPreprocessor } from "./lineart_standard.ts";
import { openposePreprocessor } from "./openpose.ts";
import { type ResolvedOptions, resolveOptions } from "./options.ts";
import type { PreprocessContext, Preprocessor, PreprocessorKind } from "./preprocessor.ts";
import { scribbleXdogPreprocessor } from "./scribble_xdog.ts";
import { shufflePreprocessor } from "./shuffle.ts";
import { softedgePreprocessor } from "./softedge.ts";
import { tilePreprocessor } from "./tile.ts";

/**
 * Every preprocessor, by kind: the model-free ones, then those that run an ONNX model, then those
 * whose network is built from its weights.
 */
export const PREPROCESSORS: Readonly<Record<PreprocessorKind, Preprocessor>> = {
  canny: cannyPreprocessor,
  tile: tilePreprocessor,
  shuffle: shufflePreprocessor,
  scribble_xdog: scribbleXdogPreprocessor,
  lineart_standard: lineartStandardPreprocessor,
  invert: invertPreprocessor,
  depth: depthPreprocessor,
  openpose: openposePreprocessor,
  softedge: softedgePreprocessor,
  lineart: lineartPreprocessor,
};

/** The kind names, in listing order. */
export const PREPROCESSOR_KINDS: readonly PreprocessorKind[] = Object.keys(
  PREPROCESSORS,
) as PreprocessorKind[];

/** True when `kind` names a preprocessor. */
export function isPreprocessorKind(kind: string): kind is PreprocessorKind {
  return Object.hasOwn(PREPROCESSORS, kind);
}

/**
 * The preprocessor called `kind`. Throws RangeError naming the known kinds otherwise.
 *
 * @example
 * ```ts
 * import { getPreprocessor } from "./registry.ts";
 * const canny = getPreprocessor("canny");
 * console.assert(canny.options.map((o) => o.name).join() === "low,high,l2,gray");
 * ```
 */
export function getPreprocessor(kind: string): Preprocessor {
  if (!isPreprocessorKind(kind)) {
    throw new RangeError(
      `Unknown preprocessor "${kind}": use one of ${PREPROCESSOR_KINDS.join(", ")}`,
    );
  }
  return PREPROCESSORS[kind];
}

/**
 * The options a run of `kind` would use: `options` validated, defaults filled in (what a Job
 * should record). Throws like {@linkcode getPreprocessor} and resolveOptions.
 *
 * @example
 * ```ts
 * import { resolvePreprocessOptions } from "./registry.ts";
 * const o = resolvePreprocessOptions("canny", { low: 50 });
 * console.assert(o.low === 50 && o.high === 200 && o.l2 === false && o.gray === false);
 * ```
 */
export function resolvePreprocessOptions(
  kind: string,
  options: Readonly<Record<string, unknown>> = {},
): ResolvedOptions {
  return resolveOptions(kind, getPreprocessor(kind).options, options);
}

/**
 * Runs the preprocessor `kind` on decoded pixels and returns the RGB control image (the input's
 * size, except `tile` with `resizeBack: false`). Model-based kinds need their model files in
 * `context.models` (and `softedge`/`lineart` a `context.cacheDir` for the graphs they build).
 *
 * @example
 * ```ts
 * import { preprocess } from "./registry.ts";
 * const image = { width: 2, height: 1, channels: 3 as const, data: Uint8Array.of(0, 0, 0, 9, 9, 9) };
 * const inverted = await preprocess(image, "invert");
 * console.assert(inverted.data.join() === "255,255,255,246,246,246");
 * ```
 */
export function preprocess(
  image: RawImage,
  kind: string,
  options: Readonly<Record<string, unknown>> = {},
  context: PreprocessContext = {},
): Promise<RgbImage> {
  return getPreprocessor(kind).run(image, options, context);
}
