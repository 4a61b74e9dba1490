/**
 * transformers 4.30's logits processors and warpers (`generation/logits_process.py`) on one row
 * of scores, in place: repetition penalty, no-repeat n-grams, minimum lengths, forced first
 * (BOS) and last (EOS) tokens, temperature, top-k and top-p. {@linkcode processScores} applies the processors in the order of
 * `GenerationMixin._get_logits_processor`, {@linkcode warpScores} the sampling warpers in the
 * order of `_get_logits_warper`.
 *
 * @module
 */
import type { GenerationConfig } from "./generation_config.ts";

/** `RepetitionPenaltyLogitsProcessor`: scores of tokens in `sequence` / p (or * p if < 0). */
export function applyRepetitionPenalty(
  scores: Float32Array,
  sequence: readonly number[],
  penalty: number,
): void {
  for (const t of new Set(sequence)) {
    const s = scores[t]!;
    scores[t] = s < 0 ? s * penalty : s / penalty;
  }
}

/**
 * `NoRepeatNGramLogitsProcessor`: bans every token that would repeat an n-gram of `sequence`
 * (prompt included, as transformers passes the whole `input_ids`).
 */
export function banRepeatedNgrams(scores: Float32Array, sequence: readonly number[], n: number) {
  const len = sequence.length;
  if (n === 0 || len + 1 < n) return;
  // The n-1 tokens the next token would complete an n-gram with.
  const tail = sequence.slice(len + 1 - n);
  for (let i = 0; i + n <= len; i++) {
    let same = true;
    for (let j = 0; j < n - 1 && same; j++) same = sequence[i + j] === tail[j];
    if (same) scores[sequence[i + n - 1]!] = -Infinity;
  }
}

/** `MinLengthLogitsProcessor` / `MinNewTokensLengthLogitsProcessor`: bans the end tokens. */
export function banEnd(scores: Float32Array, eosTokenIds: readonly number[]): void {
  for (const t of eosTokenIds) scores[t] = -Infinity;
}

/**
 * `ForcedBOSTokenLogitsProcessor` / `ForcedEOSTokenLogitsProcessor`: every score but `token`'s
 * becomes -inf, `token`'s becomes 0.
 */
export function forceToken(scores: Float32Array, token: number): void {
  if (!Number.isInteger(token) || token < 0 || token >= scores.length) {
    throw new RangeError(
      `Cannot force token ${token}: the vocabulary has ${scores.length} tokens; fix the ` +
        `generation config's forced_bos_token_id / forced_eos_token_id`,
    );
  }
  scores.fill(-Infinity);
  scores[token] = 0;
}

/** What the processors need: the config, the end tokens and the lengths. */
export interface ProcessContext {
  /** The resolved generation config. */
  config: GenerationConfig;
  /** End-of-sequence ids (banned below the minimum lengths). */
  eosTokenIds: readonly number[];
  /** Prompt length (for `minNewTokens`). */
  promptLength: number;
  /** The length generation stops at, prompt included (for `forcedEosTokenId`). */
  maxLength?: number;
}

/**
 * The logits processors a config asks for, in transformers' order: repetition penalty,
 * no-repeat n-grams, minimum length, minimum new tokens, forced BOS (when the sequence holds one
 * token), forced EOS (when one token is left before `maxLength`). `scores` is one row (raw logits for
 * greedy search and sampling, log-probabilities for beam search); `sequence` is that row so far.
 *
 * @example
 * ```ts
 * import { GENERATION_DEFAULTS } from "./generation_config.ts";
 * import { processScores } from "./logits_processors.ts";
 * const scores = Float32Array.of(1, 2, 3);
 * processScores(scores, [0, 2, 0], {
 *   config: { ...GENERATION_DEFAULTS, noRepeatNgramSize: 2 },
 *   eosTokenIds: [1],
 *   promptLength: 1,
 * });
 * console.assert(scores[2] === -Infinity);
 * ```
 */
export function processScores(
  scores: Float32Array,
  sequence: readonly number[],
  context: ProcessContext,
): void {
  const config = context.config;
  if (config.repetitionPenalty !== 1) {
    applyRepetitionPenalty(scores, sequence, config.repetitionPenalty);
  }
  if (config.noRepeatNgramSize > 0) banRepeatedNgrams(scores, sequence, config.noRepeatNgramSize);
  if (config.minLength > 0 && sequence.length < config.minLength) {
    banEnd(scores, context.eosTokenIds);
  }
  if (
    config.minNewTokens !== null && config.minNewTokens > 0 &&
    sequence.length - context.promptLength < config.minNewTokens
  ) {
    banEnd(scores, context.eosTokenIds);
  }
  if (config.forcedBosTokenId !== null && sequence.length === 1) {
    forceToken(scores, config.forcedBosTokenId);
  }
  if (
    config.forcedEosTokenId !== null && context.maxLength !== undefined &&
    sequence.length === context.maxLength - 1
  ) {
    forceToken(scores, config.forcedEosTokenId);
  }
}

/** `TopKLogitsWarper`: -inf below the k-th largest score (ties with it are kept). */
export function keepTopK(scores: Float32Array, k: number, minTokensToKeep = 1): void {
  const keep = Math.min(Math.max(k, minTokensToKeep), scores.length);
  const sorted = Float32Array.from(scores).sort();
  const threshold = sorted[sorted.length - keep]!;
  for (let i = 0; i < scores.length; i++) if (scores[i]! < threshold) scores[i] = -Infinity;
}

/**
 * `TopPLogitsWarper`: sorts ascending, removes the tokens whose cumulative probability is at
 * most `1 - p`, always keeping the `minTokensToKeep` most likely.
 */
export function keepTopP(scores: Float32Array, p: number, minTokensToKeep = 1): void {
  const order = Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]!);
  const max = scores[order[order.length - 1]!]!;
  let sum = 0;
  for (const i of order) sum += Math.exp(scores[i]! - max);
  let cumulative = 0;
  const removeLimit = order.length - minTokensToKeep;
  for (let rank = 0; rank < order.length; rank++) {
    const i = order[rank]!;
    cumulative += Math.exp(scores[i]! - max) / sum;
    if (rank < removeLimit && cumulative <= 1 - p) scores[i] = -Infinity;
  }
}

/**
 * The sampling warpers a config asks for, in transformers' order: temperature, top-k, top-p.
 *
 * @example
 * ```ts
 * import { GENERATION_DEFAULTS } from "./generation_config.ts";
 * import { warpScores } from "./logits_processors.ts";
 * const scores = Float32Array.of(1, 2, 3);
 * warpScores(scores, { ...GENERATION_DEFAULTS, topK: 2 });
 * console.assert(scores[0] === -Infinity && scores[2] === 3);
 * ```
 */
export function warpScores(scores: Float32Array, config: GenerationConfig): void {
  if (config.temperature !== 1) {
    for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / config.temperature;
  }
  if (config.topK !== 0) keepTopK(scores, config.topK);
  if (config.topP < 1) keepTopP(scores, config.topP);
}
