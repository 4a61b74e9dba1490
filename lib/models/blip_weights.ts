/**
 * The tensors of a BlipForConditionalGeneration checkpoint, normalised once for the builders:
 * buffers dropped, tied aliases folded, and anything that is not `vision_model.*` or
 * `text_decoder.*` refused (a BLIP checkpoint of another head, e.g. question answering or
 * image-text matching, has `text_encoder.*` and projections the captioner cannot use).
 *
 * @module
 */
import type { TensorSource } from "../onnx/graph.ts";

/** Stored tensors that are not parameters (transformers saves the position_ids buffer). */
const BUFFERS = new Set(["text_decoder.bert.embeddings.position_ids"]);

/**
 * transformers 4.30 ties `cls.predictions.decoder.bias` to `cls.predictions.bias`; torch.save
 * writes both names, safetensors only one.
 */
const TIED: ReadonlyArray<readonly [alias: string, name: string]> = [
  ["text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias"],
];

const PARTS = ["vision_model.", "text_decoder."];

/**
 * `weights` with buffers and tied aliases removed; throws a TypeError naming tensors outside
 * the vision model and text decoder.
 *
 * @example
 * ```ts
 * import { normalizeBlipWeights } from "./blip_weights.ts";
 * const t = { dtype: "float32" as const, shape: [2], data: new Float32Array(2) };
 * const w = normalizeBlipWeights(new Map([
 *   ["text_decoder.cls.predictions.decoder.bias", t],
 *   ["text_decoder.bert.embeddings.position_ids", t],
 * ]));
 * console.assert(w.has("text_decoder.cls.predictions.bias") && w.size === 1);
 * ```
 */
export function normalizeBlipWeights(
  weights: ReadonlyMap<string, TensorSource>,
): Map<string, TensorSource> {
  const out = new Map<string, TensorSource>();
  const foreign: string[] = [];
  for (const [name, source] of weights) {
    if (BUFFERS.has(name)) continue;
    if (!PARTS.some((p) => name.startsWith(p))) {
      foreign.push(name);
      continue;
    }
    out.set(name, source);
  }
  for (const [alias, name] of TIED) {
    const source = out.get(alias);
    if (source === undefined) continue;
    out.delete(alias);
    if (!out.has(name)) out.set(name, source);
  }
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 4).map((n) => `"${n}"`).join(", ");
    throw new TypeError(
      `Cannot build BLIP captioning from this checkpoint: it has ${foreign.length} tensors ` +
        `outside vision_model and text_decoder (${shown}${foreign.length > 4 ? ", ..." : ""}); ` +
        `pass a BlipForConditionalGeneration checkpoint`,
    );
  }
  return out;
}
