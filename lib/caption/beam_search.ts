/**
 * Beam search as transformers 4.30 does it (`GenerationMixin.beam_search` with
 * `BeamSearchScorer` and `BeamHypotheses`, generation/beam_search.py):
 *
 * - every prompt is expanded to `numBeams` rows (image-major, like `repeat_interleave`); beams
 *   after the first start at -1e9 so the first step picks distinct tokens;
 * - each step adds the processed log-softmax of each row to its beam score and keeps the
 *   `2 * numBeams` best (beam, token) pairs per prompt; an end token among the first
 *   `numBeams` of them closes a hypothesis scored `sum_logprobs / length ** length_penalty`
 *   (length = the tokens before the end token, prompt included), other pairs fill the beams;
 * - a prompt is done when it has `numBeams` hypotheses and `early_stopping` says so (`true`:
 *   at once; `false`: when the best running score divided by `cur_len ** length_penalty`
 *   cannot beat the worst hypothesis, with `cur_len` the length before this step's token, as
 *   4.30 computes it; `"never"`: with `max_length` when the penalty is positive);
 * - at the length limit, open beams are added as hypotheses and the best hypothesis wins (the
 *   end token is appended to hypotheses that ended with one).
 *
 * Scores are summed in float64 (transformers sums float32); only near-exact ties can differ.
 *
 * @module
 */
import { processScores } from "./logits_processors.ts";
import { promptLength, type SearchResult, type SearchSetup, stopLength } from "./search.ts";
import type { TokenScorer } from "./token_scorer.ts";

interface Hypothesis {
  score: number;
  tokens: number[];
  /** Ended with an end token (appended in the result). */
  ended: boolean;
}

/** `BeamHypotheses`: the best `numBeams` finished hypotheses of one prompt. */
class Hypotheses {
  readonly beams: Hypothesis[] = [];
  #worst = 1e9;
  readonly #numBeams: number;
  readonly #lengthPenalty: number;
  readonly #earlyStopping: boolean | "never";
  readonly #maxLength: number;

  constructor(numBeams: number, lengthPenalty: number, early: boolean | "never", max: number) {
    this.#numBeams = numBeams;
    this.#lengthPenalty = lengthPenalty;
    this.#earlyStopping = early;
    this.#maxLength = max;
  }

  add(tokens: number[], sumLogprobs: number, ended: boolean): void {
    const score = sumLogprobs / tokens.length ** this.#lengthPenalty;
    if (this.beams.length < this.#numBeams || score > this.#worst) {
      this.beams.push({ score, tokens, ended });
      if (this.beams.length > this.#numBeams) {
        // sorted([(s, idx)]): by score, then by insertion index.
        const order = this.beams.map((b, i) => ({ s: b.score, i }))
          .sort((a, b) => a.s - b.s || a.i - b.i);
        this.beams.splice(order[0]!.i, 1);
        this.#worst = order[1]!.s;
      } else {
        this.#worst = Math.min(score, this.#worst);
      }
    }
  }

