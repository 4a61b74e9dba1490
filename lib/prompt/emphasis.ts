/**
 * Token weights applied to text-encoder outputs, as A1111's modules/sd_emphasis.py does
 * (AUTOMATIC1111/stable-diffusion-webui): "Original" multiplies each token's hidden state by its
 * weight and rescales so the mean of the chunk is unchanged; "No norm" only multiplies; "Ignore"
 * and "None" leave the states alone. Written from reading that code, not copied.
 *
 * @module
 */

/**
 * How prompt weights act. "none": brackets are literal text, no weights (A1111 "None");
 * "ignore": brackets are parsed but weights not applied; "original": A1111's default;
 * "no-norm": weights without restoring the mean (A1111 "No norm", often better for SDXL).
 */
export type EmphasisMode = "none" | "ignore" | "original" | "no-norm";

/** All emphasis modes, for validating user input. */
export const EMPHASIS_MODES: readonly EmphasisMode[] = ["none", "ignore", "original", "no-norm"];

/**
 * Applies token weights to encoder hidden states `[chunks, tokens, dim]` (row-major) and returns
 * a new array. `weights` holds one weight per token, `[chunks, tokens]`. For "original" the mean
 * is restored per chunk: A1111 takes it over the whole batch of one chunk index, which is the
 * same thing when a prompt is encoded on its own. Products are rounded to float32 as torch does;
 * the means are summed in float64.
 *
 * @example
 * ```ts
 * import { applyEmphasis } from "./emphasis.ts";
 * const hidden = new Float32Array([1, 2, 3, 4]); // 1 chunk, 2 tokens, dim 2
 * const out = applyEmphasis(hidden, [1, 2, 2], new Float32Array([1, 2]), "no-norm");
 * console.assert(out.join() === "1,2,6,8");
 * ```
 */
export function applyEmphasis(
  hidden: Float32Array,
  shape: readonly [number, number, number],
  weights: Float32Array,
  mode: EmphasisMode,
): Float32Array {
  const [chunks, tokens, dim] = shape;
  if (hidden.length !== chunks * tokens * dim) {
    throw new TypeError(
      `Cannot apply emphasis: hidden states have ${hidden.length} values, shape [${shape}] needs ${
        chunks * tokens * dim
      }`,
    );
  }
  if (weights.length !== chunks * tokens) {
    throw new TypeError(
      `Cannot apply emphasis: ${weights.length} weights for [${chunks}, ${tokens}] tokens; pass one weight per token`,
    );
  }
  if (!EMPHASIS_MODES.includes(mode)) {
    throw new RangeError(`Unknown emphasis mode "${mode}"; use ${EMPHASIS_MODES.join(", ")}`);
  }
  const out = new Float32Array(hidden);
  if (mode === "none" || mode === "ignore") return out;
  const size = tokens * dim;
  for (let c = 0; c < chunks; c++) {
    const base = c * size;
    let before = 0;
    let after = 0;
    for (let t = 0; t < tokens; t++) {
      const w = weights[c * tokens + t] as number;
      for (let d = 0; d < dim; d++) {
        const i = base + t * dim + d;
        const v = hidden[i] as number;
        before += v;
        const scaled = Math.fround(v * w);
        out[i] = scaled;
        after += scaled;
      }
    }
    if (mode === "no-norm") continue;
    // z * (original_mean / new_mean)
    const ratio = Math.fround(Math.fround(before / size) / Math.fround(after / size));
    for (let i = base; i < base + size; i++) out[i] = Math.fround((out[i] as number) * ratio);
  }
  return out;
}
