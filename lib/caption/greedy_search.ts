/**
 * Greedy search and multinomial sampling, as transformers 4.30 `GenerationMixin.greedy_search`
 * and `.sample`: each step scores every row, applies the logits processors (and for sampling
 * the warpers), then takes the most likely token or draws one. Finished rows get the pad token
 * until every row is finished or the length limit is reached.
 *
 * Sampling draws with a seeded Mersenne Twister per row (inverse CDF over the softmax in
 * float64), so a seed reproduces a caption; it does not reproduce torch.multinomial's draws.
 *
 * @module
 */
import { Mt19937 } from "../rng/mt19937.ts";
import { processScores, warpScores } from "./logits_processors.ts";
import {
  argmax,
  cutAtEnd,
  promptLength,
  type SearchResult,
  type SearchSetup,
  stopLength,
} from "./search.ts";
import type { TokenScorer } from "./token_scorer.ts";

/** A uniform double in [0, 1) with 53 random bits from two draws. */
function uniform(rng: Mt19937): number {
  const a = rng.nextUint32() >>> 5;
  const b = rng.nextUint32() >>> 6;
  return (a * 67108864 + b) / 9007199254740992;
}

/** Draws an index with probability softmax(scores) (scores of -inf are never drawn). */
function drawFromScores(scores: Float32Array, u: number): number {
  let max = -Infinity;
  for (const s of scores) max = Math.max(max, s);
  let sum = 0;
  for (const s of scores) sum += Math.exp(s - max);
  const target = u * sum;
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < scores.length; i++) {
    const w = Math.exp(scores[i]! - max);
    if (w === 0) continue;
    last = i;
    cumulative += w;
    if (target < cumulative) return i;
  }
  return last;
}

async function search(
  scorer: TokenScorer,
  prompts: readonly (readonly number[])[],
  setup: SearchSetup,
  sample: boolean,
): Promise<SearchResult> {
  const { config, eosTokenIds, padTokenId } = setup;
  const V = scorer.vocabSize;
  const start = promptLength(prompts);
  const maxLength = stopLength(config, start);
  const rows = prompts.length;
  let rngs: Mt19937[] = [];
  if (sample) {
    const seeds = setup.seeds;
    if (seeds === undefined || seeds.length !== rows) {
      throw new RangeError(`Cannot sample: pass one seed per prompt (${rows})`);
    }
    rngs = seeds.map((s) => new Mt19937(s));
  }
  const sequences = prompts.map((p) => [...p]);
  const unfinished = new Array<boolean>(rows).fill(true);
  const parents = Array.from({ length: rows }, (_, r) => r);
  const context = { config, eosTokenIds, promptLength: start, maxLength };
  const scores: Float32Array[] = [];
  while (true) {
    const logits = await scorer.next(sequences, parents);
    for (let r = 0; r < rows; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      processScores(row, sequences[r]!, context);
      let token: number;
      if (sample) {
        warpScores(row, config);
        token = drawFromScores(row, uniform(rngs[r]!));
      } else {
        token = argmax(row);
      }
      if (!unfinished[r]) token = padTokenId;
      sequences[r]!.push(token);
      if (eosTokenIds.includes(token)) unfinished[r] = false;
    }
    if (setup.keepScores) scores.push(logits);
    if (!unfinished.includes(true) || sequences[0]!.length >= maxLength) break;
  }
  return { sequences: sequences.map((s) => cutAtEnd(s, eosTokenIds, start)), scores };
}

/**
 * Greedy search: the most likely token at every step.
 *
 * @example
 * ```ts
 * import { GENERATION_DEFAULTS } from "./generation_config.ts";
 * import { greedySearch } from "./greedy_search.ts";
 * import { functionScorer } from "./token_scorer.ts";
 * // Token 2 after a 1, else 1; 2 ends the sequence.
 * const scorer = functionScorer(3, (seq) => seq.at(-1) === 1 ? [0, 0, 1] : [0, 1, 0]);
 * const { sequences } = await greedySearch(scorer, [[0]],
 *   { config: GENERATION_DEFAULTS, eosTokenIds: [2], padTokenId: 0 });
 * console.assert(sequences[0]!.join() === "0,1,2");
 * ```
 */
export function greedySearch(
  scorer: TokenScorer,
  prompts: readonly (readonly number[])[],
  setup: SearchSetup,
): Promise<SearchResult> {
  return search(scorer, prompts, setup, false);
}

/**
 * Multinomial sampling after the config's processors and warpers (temperature, top-k, top-p),
 * one seeded generator per row (`setup.seeds`).
 *
 * @example
 * ```ts
 * import { GENERATION_DEFAULTS } from "./generation_config.ts";
 * import { sampleSearch } from "./greedy_search.ts";
 * import { functionScorer } from "./token_scorer.ts";
 * const scorer = functionScorer(3, () => [0, 0, 0]);
 * const config = { ...GENERATION_DEFAULTS, doSample: true, maxNewTokens: 4 };
 * const a = await sampleSearch(scorer, [[0]], { config, eosTokenIds: [], padTokenId: 0, seeds: [7] });
 * const b = await sampleSearch(scorer, [[0]], { config, eosTokenIds: [], padTokenId: 0, seeds: [7] });
 * console.assert(a.sequences[0]!.join() === b.sequences[0]!.join());
 * ```
 */
export function sampleSearch(
  scorer: TokenScorer,
  prompts: readonly (readonly number[])[],
  setup: SearchSetup,
): Promise<SearchResult> {
  return search(scorer, prompts, setup, true);
}
