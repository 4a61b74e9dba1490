import assert from "node:assert/strict";
import { promptSchedules } from "./schedule.ts";

// The doctests of get_learned_conditioning_prompt_schedules in AUTOMATIC1111/stable-diffusion-webui
// modules/prompt_parser.py at commit 28bd8e142d5f77b71ae8d7d7140b5da1b3a49906, in its order.
const DOCTESTS: Array<[string, number, number | undefined, Array<[number, string]>]> = [
  ["test", 10, undefined, [[10, "test"]]],
  ["a [b:3]", 10, undefined, [[3, "a "], [10, "a b"]]],
  ["a [b: 3]", 10, undefined, [[3, "a "], [10, "a b"]]],
  ["a [[[b]]:2]", 10, undefined, [[2, "a "], [10, "a [[b]]"]]],
  ["[(a:2):3]", 10, undefined, [[3, ""], [10, "(a:2)"]]],
  ["a [b : c : 1] d", 10, undefined, [[1, "a b  d"], [10, "a  c  d"]]],
  ["a[b:[c:d:2]:1]e", 10, undefined, [[1, "abe"], [2, "ace"], [10, "ade"]]],
  ["a [unbalanced", 10, undefined, [[10, "a [unbalanced"]]],
  ["a [b:.5] c", 10, undefined, [[5, "a  c"], [10, "a b c"]]],
  // The doctest says [[5, 'a  c'], [10, 'a {b|d{ c']]; it predates alternation (PR #1733), which
  // made "|" a separator, and A1111's own code at this commit returns the whole prompt, because
  // lark cannot parse a "|" outside [a|b] (checked by running the file with lark 1.1.5). We match
  // the code, so the doctest line is kept but its stale expectation is replaced by the real one.
  ["a [{b|d{:.5] c", 10, undefined, [[10, "a [{b|d{:.5] c"]]],
  ["((a][:b:c [d:3]", 10, undefined, [[3, "((a][:b:c "], [10, "((a][:b:c d"]]],
  ["[a|(b:1.1)]", 10, undefined, [
    [1, "a"],
    [2, "(b:1.1)"],
    [3, "a"],
    [4, "(b:1.1)"],
    [5, "a"],
    [6, "(b:1.1)"],
    [7, "a"],
    [8, "(b:1.1)"],
    [9, "a"],
    [10, "(b:1.1)"],
  ]],
  ["[fe|]male", 10, undefined, [
    [1, "female"],
    [2, "male"],
    [3, "female"],
    [4, "male"],
    [5, "female"],
    [6, "male"],
    [7, "female"],
    [8, "male"],
    [9, "female"],
    [10, "male"],
  ]],
  ["[fe|||]male", 10, undefined, [
    [1, "female"],
    [2, "male"],
    [3, "male"],
    [4, "male"],
    [5, "female"],
    [6, "male"],
    [7, "male"],
    [8, "male"],
    [9, "female"],
    [10, "male"],
  ]],
  // g = lambda p: get_learned_conditioning_prompt_schedules([p], 10, 10)[0]
  ["a [b:.5] c", 10, 10, [[10, "a b c"]]],
  ["a [b:1.5] c", 10, 10, [[5, "a  c"], [10, "a b c"]]],
];

Deno.test("promptSchedules() reproduces A1111's get_learned_conditioning_prompt_schedules doctests", () => {
  for (const [prompt, steps, hires, want] of DOCTESTS) {
    const got = promptSchedules(prompt, steps, hires === undefined ? {} : { hiresSteps: hires });
    assert.deepEqual(got, want, `g(${JSON.stringify(prompt)})`);
  }
});

Deno.test("promptSchedules() matches A1111's fantasy-landscape example in prompt_parser.py", () => {
  const prompt =
    "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]" +
    "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]";
  assert.deepEqual(promptSchedules(prompt, 100), [
    [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
    [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
    [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
    [75, "fantasy landscape with a lake and an oak in background masterful"],
    [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
  ]);
});

Deno.test("promptSchedules() reads 'when' like current A1111: '.' means a fraction", () => {
  // 1.0 has a dot: 1.0 * 10 steps = 10, so the switch never happens.
  assert.deepEqual(promptSchedules("[a:b:1.0]", 10), [[10, "a"]]);
  assert.deepEqual(promptSchedules("[a:b:1]", 10), [[1, "a"], [10, "b"]]);
  assert.deepEqual(promptSchedules("[a:b:1e-1]", 10), [[10, "b"]]);
  assert.deepEqual(promptSchedules("[a:b:25]", 10), [[10, "a"]]);
  // Old timelines: < 1 is a fraction, anything else a step number.
  assert.deepEqual(promptSchedules("[a:b:1.0]", 10, { useOldScheduling: true }), [
    [1, "a"],
    [10, "b"],
  ]);
});

Deno.test("promptSchedules() returns unparsable prompts whole, like lark's fallback", () => {
  assert.deepEqual(promptSchedules("a|b [c:d:2]", 4), [[4, "a|b [c:d:2]"]]);
  assert.deepEqual(promptSchedules("end\\", 4), [[4, "end\\"]]);
  assert.deepEqual(promptSchedules("\\[c:d:2\\] [e:f:3]", 4), [
    [3, "\\[c:d:2\\] e"],
    [4, "\\[c:d:2\\] f"],
  ]);
});

interface Case {
  prompt: string;
  steps: number;
  hires_steps: number | null;
  schedules: Array<[number, string]>;
}

Deno.test("promptSchedules() equals A1111's output on 400 random prompts", async () => {
  const doc = JSON.parse(
    await Deno.readTextFile(new URL("./testdata/a1111_prompt_parser.json", import.meta.url)),
  ) as { cases: Case[] };
  for (const c of doc.cases) {
    const got = promptSchedules(
      c.prompt,
      c.steps,
      c.hires_steps === null ? {} : {
        hiresSteps: c.hires_steps,
      },
    );
    assert.deepEqual(got, c.schedules, `${JSON.stringify(c.prompt)} steps ${c.steps}`);
  }
});
