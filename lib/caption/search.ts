/**
 * What the three search algorithms share: their setup (config and special tokens), their result,
 * and the length rules of transformers 4.30 `generate` (`max_new_tokens` counts generated tokens
 * only; otherwise `max_length` counts the prompt too; at least one token is always generated).
 *
 * @module
 */
import type { GenerationConfig } from "./generation_config.ts";

/** Inputs of a search besides the scorer and the prompts. */
export interface SearchSetup {
  /** The resolved generation config. */
  config: GenerationConfig;
  /** Tokens that end a sequence (BLIP: `[SEP]`). */
  eosTokenIds: readonly number[];
  /** Token appended to finished rows while others go on. */
  padTokenId: number;
  /** Keep the processed scores of every step (transformers' `output_scores`). */
  keepScores?: boolean;
  /**
   * Sampling only: a seed per prompt (row of the prompts); each row draws from its own
   * generator, so a row's result does not depend on the rest of the batch.
   */
  seeds?: readonly number[];
}

/** What a search returns. */
export interface SearchResult {
  /**
   * One sequence per prompt, prompt included, ending with the end token when one was made
   * (nothing after it).
   */
  sequences: number[][];
  /**
   * With `keepScores`: per step, the processed scores `[rows * vocab]` that chose the tokens
   * (greedy/sampling: one row per prompt; beam search: one per beam).
   */
  scores: Float32Array[];
  /**
   * Beam search only: each result's score, `sum_logprobs / length ** length_penalty`
   * (transformers' `sequences_scores`).
   */
  sequenceScores?: number[];
}

/** The length (prompt included) at which generation stops. */
export function stopLength(config: GenerationConfig, promptLength: number): number {
  return config.maxNewTokens !== null ? promptLength + config.maxNewTokens : config.maxLength;
}

/** The common length of `prompts`; throws when they differ (rows are never padded). */
export function promptLength(prompts: readonly (readonly number[])[]): number {
  const first = prompts[0];
  if (first === undefined || first.length === 0) {
    throw new RangeError("Cannot generate: pass at least one non-empty prompt");
  }
  if (prompts.some((p) => p.length !== first.length)) {
    throw new RangeError(
      "Cannot generate from prompts of different lengths (rows are not padded); " +
        "generate them in separate batches",
    );
  }
  return first.length;
}

/** `sequence` cut after its first end token at or past `from`. */
export function cutAtEnd(
  sequence: readonly number[],
  eosTokenIds: readonly number[],
  from: number,
): number[] {
  for (let i = from; i < sequence.length; i++) {
    if (eosTokenIds.includes(sequence[i]!)) return sequence.slice(0, i + 1);
  }
  return [...sequence];
}

/** Index of the largest value of `row` (the first one on ties, as torch.argmax). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}
