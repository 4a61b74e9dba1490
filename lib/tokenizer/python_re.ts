/**
 * Character classes that make JavaScript regular expressions agree with Python's `re` on
 * `str` patterns. JavaScript's `\s`, `\d`, `\w` and `\b` differ from Python's: JavaScript's `\s`
 * takes U+FEFF but not U+001C..U+001F or U+0085, and its `\d`, `\w`, `\b` are ASCII-only, while
 * Python's are Unicode-aware. Code that ports a Python regex (CLIP's whitespace_clean, A1111's
 * prompt parser) builds its patterns from these.
 *
 * @module
 */

/**
 * The body of a character class (no brackets) that matches what Python's `\s` matches: exactly
 * the characters for which `str.isspace()` is true.
 */
export const PY_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029" +
  "\\u202f\\u205f\\u3000";

/**
 * The body of a character class (no brackets) for Python's Unicode `\w`: `str.isalnum()` or
 * `_`. Needs the `u` or `v` flag.
 */
export const PY_WORD = "\\p{L}\\p{N}_";

/** A lookbehind+lookahead pair that behaves like Python's `\b` before a word character. */
export const PY_WORD_START = `(?<![${PY_WORD}])`;

/** A lookahead that behaves like Python's `\b` after a word character. */
export const PY_WORD_END = `(?![${PY_WORD}])`;

const spaceRun = new RegExp(`[${PY_SPACE}]+`, "gu");
const spaceEdges = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "gu");

/** Python's `text.strip()` (no argument). */
export function pyStrip(text: string): string {
  return text.replace(spaceEdges, "");
}

/** Python's `re.sub(r"\s+", " ", text).strip()`: CLIP's `whitespace_clean`. */
export function whitespaceClean(text: string): string {
  return pyStrip(text.replace(spaceRun, " "));
}

const decimalDigit = /\p{Nd}/u;

/**
 * The value of a Unicode decimal digit (category Nd), as Python's `float()` and `int()` read it,
 * or -1 for any other character. Nd digits come in runs of ten starting at zero.
 */
export function decimalValue(ch: string): number {
  const cp = ch.codePointAt(0);
  if (cp === undefined || !decimalDigit.test(ch)) return -1;
  if (cp >= 0x30 && cp <= 0x39) return cp - 0x30;
  let start = cp;
  while (start > 0 && decimalDigit.test(String.fromCodePoint(start - 1))) start--;
  return (cp - start) % 10;
}

/** Replaces every Unicode decimal digit with its ASCII digit, so `Number()` reads it like Python. */
export function asciiDigits(text: string): string {
  return text.replace(/\p{Nd}/gu, (d) => String(decimalValue(d)));
}
