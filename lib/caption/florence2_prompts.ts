/**
 * Florence-2's task prompts, as its processor (`processing_florence2.py`,
 * `Florence2Processor._construct_prompts`) turns task tokens into the sentence the encoder
 * reads: a task token alone (`<CAPTION>`) becomes its fixed sentence; a task token that takes an
 * input (`<OPEN_VOCABULARY_DETECTION>cat`) becomes its sentence with the rest of the text filled
 * in; any other text is used as it is. `denoise caption --task` names the three captioning
 * tokens.
 *
 * The model never sees the task tokens themselves, only these sentences; the sentences below
 * are the processor's, word for word.
 *
 * @module
 */
import type { CaptionTask } from "./caption_model.ts";

/** `task_prompts_without_inputs` of the Florence-2 processor. */
export const FLORENCE2_TASK_PROMPTS: Readonly<Record<string, string>> = {
  "<OCR>": "What is the text in the image?",
  "<OCR_WITH_REGION>": "What is the text in the image, with regions?",
  "<CAPTION>": "What does the image describe?",
  "<DETAILED_CAPTION>": "Describe in detail what is shown in the image.",
  "<MORE_DETAILED_CAPTION>": "Describe with a paragraph what is shown in the image.",
  "<OD>": "Locate the objects with category name in the image.",
  "<DENSE_REGION_CAPTION>": "Locate the objects in the image, with their descriptions.",
  "<REGION_PROPOSAL>": "Locate the region proposals in the image.",
};

/** `task_prompts_with_input` of the Florence-2 processor (`{input}` is the rest of the text). */
export const FLORENCE2_TASK_PROMPTS_WITH_INPUT: Readonly<Record<string, string>> = {
  "<CAPTION_TO_PHRASE_GROUNDING>": "Locate the phrases in the caption: {input}",
  "<REFERRING_EXPRESSION_SEGMENTATION>": "Locate {input} in the image with mask",
  "<REGION_TO_SEGMENTATION>": "What is the polygon mask of region {input}",
  "<OPEN_VOCABULARY_DETECTION>": "Locate {input} in the image.",
  "<REGION_TO_CATEGORY>": "What is the region {input}?",
  "<REGION_TO_DESCRIPTION>": "What does the region {input} describe?",
  "<REGION_TO_OCR>": "What text is in the region {input}?",
};

/** The task token of each `--task`. */
export const FLORENCE2_TASK_TOKENS: Readonly<Record<CaptionTask, string>> = {
  "caption": "<CAPTION>",
  "detailed": "<DETAILED_CAPTION>",
  "more-detailed": "<MORE_DETAILED_CAPTION>",
};

/**
 * The sentence the encoder reads for `text` (`_construct_prompts`): a task token alone becomes
 * its sentence, a task token with an input its sentence with the input, other text stays.
 * Throws a RangeError for a fixed task token with other text beside it (the processor asserts).
 *
 * @example
 * ```ts
 * import { florence2Prompt } from "./florence2_prompts.ts";
 * console.assert(florence2Prompt("<CAPTION>") === "What does the image describe?");
 * console.assert(florence2Prompt("<OPEN_VOCABULARY_DETECTION>a cat") === "Locate a cat in the image.");
 * console.assert(florence2Prompt("Is there a dog?") === "Is there a dog?");
 * ```
 */
export function florence2Prompt(text: string): string {
  for (const [token, prompt] of Object.entries(FLORENCE2_TASK_PROMPTS)) {
    if (text.includes(token)) {
      if (text !== token) {
        throw new RangeError(
          `Cannot use the Florence-2 prompt "${text}": the task token ${token} must be the ` +
            `whole prompt`,
        );
      }
      return prompt;
    }
  }
  for (const [token, prompt] of Object.entries(FLORENCE2_TASK_PROMPTS_WITH_INPUT)) {
    if (text.includes(token)) {
      const input = text.replace(token, "");
      return prompt.replace("{input}", () => input);
    }
  }
  return text;
}

/**
 * The encoder's sentence for a caption request: `prompt` when given (itself possibly a task
 * token), else the sentence of `task`'s token.
 *
 * @example
 * ```ts
 * import { florence2RequestPrompt } from "./florence2_prompts.ts";
 * console.assert(
 *   florence2RequestPrompt("detailed") === "Describe in detail what is shown in the image.",
 * );
 * ```
 */
export function florence2RequestPrompt(task: CaptionTask, prompt?: string): string {
  return florence2Prompt(prompt ?? FLORENCE2_TASK_TOKENS[task]);
}
