import assert from "node:assert/strict";
import { fixText } from "./fix_text.ts";

// Expected values are what ftfy 6.1.1's fix_text() returns for the same input (run locally).
const cases: Array<[string, string]> = [
  ["\u201c\ufb01ne\u201d &amp; \uff37\uff29\uff24\uff25", '"fine" & WIDE'],
  ["a &lt; b\nc &amp; d", "a < b\nc & d"],
  ["x\r\ny\u2028z\x85", "x\ny\nz\u2026"],
  ["\x1b[1;31mred\x1b[0m", "red"],
  ["a\x00b\ufeffc\u200bd", "abc\u200bd"],
  ["\x93smart\x94 \x80", '"smart" \u20ac'],
  ["e\u0301", "\u00e9"],
  ["\uff76\uff9e", "\u30ac"],
  ["&#x1F600; &#150; &#0; &#1; &#xD800; &#12abc;", "\u{1F600} \u2013 \ufffd  \ufffd &#12abc;"],
  ["A\u3000B", "A B"],
  ["&amp;amp; &EACUTE; &NOTIN; &nbsp;", "& \u00c9 \u2209 \u00a0"],
  ["it\u2019s \u02bcok\u02bc", "it's 'ok'"],
];

Deno.test("fixText() matches ftfy 6.1.1 fix_text on prompts with entities, quotes, widths", () => {
  for (const [input, want] of cases) {
    assert.equal(fixText(input), want, `fixText(${JSON.stringify(input)})`);
  }
});

Deno.test("fixText() stops unescaping HTML from the first line with a literal '<' on", () => {
  // ftfy's unescape_html="auto" turns itself off for the rest of the text, not just one line.
  assert.equal(fixText("&amp;\n<b> &amp;\n&amp;"), "&\n<b> &amp;\n&amp;");
  assert.equal(fixText("&lt;tag&gt;"), "<tag>");
});

Deno.test("fixText() leaves mojibake alone (ftfy's fix_encoding is not implemented)", () => {
  // ftfy would return "café"; documented gap.
  assert.equal(fixText("caf\u00c3\u00a9"), "caf\u00c3\u00a9");
});
