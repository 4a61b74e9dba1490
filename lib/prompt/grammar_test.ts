import assert from "node:assert/strict";
import fc from "fast-check";
import { parsePromptAttention } from "./attention.ts";
import { parseComposite } from "./composite.ts";
import { MAX_NESTING, nodesToText, parseBrackets } from "./grammar.ts";
import { extractNetworks } from "./networks.ts";
import { parsePrompt } from "./parse_prompt.ts";
import { promptSchedules } from "./schedule.ts";

// Prompts made of the characters that matter to the grammar, plus any unicode text.
const promptText = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."()[]:|\\<>, aAND BREAK1.5\n".split("")), maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 30 }),
  fc.string({ unit: "binary", maxLength: 30 }),
);

Deno.test("A1111-compatible prompt functions never throw on random text", () => {
  fc.assert(
    fc.property(promptText, fc.integer({ min: 1, max: 30 }), (text, steps) => {
      parsePromptAttention(text);
      parseComposite(text);
      extractNetworks(text);
      const schedule = promptSchedules(text, steps);
      assert.ok(schedule.length >= 1 && schedule.at(-1)?.[0] === steps);
    }),
    { numRuns: 1500 },
  );
});

Deno.test("parsePrompt() throws nothing but SyntaxError on random text", () => {
  fc.assert(
    fc.property(promptText, (text) => {
      try {
        parsePrompt(text);
      } catch (err) {
        if (!(err instanceof SyntaxError)) throw err;
        assert.match(err.message, /column \d+/);
      }
    }),
    { numRuns: 1500 },
  );
});

// Backslash-escape every character the grammar treats specially.
const escape = (text: string) => text.replace(/[\\()[\]]/g, (c) => `\\${c}`);

Deno.test("escaped text round-trips through the attention parser and schedules", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (raw) => {
      // BREAK, AND and ":" are not escapable in A1111; keep them out of the literal.
      fc.pre(!/BREAK|AND|:|\|/.test(raw));
      const escaped = escape(raw);
      const pairs = parsePromptAttention(escaped);
      assert.equal(pairs.map(([t]) => t).join(""), raw);
      assert.ok(pairs.every(([, w]) => w === 1));
      assert.deepEqual(promptSchedules(escaped, 5), [[5, escaped]]);
      const strict = parseBrackets(escaped, "strict");
      assert.ok(strict.ok);
      if (strict.ok) assert.equal(nodesToText(strict.nodes), escaped);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("parseBrackets() builds emphasis, schedule and alternation nodes", () => {
  const parsed = parseBrackets("a (b:1.2) [c:d:0.5] [e|f] [g]", "strict");
  assert.ok(parsed.ok);
  if (!parsed.ok) return;
  const types = parsed.nodes.filter((n) => n.type !== "text").map((n) => n.type);
  assert.deepEqual(types, ["emphasis", "scheduled", "alternate", "emphasis"]);
  assert.equal(nodesToText(parsed.nodes), "a (b:1.2) [c:d:0.5] [e|f] [g]");
  const tolerant = parseBrackets("a ] [b", "tolerant");
  assert.ok(tolerant.ok);
  assert.equal(parseBrackets("a ] [b", "strict").ok, false);
});

Deno.test("parsePrompt() reports the column of the first bracket error", () => {
  const cases: Array<[string, RegExp]> = [
    ["a (cat", /column 7: unexpected end of prompt \(a bracket is not closed\)/],
    ["a cat)", /column 6: unexpected "\)"/],
    ["<lora:x:1> a | b", /column 14: unexpected "\|" outside \[a\|b\] alternation/],
    ["x AND (y", /column 9/],
    ["ok\n[bad", /line 2, column 5/],
    ["end\\", /column 4: unexpected "\\" \(a backslash must escape a character\)/],
  ];
  for (const [text, want] of cases) {
    assert.throws(() => parsePrompt(text), (err: unknown) => {
      assert.ok(err instanceof SyntaxError, `${JSON.stringify(text)} threw ${err}`);
      assert.match(err.message, want);
      return true;
    });
  }
  const ok = parsePrompt("style: anime, (cat:1.2) <lora:x:0.5> AND [a|b]:0.7");
  assert.deepEqual(ok.parts.map((p) => p.weight), [1, 0.7]);
  assert.equal(ok.networks[0]?.name, "x");
});

Deno.test("parseBrackets() refuses nesting deeper than MAX_NESTING instead of overflowing the stack", () => {
  const deep = "(".repeat(MAX_NESTING + 1) + "x" + ")".repeat(MAX_NESTING + 1);
  for (const mode of ["tolerant", "strict"] as const) {
    const r = parseBrackets(deep, mode);
    assert.ok(
      !r.ok && r.error.offset === MAX_NESTING && /nest deeper than 200/.test(r.error.message),
    );
    assert.ok(parseBrackets("(".repeat(MAX_NESTING) + "x" + ")".repeat(MAX_NESTING), mode).ok);
  }
  // 50,000 levels: a stack overflow (RangeError: Maximum call stack size exceeded) before.
  const huge = "[a:".repeat(50_000) + "x" + "]".repeat(50_000);
  assert.throws(
    () => parsePrompt(huge),
    (e: unknown) => e instanceof SyntaxError && /column 601/.test(String(e)),
  );
  assert.deepEqual(promptSchedules(huge, 20), [[20, huge]]);
  // Escaped brackets do not count.
  assert.ok(parseBrackets("\\(".repeat(1000), "strict").ok);
});