  isDone(bestSumLogprobs: number, curLen: number): boolean {
    if (this.beams.length < this.#numBeams) return false;
    if (this.#earlyStopping === true) return true;
    const length = this.#earlyStopping === "never" && this.#lengthPenalty > 0
      ? this.#maxLength
      : curLen;
    return this.#worst >= bestSumLogprobs / length ** this.#lengthPenalty;
  }

  /** The best hypothesis (the last added among equal scores, as Python's stable sort + pop). */
  best(): Hypothesis {
    let best = this.beams[0]!;
    for (const b of this.beams) if (b.score >= best.score) best = b;
    return best;
  }
}

/** log_softmax of one row, in place. */
function logSoftmax(row: Float32Array): void {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const logSum = Math.log(sum) + max;
  for (let i = 0; i < row.length; i++) row[i] = row[i]! - logSum;
}

interface Pair {
  score: number;
  beam: number;
  token: number;
}

/** The `n` best (beam, token) pairs of prompt `b`, best first. */
function topPairs(
  logProbs: Float32Array,
  beamScores: Float64Array,
  b: number,
  K: number,
  V: number,
  n: number,
): Pair[] {
  const top: Pair[] = [];
  for (let j = 0; j < K; j++) {
    const r = b * K + j;
    const base = beamScores[r]!;
    for (let t = 0; t < V; t++) {
      const score = logProbs[r * V + t]! + base;
      // Strictly better than the current n-th: equal scores keep the earlier pair.
      if (top.length === n && !(score > top[n - 1]!.score)) continue;
      let i = top.length === n ? n - 1 : top.length;
      while (i > 0 && score > top[i - 1]!.score) i--;
      top.splice(i, 0, { score, beam: j, token: t });
      if (top.length > n) top.pop();
    }
  }
  return top;
}

/**
 * Beam search with `setup.config.numBeams` beams per prompt. Returns the best hypothesis per
 * prompt.
 *
 * @example
 * ```ts
 * import { GENERATION_DEFAULTS } from "./generation_config.ts";
 * import { beamSearch } from "./beam_search.ts";
 * import { functionScorer } from "./token_scorer.ts";
 * const scorer = functionScorer(3, (seq) => seq.length < 3 ? [0, 1, 0] : [0, 0, 5]);
 * const config = { ...GENERATION_DEFAULTS, numBeams: 2 };
 * const { sequences } = await beamSearch(scorer, [[0]], { config, eosTokenIds: [2], padTokenId: 0 });
 * console.assert(sequences[0]!.join() === "0,1,1,2");
 * ```
 */
export async function beamSearch(
  scorer: TokenScorer,
  prompts: readonly (readonly number[])[],
  setup: SearchSetup,
): Promise<SearchResult> {
  const { config, eosTokenIds, padTokenId } = setup;
  const K = config.numBeams;
  const V = scorer.vocabSize;
  const start = promptLength(prompts);
  const maxLength = stopLength(config, start);
  const batch = prompts.length;
  const hyps = prompts.map(() =>
    new Hypotheses(K, config.lengthPenalty, config.earlyStopping, maxLength)
  );
  const done = new Array<boolean>(batch).fill(false);
  // 1. Rows: K copies of each prompt; beam scores 0 for the first beam, -1e9 for the others.
  let sequences = prompts.flatMap((p) => Array.from({ length: K }, () => [...p]));
  let beamScores = Float64Array.from(sequences, (_, r) => (r % K === 0 ? 0 : -1e9));
  let parents = sequences.map((_, r) => r);
  const context = { config, eosTokenIds, promptLength: start, maxLength };
  const scores: Float32Array[] = [];
  while (true) {
    // 2. Score: log-softmax, processors, plus the beam's running score.
    const logits = await scorer.next(sequences, parents);
    const curLen = sequences[0]!.length;
    for (let r = 0; r < batch * K; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      logSoftmax(row);
      processScores(row, sequences[r]!, context);
    }
    if (setup.keepScores) scores.push(Float32Array.from(logits));
    const nextSequences: number[][] = [];
    const nextScores = new Float64Array(batch * K);
    const nextParents: number[] = [];
    for (let b = 0; b < batch; b++) {
      if (done[b]) {
        // A finished prompt's rows only carry pad tokens.
        for (let j = 0; j < K; j++) {
          nextSequences.push([...sequences[b * K]!, padTokenId]);
          nextParents.push(b * K);
        }
        continue;
      }
      // 3. The 2K best (beam, token) pairs of this prompt, best first (torch.topk over the
      // K * V flattened scores; equal scores keep the lower flat index first).
      const top = topPairs(logits, beamScores, b, K, V, 2 * K);
      // 4. BeamSearchScorer.process: end tokens close hypotheses, the rest fill the beams.
      let filled = 0;
      for (let rank = 0; rank < top.length && filled < K; rank++) {
        const { score, beam, token } = top[rank]!;
        const r = b * K + beam;
        if (eosTokenIds.includes(token)) {
          if (rank >= K) continue;
          hyps[b]!.add([...sequences[r]!], score, true);
        } else {
          nextSequences.push([...sequences[r]!, token]);
          nextScores[b * K + filled] = score;
          nextParents.push(r);
          filled++;
        }
      }
      if (filled < K) {
        throw new RangeError(
          `Beam search found fewer than ${K} continuations (vocabulary or bans too tight); ` +
            "use fewer beams",
        );
      }
      const best = top[0]!.score;
      done[b] = hyps[b]!.isDone(best, curLen);
    }
    sequences = nextSequences;
    beamScores = nextScores;
    parents = nextParents;
    if (!done.includes(false) || sequences[0]!.length >= maxLength) break;
  }
  // 5. finalize: open beams of unfinished prompts become hypotheses; the best one wins.
  const out: number[][] = [];
  const sequenceScores: number[] = [];
  for (let b = 0; b < batch; b++) {
    if (!done[b]) {
      for (let j = 0; j < K; j++) {
        hyps[b]!.add(sequences[b * K + j]!, beamScores[b * K + j]!, false);
      }
    }
    const best = hyps[b]!.best();
    out.push(best.ended ? [...best.tokens, eosTokenIds[0]!] : best.tokens);
    sequenceScores.push(best.score);
  }
  return { sequences: out, scores, sequenceScores };
}
