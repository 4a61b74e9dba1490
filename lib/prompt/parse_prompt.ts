/**
 * Strict parsing of a whole A1111 prompt into an AST, for validation and tooling: extra-network
 * tags, AND parts and the bracket structure of each part. Unlike the A1111-compatible functions,
 * which accept anything, this reports unbalanced brackets and stray `|` or `\` as SyntaxError
 * naming the column.
 *
 * @module
 */
import { parseComposite } from "./composite.ts";
import { parseBrackets, type PromptNode } from "./grammar.ts";
import { extractNetworks, type ExtraNetwork } from "./networks.ts";

/** One AND part of a parsed prompt. */
export interface ParsedPart {
  /** The part's text (weight suffix and network tags removed). */
  text: string;
  /** Its AND weight. */
  weight: number;
  /** Its bracket structure. */
  nodes: PromptNode[];
}

/** What {@linkcode parsePrompt} returns. */
export interface ParsedPrompt {
  /** Extra-network tags, removed from the parts. */
  networks: ExtraNetwork[];
  /** The AND parts, in order. */
  parts: ParsedPart[];
}

/**
 * Parses an A1111 prompt strictly. Throws SyntaxError naming the line and column (in the
 * original text) of the first unbalanced bracket, `|` outside `[a|b]`, or dangling `\`.
 *
 * @example
 * ```ts
 * import { parsePrompt } from "./parse_prompt.ts";
 * const parsed = parsePrompt("a [cat:dog:5] <lora:x:0.5> AND b:0.5");
 * console.assert(parsed.parts.length === 2 && parsed.networks[0]?.name === "x");
 * try {
 *   parsePrompt("a (cat");
 * } catch (err) {
 *   console.assert(err instanceof SyntaxError && /column 7/.test(err.message));
 * }
 * ```
 */
export function parsePrompt(text: string): ParsedPrompt {
  const { prompt, networks } = extractNetworks(text);
  // Find errors on a copy where tags are blanked out, so columns refer to the original text.
  const masked = text.replace(/<[\p{L}\p{N}_]+:[^>]+>/gu, (tag) => " ".repeat(tag.length));
  let offset = 0;
  for (const part of masked.split(/(?<![\p{L}\p{N}_])AND(?![\p{L}\p{N}_])/u)) {
    const result = parseBrackets(part, "strict");
    if (!result.ok) {
      const at = offset + result.error.offset;
      const before = text.slice(0, at);
      const line = before.split("\n").length;
      const column = at - (before.lastIndexOf("\n") + 1) + 1;
      const where = text.includes("\n") ? `line ${line}, column ${column}` : `column ${column}`;
      throw new SyntaxError(
        `Cannot parse prompt at ${where}: ${result.error.message}; escape literal brackets as \\( \\) \\[ \\] or use plain syntax`,
      );
    }
    offset += part.length + 3;
  }
  const parts = parseComposite(prompt).map(({ text: partText, weight }) => {
    const result = parseBrackets(partText, "strict");
    return { text: partText, weight, nodes: result.ok ? result.nodes : [] };
  });
  return { networks, parts };
}
