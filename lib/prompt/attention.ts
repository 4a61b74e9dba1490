/**
 * A1111's attention (emphasis) syntax: `(a)` x1.1, `[a]` /1.1, `(a:1.3)`, escapes and BREAK,
 * with the exact results of `parse_prompt_attention` in AUTOMATIC1111/stable-diffusion-webui
 * modules/prompt_parser.py (commit 28bd8e142d5f77b71ae8d7d7140b5da1b3a49906). Written from
 * reading that code, not copied; the float arithmetic is done in the same order so weights are
 * bit-identical (1.5730000000000004, not 1.573).
 *
 * @module
 */
import { asciiDigits, PY_SPACE, PY_WORD_END, PY_WORD_START } from "../tokenizer/python_re.ts";
import { MAX_NESTING } from "./grammar.ts";

/** One `[text, weight]` pair; BREAK is `["BREAK", -1]`. */
export type AttentionPair = [string, number];

const S = `[${PY_SPACE}]`;
// The alternatives of A1111's re_attention, in its order. Python's \d is any Unicode digit.
const ATTENTION_RE = new RegExp(
  [
    String.raw`\\\(`,
    String.raw`\\\)`,
    String.raw`\\\[`,
    String.raw`\\\]`,
    String.raw`\\\\`,
    String.raw`\\`,
    String.raw`\(`,
    String.raw`\[`,
    String.raw`:${S}*([+\-]?[.\p{Nd}]+)${S}*\)`,
    String.raw`\)`,
    String.raw`\]`,
    String.raw`[^\\()\[\]:]+`,
    ":",
  ].join("|"),
  "gu",
);

const BREAK_RE = new RegExp(`${S}*${PY_WORD_START}BREAK${PY_WORD_END}${S}*`, "gu");

// Python's float() for what `[+-]?[.\d]+` can match; undefined where float() would raise.
function pythonFloat(text: string): number | undefined {
  const ascii = asciiDigits(text);
  if (!/^[+-]?(?:\d+\.?\d*|\.\d+)$/.test(ascii)) return undefined;
  return Number(ascii);
}

/**
 * Splits a prompt into `[text, weight]` pairs like A1111's `parse_prompt_attention`: `(x)`
 * multiplies by 1.1, `[x]` divides by 1.1, `(x:w)` multiplies by w, `\(` `\)` `\[` `\]` `\\`
 * are literal, unclosed brackets apply to the end, neighbours with equal weights are merged and
 * BREAK (a whole word, upper case) becomes `["BREAK", -1]`. Two deviations: where A1111 raises
 * ValueError on a weight such as `(a:1.2.3)`, the `:1.2.3)` is kept as text; and more than
 * {@linkcode MAX_NESTING} brackets open at once throw a RangeError (A1111's time grows with
 * the square of the nesting, and its schedule parser gives up on such prompts first).
 *
 * @example
 * ```ts
 * import { parsePromptAttention } from "./attention.ts";
 * console.assert(
 *   JSON.stringify(parsePromptAttention("an (important) word")) ===
 *     JSON.stringify([["an ", 1], ["important", 1.1], [" word", 1]]),
 * );
 * ```
 */
export function parsePromptAttention(text: string): AttentionPair[] {
  const res: AttentionPair[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyRange = (start: number, multiplier: number) => {
    for (let p = start; p < res.length; p++) (res[p] as AttentionPair)[1] *= multiplier;
  };
  const pushText = (part: string) => {
    const pieces = part.split(BREAK_RE);
    pieces.forEach((piece, i) => {
      if (i > 0) res.push(["BREAK", -1]);
      res.push([piece, 1.0]);
    });
  };

  for (const m of text.matchAll(ATTENTION_RE)) {
    const token = m[0];
    const weightText = m[1];
    if (token.startsWith("\\")) {
      res.push([token.slice(1), 1.0]);
    } else if (token === "(" || token === "[") {
      (token === "(" ? round : square).push(res.length);
      if (round.length + square.length > MAX_NESTING) {
        throw new RangeError(
          `Cannot read the prompt's emphasis: more than ${MAX_NESTING} brackets are open at ` +
            `offset ${m.index}`,
        );
      }
    } else if (weightText !== undefined && round.length > 0) {
      const weight = pythonFloat(weightText);
      if (weight === undefined) pushText(token);
      else multiplyRange(round.pop() as number, weight);
    } else if (token === ")" && round.length > 0) {
      multiplyRange(round.pop() as number, 1.1);
    } else if (token === "]" && square.length > 0) {
      multiplyRange(square.pop() as number, 1 / 1.1);
    } else {
      pushText(token);
    }
  }
  for (const pos of round) multiplyRange(pos, 1.1);
  for (const pos of square) multiplyRange(pos, 1 / 1.1);
  if (res.length === 0) res.push(["", 1.0]);

  // Merge runs of identical weights (A1111 splices them pairwise; one pass gives the same).
  const merged: AttentionPair[] = [];
  for (const pair of res) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last[1] === pair[1]) last[0] += pair[0];
    else merged.push(pair);
  }
  return merged;
}
