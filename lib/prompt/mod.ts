/**
 * The AUTOMATIC1111 prompt language and the conditioning plan: prompt string in, token ids,
 * weights and per-step variants out. The A1111-compatible functions reproduce
 * modules/prompt_parser.py and accept any text; {@linkcode parsePrompt} is the strict parser.
 *
 * @example
 * ```ts
 * import { parsePromptAttention, promptSchedules } from "./mod.ts";
 * parsePromptAttention("a (red:1.2) fox"); // [["a ", 1], ["red", 1.2], [" fox", 1]]
 * promptSchedules("a [cat:dog:0.5]", 10); // [[5, "a cat"], [10, "a dog"]]
 * ```
 *
 * @module
 */
export { type AttentionPair, parsePromptAttention } from "./attention.ts";
export { type CompositePart, parseComposite } from "./composite.ts";
export { applyEmphasis, EMPHASIS_MODES, type EmphasisMode } from "./emphasis.ts";
export { nodesToText, parseBrackets, type PromptNode } from "./grammar.ts";
export type { BracketError, BracketParse } from "./grammar.ts";
export {
  type ExtractedNetworks,
  extractNetworks,
  type ExtraNetwork,
  type LoraMultipliers,
  loraMultipliers,
} from "./networks.ts";
export { type ParsedPart, type ParsedPrompt, parsePrompt } from "./parse_prompt.ts";
export {
  CHUNK_TOKENS,
  type ConditioningPlan,
  type ConditioningPlanOptions,
  planConditioning,
  type PlannedChunk,
  type PlannedStep,
  type PlannedVariant,
  type PlanPrompts,
  type PromptSyntax,
} from "./plan.ts";
export { type PromptScheduleOptions, promptSchedules } from "./schedule.ts";
