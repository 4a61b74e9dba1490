/**
 * Text-side benchmarks: tokenising a 1,000-word prompt (warm BPE cache) and parsing a long
 * A1111 prompt. Run with `deno bench -A bench/text_bench.ts`. The tokenizer needs the CLIP
 * vocabulary in ../shared/data/clip/ and is skipped without it.
 */
import { existsSync } from "node:fs";
import { ClipTokenizer } from "../lib/tokenizer/mod.ts";
import {
  parsePrompt,
  parsePromptAttention,
  planConditioning,
  promptSchedules,
} from "../lib/prompt/mod.ts";
import { hasShared, sharedPath } from "../tests/shared.ts";

const clipDir = sharedPath("data/clip");
const tokenizer = hasShared && existsSync(clipDir)
  ? await ClipTokenizer.fromDirectory(clipDir)
  : undefined;

const words = ("a highly detailed matte painting of a majestic ancient castle on a cliff above a " +
  "stormy sea dramatic lighting volumetric clouds golden hour cinematic composition").split(" ");
const thousandWords = Array.from({ length: 1000 }, (_, i) => words[(i * 7) % words.length]).join(
  " ",
);
tokenizer?.encode(thousandWords); // warm the BPE cache, as a long-running process would be

const piece = "(masterpiece:1.2), [best|high] quality, a [red:blue:0.4] fox in ((snow)), " +
  "[[blurry]], <lora:detail:0.6> \\(literal\\) BREAK golden hour:1.1 AND ";
const longPrompt = piece.repeat(20) + "sunset";

Deno.bench({
  name: "tokenize a 1,000-word prompt (warm cache)",
  ignore: tokenizer === undefined,
  fn() {
    tokenizer?.encode(thousandWords);
  },
});

Deno.bench("parsePromptAttention on a 2,700-character A1111 prompt", () => {
  parsePromptAttention(longPrompt);
});

Deno.bench("promptSchedules on a 2,700-character A1111 prompt, 30 steps", () => {
  promptSchedules(longPrompt, 30);
});

Deno.bench("parsePrompt (strict) on a 2,700-character A1111 prompt", () => {
  parsePrompt(longPrompt);
});

Deno.bench({
  name: "planConditioning for that prompt, 30 steps",
  ignore: tokenizer === undefined,
  fn() {
    if (tokenizer) {
      planConditioning({ prompt: longPrompt, negative: "blurry", steps: 30 }, tokenizer);
    }
  },
});
