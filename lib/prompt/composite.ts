/**
 * Composable diffusion: `a AND b:0.5` as A1111's `get_multicond_prompt_list` splits it
 * (AUTOMATIC1111/stable-diffusion-webui modules/prompt_parser.py, commit 28bd8e14). Written from
 * reading that code, not copied.
 *
 * @module
 */
import { PY_SPACE, PY_WORD_END, PY_WORD_START } from "../tokenizer/python_re.ts";
import { pythonFloat } from "./python_float.ts";

/** One sub-prompt of an AND-composed prompt. */
export interface CompositePart {
  /** The sub-prompt text, weight suffix removed. */
  text: string;
  /** Its weight (1 when none is given). */
  weight: number;
}

const AND_RE = new RegExp(`${PY_WORD_START}AND${PY_WORD_END}`, "u");
const S = `[${PY_SPACE}]`;
// re_weight: lazy text, then an optional ":number", then trailing whitespace.
const WEIGHT_RE = new RegExp(
  `^([\\s\\S]*?)(?:${S}*:${S}*([-+]?(?:\\p{Nd}+\\.?|\\p{Nd}*\\.\\p{Nd}+)))?${S}*$`,
  "u",
);

/**
 * Splits a prompt at every upper-case whole-word `AND` and reads an optional `:weight` at the end
 * of each part, exactly as A1111 does (trailing whitespace dropped, leading kept). Never throws.
 *
 * @example
 * ```ts
 * import { parseComposite } from "./composite.ts";
 * const parts = parseComposite("a cat AND a dog :1.5");
 * console.assert(parts[1]?.text === " a dog" && parts[1]?.weight === 1.5);
 * ```
 */
export function parseComposite(prompt: string): CompositePart[] {
  return prompt.split(AND_RE).map((sub) => {
    const m = WEIGHT_RE.exec(sub);
    if (m === null) return { text: sub, weight: 1.0 };
    const weight = m[2] === undefined ? 1.0 : pythonFloat(m[2]) ?? 1.0;
    return { text: m[1] ?? "", weight };
  });
}
