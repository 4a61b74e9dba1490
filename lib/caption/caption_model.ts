/**
 * What {@linkcode caption} needs of a vision-language model family, so that BLIP (built from
 * its transformers folder) and later exports (Florence-2, LLaVA-style ONNX models) plug into
 * the same generation code: encode a batch of images (and the text prompt, which an
 * encoder-decoder model feeds its encoder) into a {@linkcode TokenScorer} over a decoder with
 * its cache, plus the decoder prompt, the special tokens and the text decoding.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import type { GenerationConfig } from "./generation_config.ts";
import type { TokenScorer } from "./token_scorer.ts";

/** A batch of encoded images, ready for generation. */
export interface EncodedImages {
  /** The decoder's starting tokens, the same for every image (BLIP: `[DEC]` + the prompt). */
  readonly promptIds: readonly number[];
  /**
   * Next-token logits over this batch's decoder. It accepts `k` rows per image (image-major),
   * for `k` beams.
   */
  readonly scorer: TokenScorer;
}

/** A captioning model. */
export interface CaptionModel {
  /** The family, for messages (`"blip"`). */
  readonly family: string;
  /** The model's own generation settings (transformers' generation config for it). */
  readonly generationConfig: GenerationConfig;
  /** Tokens that end a caption. */
  readonly eosTokenIds: readonly number[];
  /** Token finished rows are padded with. */
  readonly padTokenId: number;
  /** Encodes a batch of decoded images with an optional text prompt. */
  encode(images: readonly RawImage[], prompt?: string): Promise<EncodedImages>;
  /** The text of generated ids, as the model's processor decodes them (special tokens skipped). */
  decode(ids: readonly number[]): string;
  /** Frees the model's sessions. */
  release(): Promise<void>;
}
