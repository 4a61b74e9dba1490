import assert from "node:assert/strict";
import { parseComposite } from "./composite.ts";

Deno.test("parseComposite() splits AND and weights like A1111's get_multicond_prompt_list", () => {
  assert.deepEqual(parseComposite("a cat AND a dog :1.5"), [
    { text: "a cat", weight: 1 },
    { text: " a dog", weight: 1.5 },
  ]);
  assert.deepEqual(parseComposite("a:0.5 AND b: -.25"), [
    { text: "a", weight: 0.5 },
    { text: " b", weight: -0.25 },
  ]);
  // Only the upper-case whole word splits; "ANDROID" and "and" do not.
  assert.deepEqual(parseComposite("ANDROID and ANDé"), [{ text: "ANDROID and ANDé", weight: 1 }]);
  assert.deepEqual(parseComposite("AND"), [{ text: "", weight: 1 }, { text: "", weight: 1 }]);
  // A weight needs a number right after the colon; "(x:1.2)" stays in the text.
  assert.deepEqual(parseComposite("(x:1.2)"), [{ text: "(x:1.2)", weight: 1 }]);
  assert.deepEqual(parseComposite("line\nnext: 2"), [{ text: "line\nnext", weight: 2 }]);
});

interface Case {
  prompt: string;
  composite: Array<[string, number]>;
}

Deno.test("parseComposite() equals A1111's output on 400 random prompts", async () => {
  const doc = JSON.parse(
    await Deno.readTextFile(new URL("./testdata/a1111_prompt_parser.json", import.meta.url)),
  ) as { cases: Case[] };
  for (const c of doc.cases) {
    const got = parseComposite(c.prompt).map((p) => [p.text, p.weight]);
    assert.deepEqual(got, c.composite, JSON.stringify(c.prompt));
  }
});
