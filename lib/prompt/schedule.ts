/**
 * Prompt editing and alternation over sampling steps: A1111's
 * `get_learned_conditioning_prompt_schedules` for one prompt (AUTOMATIC1111/stable-diffusion-webui
 * modules/prompt_parser.py, commit 28bd8e142d5f77b71ae8d7d7140b5da1b3a49906). Written from
 * reading that code, not copied; the parse itself is the chevrotain grammar in grammar.ts.
 *
 * @module
 */
import { parseBrackets, type PromptNode } from "./grammar.ts";

/** Options for {@linkcode promptSchedules}. */
export interface PromptScheduleOptions {
  /**
   * Steps of a hires-fix second pass. When given (and not `useOldScheduling`), schedules are
   * for that pass: integer `when` values count from the end of the first pass and fractional
   * ones from 1.0, as A1111 does.
   */
  hiresSteps?: number;
  /** A1111's "use old prompt editing timelines": `when` < 1 is a fraction, else a step. */
  useOldScheduling?: boolean;
}

function resolveWhen(
  when: string,
  steps: number,
  intOffset: number,
  floatOffset: number,
  old: boolean,
): number {
  let v = Number(when);
  if (old) v = v < 1 ? v * steps : v;
  else if (when.includes(".")) v = (v - floatOffset) * steps;
  else v = v - intOffset;
  // min(steps, int(v)); int() truncates toward zero.
  return Math.min(steps, Math.trunc(v));
}

function collectSteps(
  nodes: readonly PromptNode[],
  steps: number,
  whenOf: (when: string) => number,
  out: Set<number>,
): void {
  for (const node of nodes) {
    if (node.type === "emphasis") {
      collectSteps(node.children, steps, whenOf, out);
      if (node.weight) collectSteps(node.weight, steps, whenOf, out);
    } else if (node.type === "scheduled") {
      const when = whenOf(node.when);
      if (when >= 1) out.add(when);
      if (node.from) collectSteps(node.from, steps, whenOf, out);
      collectSteps(node.to, steps, whenOf, out);
    } else if (node.type === "alternate") {
      for (let s = 1; s <= steps; s++) out.add(s);
      for (const option of node.options) collectSteps(option, steps, whenOf, out);
    }
  }
}

function textAtStep(
  nodes: readonly PromptNode[],
  step: number,
  whenOf: (when: string) => number,
): string {
  let out = "";
  for (const node of nodes) {
    switch (node.type) {
      case "text":
      case "stray":
        out += node.text;
        break;
      case "emphasis":
        if (node.bracket === "[") out += `[${textAtStep(node.children, step, whenOf)}]`;
        else {
          out += `(${textAtStep(node.children, step, whenOf)}`;
          if (node.weight) out += `:${textAtStep(node.weight, step, whenOf)}`;
          out += ")";
        }
        break;
      case "scheduled":
        if (step <= whenOf(node.when)) {
          if (node.from) out += textAtStep(node.from, step, whenOf);
        } else {
          out += textAtStep(node.to, step, whenOf);
        }
        break;
      case "alternate": {
        const option = node.options[(step - 1) % node.options.length] ?? [];
        out += textAtStep(option, step, whenOf);
        break;
      }
    }
  }
  return out;
}

/**
 * The prompt text for each range of steps, as `[endAtStep, text]` pairs in step order: A1111's
 * `get_learned_conditioning_prompt_schedules([prompt], steps)[0]`. `[from:to:when]` switches
 * after step `when` (a number with a "." is a fraction of `steps`), `[a|b]` alternates every
 * step. Text A1111 cannot parse comes back whole as `[[steps, prompt]]`. Never throws.
 *
 * A sampler at 0-based step index `i` uses the first entry with `i <= endAtStep`, as A1111's
 * `reconstruct_cond_batch` does.
 *
 * @example
 * ```ts
 * import { promptSchedules } from "./schedule.ts";
 * console.assert(
 *   JSON.stringify(promptSchedules("a [b:3]", 10)) === JSON.stringify([[3, "a "], [10, "a b"]]),
 * );
 * ```
 */
export function promptSchedules(
  prompt: string,
  steps: number,
  options: PromptScheduleOptions = {},
): Array<[number, string]> {
  const base = options.useOldScheduling === true || options.hiresSteps === undefined;
  const intOffset = base ? 0 : steps;
  const floatOffset = base ? 0 : 1;
  const total = base ? steps : options.hiresSteps ?? steps;
  // A strict parse, when it succeeds, equals the tolerant one and skips its backtracking.
  const strict = parseBrackets(prompt, "strict");
  const parsed = strict.ok ? strict : parseBrackets(prompt, "tolerant");
  if (!parsed.ok) return [[total, prompt]];
  const cache = new Map<string, number>();
  const whenOf = (when: string): number => {
    let v = cache.get(when);
    if (v === undefined) {
      v = resolveWhen(when, total, intOffset, floatOffset, options.useOldScheduling === true);
      cache.set(when, v);
    }
    return v;
  };
  const stepSet = new Set<number>([total]);
  collectSteps(parsed.nodes, total, whenOf, stepSet);
  return [...stepSet].sort((a, b) => a - b).map((s) => [s, textAtStep(parsed.nodes, s, whenOf)]);
}
