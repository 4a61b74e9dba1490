/**
 * Python's `float(str)` for the number syntaxes A1111 prompts use, so weights read the same way.
 *
 * @module
 */
import { asciiDigits, pyStrip } from "../tokenizer/python_re.ts";

const DIGITS = String.raw`\d(?:_?\d)*`;
const FLOAT_RE = new RegExp(
  `^[+-]?(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?$`,
);

/**
 * The value Python's `float(text)` gives, or undefined where it raises ValueError. Accepts
 * surrounding whitespace, Unicode decimal digits, `_` between digits, exponents, `inf`, `nan`.
 */
export function pythonFloat(text: string): number | undefined {
  const s = asciiDigits(pyStrip(text));
  if (FLOAT_RE.test(s)) return Number(s.replaceAll("_", ""));
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(s);
  if (special === null) return undefined;
  if ((special[2] as string).toLowerCase() === "nan") return NaN;
  return special[1] === "-" ? -Infinity : Infinity;
}
