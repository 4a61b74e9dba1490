/**
 * Lenient JSON for metadata: ComfyUI (Python's json.dumps) writes bare NaN and Infinity, which
 * JSON.parse rejects. Those tokens outside strings become null, with a note saying so.
 *
 * @module
 */

/** Result of {@linkcode parseJsonText}. */
export type JsonTextResult =
  | { ok: true; value: unknown; note?: string }
  | { ok: false; error: string };

const NON_FINITE = /"(?:\\.|[^"\\])*"|(-?\bInfinity\b|\bNaN\b)/g;

/**
 * Parses JSON, falling back to replacing bare NaN/Infinity with null. Never throws.
 *
 * @example
 * ```ts
 * import { parseJsonText } from "./json_text.ts";
 * const r = parseJsonText('{"a": NaN, "b": "NaN"}');
 * console.assert(r.ok && JSON.stringify(r.value) === '{"a":null,"b":"NaN"}');
 * ```
 */
export function parseJsonText(text: string): JsonTextResult {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    let replaced = 0;
    const fixed = text.replace(NON_FINITE, (whole, bare: string | undefined) => {
      if (bare === undefined) return whole;
      replaced++;
      return "null";
    });
    if (replaced > 0) {
      try {
        return {
          ok: true,
          value: JSON.parse(fixed),
          note: `${replaced} bare NaN/Infinity values read as null`,
        };
      } catch {
        // fall through to the original error
      }
    }
    return { ok: false, error: message };
  }
}

/** True when the text looks like a JSON object or array (worth trying to parse). */
export function looksLikeJson(text: string): boolean {
  const t = text.trimStart();
  return t.startsWith("{") || t.startsWith("[");
}
