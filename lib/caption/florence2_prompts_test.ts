import assert from "node:assert/strict";
import {
  FLORENCE2_TASK_PROMPTS,
  FLORENCE2_TASK_TOKENS,
  florence2Prompt,
  florence2RequestPrompt,
} from "./florence2_prompts.ts";

Deno.test("florence2Prompt() maps every task token as Florence2Processor._construct_prompts", () => {
  for (const [token, sentence] of Object.entries(FLORENCE2_TASK_PROMPTS)) {
    assert.equal(florence2Prompt(token), sentence);
  }
  assert.equal(
    florence2Prompt("<CAPTION_TO_PHRASE_GROUNDING>A green car"),
    "Locate the phrases in the caption: A green car",
  );
  // A "$&" in the input is text, not a replacement pattern.
  assert.equal(florence2Prompt("<REGION_TO_CATEGORY>$&"), "What is the region $&?");
  assert.equal(florence2Prompt("a plain question?"), "a plain question?");
  assert.throws(() => florence2Prompt("<CAPTION> and more"), /must be the whole prompt/);
});

Deno.test("florence2RequestPrompt() maps --task to the captioning tokens; --prompt wins", () => {
  assert.deepEqual(FLORENCE2_TASK_TOKENS, {
    "caption": "<CAPTION>",
    "detailed": "<DETAILED_CAPTION>",
    "more-detailed": "<MORE_DETAILED_CAPTION>",
  });
  assert.equal(florence2RequestPrompt("caption"), "What does the image describe?");
  assert.equal(
    florence2RequestPrompt("more-detailed"),
    "Describe with a paragraph what is shown in the image.",
  );
  assert.equal(florence2RequestPrompt("caption", "<OCR>"), "What is the text in the image?");
});
