/**
 * The prompt of a LLaVA-1.5 chat model (`llava-hf/llava-1.5-*-hf`, a Llama decoder): the
 * processor's chat template renders one user turn holding an image and a text, with the
 * generation prompt, as `USER: <image>\n{text} ASSISTANT:` (the form transformers' LLaVA
 * documentation and the transformers.js LLaVA tests use). The tokenizer then adds `<s>`.
 *
 * `<image>` stands for the whole image: {@linkcode expandImageTokens} repeats its id once per
 * feature row of the vision encoder's output (576 for a 336 px CLIP ViT-L/14), as the LLaVA
 * processor expands it before the model's masked scatter.
 *
 * The task texts are denoise's own wording (LLaVA has no task tokens); `--prompt` replaces them.
 *
 * @module
 */
import type { CaptionTask } from "./caption_model.ts";

/** The user's text for each `--task` (denoise's wording). */
export const CHAT_TASK_PROMPTS: Readonly<Record<CaptionTask, string>> = {
  "caption": "Write a one-sentence caption for this image.",
  "detailed": "Describe this image in detail.",
  "more-detailed": "Describe this image in great detail, in one paragraph: the subject, the " +
    "setting, the colours, the lighting and the style.",
};

/** The image placeholder of the template. */
export const IMAGE_PLACEHOLDER = "<image>";

/**
 * LLaVA-1.5's prompt for one image and a user text.
 *
 * @example
 * ```ts
 * import { llavaPrompt } from "./llava_chat.ts";
 * console.assert(llavaPrompt("What is this?") === "USER: <image>\nWhat is this? ASSISTANT:");
 * ```
 */
export function llavaPrompt(text: string): string {
  return `USER: ${IMAGE_PLACEHOLDER}\n${text} ASSISTANT:`;
}

/**
 * The user text of a request: `prompt` when given, else the task's text.
 *
 * @example
 * ```ts
 * import { chatRequestText } from "./llava_chat.ts";
 * console.assert(chatRequestText("detailed") === "Describe this image in detail.");
 * ```
 */
export function chatRequestText(task: CaptionTask, prompt?: string): string {
  return prompt ?? CHAT_TASK_PROMPTS[task];
}

/**
 * `ids` with the single `imageTokenId` repeated `count` times in place. Throws a RangeError
 * unless the ids hold exactly one image token.
 *
 * @example
 * ```ts
 * import { expandImageTokens } from "./llava_chat.ts";
 * console.assert(expandImageTokens([1, 9, 5], 9, 3).join() === "1,9,9,9,5");
 * ```
 */
export function expandImageTokens(
  ids: readonly number[],
  imageTokenId: number,
  count: number,
): number[] {
  const at = ids.indexOf(imageTokenId);
  if (at < 0 || ids.indexOf(imageTokenId, at + 1) >= 0) {
    throw new RangeError(
      `Cannot place the image: the prompt must hold exactly one ${IMAGE_PLACEHOLDER} token ` +
        `(id ${imageTokenId}); do not write ${IMAGE_PLACEHOLDER} in --prompt`,
    );
  }
  return [
    ...ids.slice(0, at),
    ...new Array<number>(count).fill(imageTokenId),
    ...ids.slice(at + 1),
  ];
}
