import assert from "node:assert/strict";
import { parsePromptAttention } from "./attention.ts";

// The doctests of parse_prompt_attention in AUTOMATIC1111/stable-diffusion-webui
// modules/prompt_parser.py at commit 28bd8e142d5f77b71ae8d7d7140b5da1b3a49906, in its order.
const DOCTESTS: Array<[string, Array<[string, number]>]> = [
  ["normal text", [["normal text", 1.0]]],
  ["an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]],
  ["(unbalanced", [["unbalanced", 1.1]]],
  ["\\(literal\\]", [["(literal]", 1.0]]],
  ["(unnecessary)(parens)", [["unnecessaryparens", 1.1]]],
  ["a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", [
    ["a ", 1.0],
    ["house", 1.5730000000000004],
    [" ", 1.1],
    ["on", 1.0],
    [" a ", 1.1],
    ["hill", 0.55],
    [", sun, ", 1.1],
    ["sky", 1.4641000000000006],
    [".", 1.1],
  ]],
];

Deno.test("parsePromptAttention() reproduces A1111's parse_prompt_attention doctests exactly", () => {
  for (const [text, want] of DOCTESTS) {
    assert.deepEqual(parsePromptAttention(text), want, JSON.stringify(text));
  }
});

Deno.test("parsePromptAttention() marks BREAK and keeps A1111's merging quirks", () => {
  assert.deepEqual(parsePromptAttention("a cat BREAK a dog"), [
    ["a cat", 1.0],
    ["BREAK", -1],
    ["a dog", 1.0],
  ]);
  // Only a whole upper-case word; Python's \b is Unicode-aware ("éBREAK" is one word).
  assert.deepEqual(parsePromptAttention("BREAKFAST break éBREAK"), [
    ["BREAKFAST break éBREAK", 1.0],
  ]);
  // Values below checked against A1111's function. BREAK inside brackets is weighted, so the
  // plan will not treat it as a break (A1111 tokenises it as the word "break").
  assert.deepEqual(parsePromptAttention("a BREAK BREAK b"), [
    ["a", 1.0],
    ["BREAK", -1],
    ["", 1.0],
    ["BREAK", -1],
    ["b", 1.0],
  ]);
  assert.deepEqual(parsePromptAttention("(a BREAK b)"), [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]);
  assert.deepEqual(parsePromptAttention("BREAK"), [["", 1.0], ["BREAK", -1], ["", 1.0]]);
  assert.deepEqual(parsePromptAttention(""), [["", 1.0]]);
  assert.deepEqual(parsePromptAttention("(a: 1.5 )"), [["a", 1.5]]);
  assert.deepEqual(parsePromptAttention("[a]"), [["a", 1 / 1.1]]);
  // Full-width digits are digits to Python's float().
  assert.deepEqual(parsePromptAttention("(a:\uff12)"), [["a", 2]]);
  // Where A1111 raises ValueError on float("1.2.3"), the text is kept.
  assert.deepEqual(parsePromptAttention("(a:1.2.3)"), [["a:1.2.3)", 1.1]]);
});

interface Case {
  prompt: string;
  attention: Array<[string, number]>;
}

Deno.test("parsePromptAttention() equals A1111's output on 400 random prompts", async () => {
  const doc = JSON.parse(
    await Deno.readTextFile(new URL("./testdata/a1111_prompt_parser.json", import.meta.url)),
  ) as { cases: Case[] };
  for (const c of doc.cases) {
    assert.deepEqual(parsePromptAttention(c.prompt), c.attention, JSON.stringify(c.prompt));
  }
});

Deno.test("parsePromptAttention() stays fast on hostile prompts and refuses over-deep nesting", () => {
  // More than MAX_NESTING open brackets: a RangeError (quadratic time before: 7 s at 20,000).
  assert.throws(
    () => parsePromptAttention("[a:".repeat(20_000) + "x" + "]".repeat(20_000)),
    (e: unknown) =>
      e instanceof RangeError && /more than 200 brackets are open at offset 600/.test(String(e)),
  );
  assert.throws(() => parsePromptAttention("(]".repeat(300)), RangeError);
  // 100,000 escapes merge into one pair in linear time (pairwise splicing was quadratic).
  const start = performance.now();
  const pairs = parsePromptAttention("\\(".repeat(100_000));
  assert.deepEqual(pairs, [["(".repeat(100_000), 1]]);
  assert.ok(performance.now() - start < 2000, `took ${performance.now() - start} ms`);
  // At the limit, the weights are still A1111's: (x) 200 deep is 1.1^200 applied in order.
  let w = 1;
  for (let i = 0; i < 200; i++) w *= 1.1;
  assert.deepEqual(parsePromptAttention("(".repeat(200) + "x" + ")".repeat(200)), [["x", w]]);
});
