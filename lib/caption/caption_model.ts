/**
 * What {@linkcode caption} needs of a vision-language model family, so that BLIP (built from
 * its transformers folder), Florence-2 and LLaVA-style ONNX exports plug into the same
 * generation code: encode a batch of images (with the task or text prompt the family feeds its
 * encoder or chat template) into a {@linkcode TokenScorer} over a decoder with its cache, plus
 * the decoder prompt, the special tokens and the text decoding.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import type { GenerationConfig } from "./generation_config.ts";
import type { TokenScorer } from "./token_scorer.ts";

/** How much to say: `denoise caption --task`. */
export type CaptionTask = "caption" | "detailed" | "more-detailed";

/** Every {@linkcode CaptionTask}, shortest first. */
export const CAPTION_TASKS: readonly CaptionTask[] = ["caption", "detailed", "more-detailed"];

/** What to ask of a model about a batch of images. */
export interface CaptionRequest {
  /**
   * Text that conditions the caption: BLIP continues it (and returns it included), Florence-2
   * feeds it to its encoder instead of the task's prompt, a chat model gets it as the user's
   * message instead of the task's.
   */
  prompt?: string | undefined;
  /** The task (default `"caption"`); a model lists the ones it has in `tasks`. */
  task?: CaptionTask | undefined;
}

/** A batch of encoded images, ready for generation. */
export interface EncodedImages {
  /**
   * The decoder's starting tokens, the same for every image (BLIP: `[DEC]` + the prompt;
   * Florence-2: `decoder_start_token_id`; a decoder-only model: the whole chat prompt).
   */
  readonly promptIds: readonly number[];
  /**
   * Next-token logits over this batch's decoder. It accepts `k` rows per image (image-major),
   * for `k` beams.
   */
  readonly scorer: TokenScorer;
}

/** A captioning model. */
export interface CaptionModel {
  /** The family, for messages (`"blip"`, `"florence2"`, `"llava"`). */
  readonly family: string;
  /** The tasks it can do (BLIP: only `"caption"`). */
  readonly tasks: readonly CaptionTask[];
  /** The model's own generation settings (transformers' generation config for it). */
  readonly generationConfig: GenerationConfig;
  /** Tokens that end a caption. */
  readonly eosTokenIds: readonly number[];
  /** Token finished rows are padded with. */
  readonly padTokenId: number;
  /** Encodes a batch of decoded images for one request. */
  encode(images: readonly RawImage[], request?: CaptionRequest): Promise<EncodedImages>;
  /**
   * The caption in generated `ids` (which start with `promptIds`), as the model's processor
   * decodes and post-processes it: BLIP keeps the prompt, a chat model drops it.
   */
  decode(ids: readonly number[], promptIds: readonly number[]): string;
  /** Frees the model's sessions. */
  release(): Promise<void>;
}

/**
 * Checks that `model` has `task`, with a one-line error naming the tasks it has.
 *
 * @example
 * ```ts
 * import { checkTask } from "./caption_model.ts";
 * checkTask({ family: "blip", tasks: ["caption"] }, "caption");
 * ```
 */
export function checkTask(
  model: Pick<CaptionModel, "family" | "tasks">,
  task: CaptionTask,
): void {
  if (!model.tasks.includes(task)) {
    throw new RangeError(
      `Cannot caption with task "${task}": a ${model.family} model has only ` +
        `${model.tasks.map((t) => `"${t}"`).join(", ")}; pick one of those or another model`,
    );
  }
}
