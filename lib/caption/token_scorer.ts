/**
 * What the search algorithms (greedy, beam search, sampling) need of a model: the logits of the
 * next token after each of a batch of sequences. A model with a key/value cache keeps it behind
 * this interface; `parents` tells it which previous row each new row continues (beam search
 * reorders rows), so a cache can be gathered instead of recomputed.
 *
 * @module
 */

/** Next-token logits for a batch of growing sequences. */
export interface TokenScorer {
  /** Size of the logits of one row. */
  readonly vocabSize: number;
  /**
   * Logits `[rows * vocabSize]` of the token after each sequence. On the first call the
   * sequences are the prompts and `parents` is `[0, 1, ..., rows - 1]`; on every later call
   * row `r` is row `parents[r]` of the previous call plus exactly one token.
   */
  next(
    sequences: readonly (readonly number[])[],
    parents: readonly number[],
  ): Promise<Float32Array>;
}

/**
 * A scorer from a function of whole sequences, without a cache (tests, hand-made models).
 *
 * @example
 * ```ts
 * import { functionScorer } from "./token_scorer.ts";
 * const scorer = functionScorer(3, (seq) => [0, seq.length, 1]);
 * const logits = await scorer.next([[1], [1, 2]], [0, 1]);
 * console.assert(logits[1] === 1 && logits[4] === 2);
 * ```
 */
export function functionScorer(
  vocabSize: number,
  fn: (sequence: readonly number[]) => ArrayLike<number>,
): TokenScorer {
  return {
    vocabSize,
    next(sequences) {
      const out = new Float32Array(sequences.length * vocabSize);
      sequences.forEach((seq, r) => {
        const row = fn(seq);
        if (row.length !== vocabSize) {
          throw new TypeError(`Scorer returned ${row.length} logits, expected ${vocabSize}`);
        }
        out.set(row, r * vocabSize);
      });
      return Promise.resolve(out);
    },
  };
}
