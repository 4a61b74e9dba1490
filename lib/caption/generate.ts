/**
 * Picks the search transformers 4.30 `generate` would pick for a config: beam search when
 * `numBeams > 1`, sampling when `doSample`, else greedy search.
 *
 * @module
 */
import { beamSearch } from "./beam_search.ts";
import { greedySearch, sampleSearch } from "./greedy_search.ts";
import type { SearchResult, SearchSetup } from "./search.ts";
import type { TokenScorer } from "./token_scorer.ts";

/** The search a config selects. */
export type SearchMode = "greedy" | "beam" | "sample";

/** The search `setup.config` selects. */
export function searchMode(setup: SearchSetup): SearchMode {
  if (setup.config.numBeams > 1) return "beam";
  return setup.config.doSample ? "sample" : "greedy";
}

/**
 * Generates one sequence per prompt with the search the config selects.
 *
 * @example
 * ```ts
 * import { GENERATION_DEFAULTS } from "./generation_config.ts";
 * import { generate } from "./generate.ts";
 * import { functionScorer } from "./token_scorer.ts";
 * const scorer = functionScorer(3, (seq) => seq.length < 3 ? [0, 1, 0] : [0, 0, 1]);
 * const setup = { config: GENERATION_DEFAULTS, eosTokenIds: [2], padTokenId: 0 };
 * const { sequences } = await generate(scorer, [[0], [0]], setup);
 * console.assert(sequences.length === 2 && sequences[1]!.join() === "0,1,1,2");
 * ```
 */
export function generate(
  scorer: TokenScorer,
  prompts: readonly (readonly number[])[],
  setup: SearchSetup,
): Promise<SearchResult> {
  switch (searchMode(setup)) {
    case "beam":
      return beamSearch(scorer, prompts, setup);
    case "sample":
      return sampleSearch(scorer, prompts, setup);
    case "greedy":
      return greedySearch(scorer, prompts, setup);
  }
}
