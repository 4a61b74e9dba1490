/**
 * A {@linkcode TokenScorer} over an encoder-decoder's merged decoder export (Optimum's
 * `decoder_model_merged.onnx`, as the Florence-2 ONNX exports ship it), with the decoder's
 * token embeddings in their own graph (`embed_tokens.onnx`):
 *
 * - inputs: `inputs_embeds` float32 [rows, new, d] (from `embed_tokens`),
 *   `encoder_hidden_states` float32 [rows, source, d], `encoder_attention_mask` int64
 *   [rows, source], `use_cache_branch` bool [1], and per layer i
 *   `past_key_values.{i}.decoder.key|value` float32 [rows, heads, past, head_dim] and
 *   `past_key_values.{i}.encoder.key|value` float32 [rows, heads, source, head_dim];
 * - outputs: `logits` float32 [rows, new, vocab] and `present.{i}.decoder|encoder.key|value`.
 *
 * The first call feeds empty caches with `use_cache_branch` false: the graph computes the
 * cross-attention keys and values from the encoder states. Later calls feed the caches with
 * `use_cache_branch` true; the encoder caches are the first call's (the merged graph returns
 * them unchanged, transformers.js and Optimum reuse the past ones, and so does this scorer).
 * Beam search reorders every cache row by `parents`.
 *
 * @module
 */
import { type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import {
  emptyCache,
  freshIds,
  gatherRows,
  lastLogits,
  repeatRows,
  rowsPerImage,
} from "./kv_cache.ts";
import type { TokenScorer } from "./token_scorer.ts";

/** The decoder's cache layout. */
export interface Seq2SeqGeometry {
  /** Decoder layers. */
  layers: number;
  /** Heads of the cache tensors. */
  heads: number;
  /** Width of one head. */
  headDim: number;
  /** Logits per row. */
  vocabSize: number;
}

/** The encoder's output for a batch of images. */
export interface EncoderStates {
  /** `last_hidden_state` float32 [images, source, d]. */
  hidden: HostTensor;
  /** The encoder's attention mask, int64 [images, source]. */
  mask: HostTensor;
}

/** The names of layer `i`'s cache inputs (past) and outputs (present). */
export function seq2seqCacheNames(i: number): Array<{ past: string; present: string }> {
  return ["decoder.key", "decoder.value", "encoder.key", "encoder.value"].map((part) => ({
    past: `past_key_values.${i}.${part}`,
    present: `present.${i}.${part}`,
  }));
}

/**
 * Scores one search over a merged seq2seq decoder. Build one per search (per encoded batch).
 *
 * @example
 * ```ts ignore
 * const scorer = new Seq2SeqScorer(decoder, embedTokens, { hidden, mask }, geometry);
 * const logits = await scorer.next([[2], [2]], [0, 1]);
 * ```
 */
export class Seq2SeqScorer implements TokenScorer {
  readonly vocabSize: number;
  #decoder: OnnxSession;
  #embed: OnnxSession;
  #encoder: EncoderStates;
  #geometry: Seq2SeqGeometry;
  #images: number;
  /** Per row: the encoder states and mask, repeated for the rows of each image. */
  #rowEncoder: EncoderStates | undefined;
  /** Cache tensors by past-input name. */
  #past = new Map<string, HostTensor>();
  #consumed = 0;

  constructor(
    decoder: OnnxSession,
    embedTokens: OnnxSession,
    encoder: EncoderStates,
    geometry: Seq2SeqGeometry,
  ) {
    this.#decoder = decoder;
    this.#embed = embedTokens;
    this.#encoder = encoder;
    this.#geometry = geometry;
    this.#images = encoder.hidden.dims[0]!;
    this.vocabSize = geometry.vocabSize;
  }

  async next(
    sequences: readonly (readonly number[])[],
    parents: readonly number[],
  ): Promise<Float32Array> {
    const rows = sequences.length;
    const k = rowsPerImage(rows, this.#images);
    const { layers, heads, headDim } = this.#geometry;
    const first = this.#rowEncoder === undefined;
    if (first) {
      this.#consumed = 0;
      this.#rowEncoder = {
        hidden: repeatRows(this.#encoder.hidden, k),
        mask: repeatRows(this.#encoder.mask, k),
      };
      for (let i = 0; i < layers; i++) {
        for (const { past } of seq2seqCacheNames(i)) {
          this.#past.set(past, emptyCache(rows, heads, headDim));
        }
      }
    } else {
      // Rows keep their image (parents stay within an image's k rows), so the encoder states
      // need no reordering; the caches do.
      for (const [name, t] of this.#past) this.#past.set(name, gatherRows(t, parents));
    }
    const ids = freshIds(sequences, this.#consumed);
    const { inputs_embeds } = await this.#embed.run({ input_ids: ids }, ["inputs_embeds"]);
    const feeds: Record<string, HostTensor> = {
      inputs_embeds: inputs_embeds!,
      encoder_hidden_states: this.#rowEncoder!.hidden,
      encoder_attention_mask: this.#rowEncoder!.mask,
      use_cache_branch: hostTensor("bool", Uint8Array.of(first ? 0 : 1), [1]),
    };
    for (const [name, t] of this.#past) feeds[name] = t;
    const out = await this.#decoder.run(feeds);
    for (let i = 0; i < layers; i++) {
      for (const { past, present } of seq2seqCacheNames(i)) {
        // Encoder caches: the first call's, kept (see the module documentation).
        if (!first && past.includes(".encoder.")) continue;
        this.#past.set(past, out[present]!);
      }
    }
    this.#consumed = sequences[0]!.length;
    const logits = lastLogits(out["logits"]!);
    if (logits.length !== rows * this.vocabSize) {
      throw new RangeError(
        `Cannot read the decoder's logits: ${logits.length / rows} per row, expected ` +
          `${this.vocabSize} (config.json vocab_size); the export and config.json disagree`,
      );
    }
    return logits;
  }
}
