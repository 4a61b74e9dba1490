import assert from "node:assert/strict";
import { GENERATION_DEFAULTS, type GenerationConfig } from "./generation_config.ts";
import { greedySearch, sampleSearch } from "./greedy_search.ts";
import { functionScorer } from "./token_scorer.ts";

function setup(overrides: Partial<GenerationConfig>, seeds?: number[]) {
  return {
    config: { ...GENERATION_DEFAULTS, ...overrides },
    eosTokenIds: [3],
    padTokenId: 0,
    ...(seeds === undefined ? {} : { seeds }),
  };
}

// Always prefers token 1, then 2, then the end token 3, then 0.
const prefersOne = functionScorer(4, () => [0, 3, 2, 1]);

Deno.test("greedySearch() stops at max_length (prompt included) or max_new_tokens", async () => {
  const a = await greedySearch(prefersOne, [[0, 0]], setup({ maxLength: 5 }));
  assert.deepEqual(a.sequences, [[0, 0, 1, 1, 1]]);
  const b = await greedySearch(prefersOne, [[0, 0]], setup({ maxLength: 5, maxNewTokens: 4 }));
  assert.deepEqual(b.sequences, [[0, 0, 1, 1, 1, 1]]);
  // A prompt as long as max_length still gets one token, as in transformers.
  const c = await greedySearch(prefersOne, [[0, 0, 0]], setup({ maxLength: 2 }));
  assert.deepEqual(c.sequences, [[0, 0, 0, 1]]);
});

// [0] -> 1; [0,1] -> 1; [0,1,1]: the bigram (1,1) exists, 1 banned -> 2; [0,1,1,2] -> 1;
// [0,1,1,2,1]: (1,1) and (1,2) exist -> 1 and 2 banned -> end token.
Deno.test("greedySearch() with no_repeat_ngram_size 2 bans repeated bigrams", async () => {
  const { sequences } = await greedySearch(prefersOne, [[0]], setup({ noRepeatNgramSize: 2 }));
  assert.deepEqual(sequences, [[0, 1, 1, 2, 1, 3]]);
});

Deno.test("greedySearch() pads finished rows and cuts each result after its end token", async () => {
  // Row with prompt [2] ends at once; row [1] ends after two more tokens.
  const scorer = functionScorer(4, (seq) => {
    if (seq[0] === 2) return [0, 0, 0, 9];
    return seq.length < 3 ? [0, 9, 0, 0] : [0, 0, 0, 9];
  });
  const seen: number[][][] = [];
  const recording = {
    vocabSize: 4,
    next(sequences: readonly (readonly number[])[], parents: readonly number[]) {
      seen.push(sequences.map((s) => [...s]));
      return scorer.next(sequences, parents);
    },
  };
  const { sequences } = await greedySearch(recording, [[1], [2]], setup({}));
  assert.deepEqual(sequences, [[1, 1, 1, 3], [2, 3]]);
  assert.deepEqual(seen.at(-1), [[1, 1, 1], [2, 3, 0]]);
});

Deno.test("greedySearch() keeps min_length: the end token is banned until then", async () => {
  const endsAtOnce = functionScorer(4, () => [0, 1, 0, 5]);
  const { sequences } = await greedySearch(endsAtOnce, [[0]], setup({ minLength: 3 }));
  assert.deepEqual(sequences, [[0, 1, 1, 3]]);
  const n = await greedySearch(endsAtOnce, [[0, 0]], setup({ minNewTokens: 2 }));
  assert.deepEqual(n.sequences, [[0, 0, 1, 1, 3]]);
});

Deno.test("greedySearch() keeps each step's scores with keepScores", async () => {
  const { scores } = await greedySearch(prefersOne, [[0]], {
    ...setup({ maxNewTokens: 2 }),
    keepScores: true,
  });
  assert.equal(scores.length, 2);
  assert.deepEqual([...scores[0]!], [0, 3, 2, 1]);
});

Deno.test("sampleSearch() is reproducible per seed and row, and respects top-k", async () => {
  const flat = functionScorer(6, () => [0, 0.1, 0.2, -50, 0.3, 0.4]);
  const config = { doSample: true, maxNewTokens: 30, topK: 3 };
  const a = await sampleSearch(flat, [[0], [0]], setup(config, [1, 2]));
  const b = await sampleSearch(flat, [[0]], setup(config, [2]));
  assert.deepEqual(a.sequences[1], b.sequences[0], "row 2 alone equals row 2 in a batch");
  assert.notDeepEqual(a.sequences[0], a.sequences[1], "different seeds differ");
  for (const seq of a.sequences) {
    for (const t of seq.slice(1)) assert.ok([2, 4, 5].includes(t), `token ${t} outside top-3`);
  }
  // All three kept tokens appear over 60 draws.
  assert.deepEqual(new Set(a.sequences.flatMap((s) => s.slice(1))), new Set([2, 4, 5]));
});

Deno.test("sampleSearch() needs one seed per prompt", async () => {
  await assert.rejects(
    () => sampleSearch(prefersOne, [[0], [0]], setup({ doSample: true }, [1])),
    RangeError,
  );
});
