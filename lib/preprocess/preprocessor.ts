/**
 * The shape every preprocessor has: a kind name, its options as data, and a `run` from decoded
 * pixels to the 3-channel 8-bit control image a ControlNet expects.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import type { RgbImage } from "../image/gray.ts";
import type { OptionSpec } from "./options.ts";

/** The model-free preprocessors. */
export type PreprocessorKind =
  | "canny"
  | "tile"
  | "shuffle"
  | "scribble_xdog"
  | "lineart_standard"
  | "invert";

/**
 * A preprocessor. `run` takes any decoded 8-bit image (1 to 4 channels; alpha is composited onto
 * white as controlnet_aux's `HWC3`) and options by name (validated, defaults filled in; see
 * {@linkcode OptionSpec}); it returns RGB pixels of the same width and height as the input. The
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
  run(image: RawImage, options?: Readonly<Record<string, unknown>>): Promise<RgbImage>;
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
