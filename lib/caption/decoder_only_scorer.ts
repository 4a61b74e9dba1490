/**
 * A {@linkcode TokenScorer} over a decoder-only language model's merged ONNX export (Optimum /
 * transformers.js `decoder_model_merged.onnx`) whose prompt holds image tokens, as LLaVA-style
 * exports feed it (transformers.js `LlavaForConditionalGeneration`, `image_text_to_text_forward`
 * with `default_merge_input_ids_with_image_features`):
 *
 * - `embed_tokens.onnx` turns ids into `inputs_embeds`; at the first call the rows of the
 *   image token (`image_token_index`) are overwritten, in order, with the image's features (a
 *   masked scatter: the prompt holds one image token per feature row);
 * - the decoder takes `inputs_embeds` float32 [rows, new, d], `attention_mask` int64
 *   [rows, past + new] (all ones: rows are never padded), `position_ids` int64 [rows, new]
 *   (`past ... past + new - 1`, when the export has that input), `num_logits_to_keep` int64
 *   scalar 1 (when it has that input), and `past_key_values.{i}.key|value` float32
 *   [rows, kv_heads, past, head_dim]; it returns `logits` [rows, new, vocab] and
 *   `present.{i}.key|value`.
 *
 * @module
 */
import { type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { emptyCache, freshIds, gatherRows, lastLogits, rowsPerImage } from "./kv_cache.ts";
import type { TokenScorer } from "./token_scorer.ts";

/** The decoder's cache layout and vocabulary. */
export interface DecoderGeometry {
  /** Layers (pairs of cache inputs). */
  layers: number;
  /** Key/value heads of the cache tensors. */
  heads: number;
  /** Width of one head. */
  headDim: number;
  /** Logits per row. */
  vocabSize: number;
}

/** The images of one batch as the prompt's image tokens take them. */
export interface PromptImages {
  /** `image_features` float32 [images, tokens, d] (the projector's output). */
  features: HostTensor;
  /** The id standing for one feature row in the prompt. */
  imageTokenId: number;
}

/**
 * Scores one search over a decoder-only LLM whose prompt holds image tokens. Build one per
 * search (per encoded batch).
 *
 * @example
 * ```ts ignore
 * const scorer = new DecoderOnlyScorer(decoder, embedTokens, { features, imageTokenId }, geometry);
 * const logits = await scorer.next([promptIds], [0]);
 * ```
 */
export class DecoderOnlyScorer implements TokenScorer {
  readonly vocabSize: number;
  #decoder: OnnxSession;
  #embed: OnnxSession;
  #images: PromptImages;
  #geometry: DecoderGeometry;
  #past = new Map<string, HostTensor>();
  #consumed = 0;

  constructor(
    decoder: OnnxSession,
    embedTokens: OnnxSession,
    images: PromptImages,
    geometry: DecoderGeometry,
  ) {
    this.#decoder = decoder;
    this.#embed = embedTokens;
    this.#images = images;
    this.#geometry = geometry;
    this.vocabSize = geometry.vocabSize;
  }

  async next(
    sequences: readonly (readonly number[])[],
    parents: readonly number[],
  ): Promise<Float32Array> {
    const rows = sequences.length;
    const { features } = this.#images;
    const k = rowsPerImage(rows, features.dims[0]!);
    const { layers, heads, headDim } = this.#geometry;
    const first = this.#past.size === 0;
    if (first) {
      this.#consumed = 0;
      for (let i = 0; i < layers; i++) {
        for (const kind of ["key", "value"]) {
          this.#past.set(`past_key_values.${i}.${kind}`, emptyCache(rows, heads, headDim));
        }
      }
    } else {
      for (const [name, t] of this.#past) this.#past.set(name, gatherRows(t, parents));
    }
    const ids = freshIds(sequences, this.#consumed);
    const width = ids.dims[1]!;
    const { inputs_embeds } = await this.#embed.run({ input_ids: ids }, ["inputs_embeds"]);
    let embeds = inputs_embeds!;
    if (first) embeds = this.#withImages(embeds, ids, k);
    const past = this.#consumed;
    const total = past + width;
    const feeds: Record<string, HostTensor> = {
      inputs_embeds: embeds,
      attention_mask: hostTensor("int64", new BigInt64Array(rows * total).fill(1n), [rows, total]),
    };
    const inputs = this.#decoder.inputNames;
    if (inputs.includes("position_ids")) {
      const positions = new BigInt64Array(rows * width);
      for (let i = 0; i < positions.length; i++) positions[i] = BigInt(past + (i % width));
      feeds["position_ids"] = hostTensor("int64", positions, [rows, width]);
    }
    if (inputs.includes("num_logits_to_keep")) {
      feeds["num_logits_to_keep"] = hostTensor("int64", BigInt64Array.of(1n), []);
    }
    for (const [name, t] of this.#past) feeds[name] = t;
    const out = await this.#decoder.run(feeds);
    for (let i = 0; i < layers; i++) {
      for (const kind of ["key", "value"]) {
        this.#past.set(`past_key_values.${i}.${kind}`, out[`present.${i}.${kind}`]!);
      }
    }
    this.#consumed = total;
    const logits = lastLogits(out["logits"]!);
    if (logits.length !== rows * this.vocabSize) {
      throw new RangeError(
        `Cannot read the decoder's logits: ${logits.length / rows} per row, expected ` +
          `${this.vocabSize} (config.json vocab_size); the export and config.json disagree`,
      );
    }
    return logits;
  }

  /** `embeds` [rows, n, d] with row r's image-token positions set to image `r / k`'s features. */
  #withImages(embeds: HostTensor, ids: HostTensor, k: number): HostTensor {
    const { features, imageTokenId } = this.#images;
    const [rows, n, d] = embeds.dims as [number, number, number];
    const tokens = features.dims[1]!;
    if (features.dims[2] !== d) {
      throw new RangeError(
        `Cannot place image features of width ${features.dims[2]} among token embeddings of ` +
          `width ${d}: the export's parts do not belong together`,
      );
    }
    const out = Float32Array.from(embeds.data as Float32Array);
    const src = features.data as Float32Array;
    const token = BigInt(imageTokenId);
    for (let r = 0; r < rows; r++) {
      const image = Math.floor(r / k);
      let j = 0;
      for (let t = 0; t < n; t++) {
        if (ids.data[r * n + t] !== token) continue;
        if (j >= tokens) break;
        out.set(
          src.subarray((image * tokens + j) * d, (image * tokens + j + 1) * d),
          (r * n + t) * d,
        );
        j++;
      }
      const count = (ids.data as BigInt64Array).subarray(r * n, (r + 1) * n)
        .reduce((c, v) => c + (v === token ? 1 : 0), 0);
      if (count !== tokens) {
        throw new RangeError(
          `Cannot place an image of ${tokens} feature rows in a prompt with ${count} image ` +
            `tokens; the prompt must hold one image token per feature row`,
        );
      }
    }
    return hostTensor("float32", out, [rows, n, d]);
  }
}
