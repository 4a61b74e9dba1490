import assert from "node:assert/strict";
import { beamSearch } from "./beam_search.ts";
import { GENERATION_DEFAULTS, type GenerationConfig } from "./generation_config.ts";
import { greedySearch } from "./greedy_search.ts";
import { functionScorer } from "./token_scorer.ts";

// Tokens: 0 start (also the pad token), 1 "A", 2 "B", 3 end, 4 "X" (a second kind of prompt).
// The scorer returns log-probabilities, so log_softmax leaves them unchanged and every beam
// score below can be worked out by hand from these tables.
const ln = Math.log;
const NEVER = -Infinity;
function table(seq: readonly number[]): number[] {
  if (seq[0] === 4) return [NEVER, ln(0.05), ln(0.05), ln(0.9), NEVER];
  const key = seq.join(",");
  if (key === "0") return [NEVER, ln(0.5), ln(0.4), ln(0.1), NEVER];
  if (key === "0,1") return [NEVER, ln(0.35), ln(0.25), ln(0.4), NEVER];
  if (key === "0,2") return [NEVER, ln(0.05), ln(0.05), ln(0.9), NEVER];
  return [NEVER, ln(0.15), ln(0.15), ln(0.7), NEVER];
}
const scorer = functionScorer(5, table);

function setup(overrides: Partial<GenerationConfig>) {
  const config = { ...GENERATION_DEFAULTS, numBeams: 2, ...overrides };
  return { config, eosTokenIds: [3], padTokenId: 0 };
}

function near(actual: number | undefined, expected: number, what: string) {
  assert.ok(
    actual !== undefined && Math.abs(actual - expected) < 1e-6,
    `${what}: ${actual} vs ${expected}`,
  );
}

Deno.test("greedySearch() on the hand-made model ends after A: [start, A, end]", async () => {
  const { sequences } = await greedySearch(scorer, [[0]], setup({ numBeams: 1 }));
  assert.deepEqual(sequences, [[0, 1, 3]]);
});

// Step 1 (beams [0] at 0 and -1e9): top pairs A -0.693, B -0.916 -> beams [0,A], [0,B].
// Step 2: top pairs (B,end) -1.022, (A,end) -1.609, (A,A) -1.743, (A,B) -2.079: the two end
//   tokens rank below 2 and close [0,B] (-1.022/2 = -0.511) and [0,A] (-1.609/2 = -0.805); the
//   beams become [0,A,A], [0,A,B]. Not done: the best pair -1.022 / cur_len 2 = -0.511 beats
//   the worst hypothesis -0.805.
// Step 3: (A,A,end) -2.100 closes [0,A,A] at -2.100/3 = -0.700 > -0.805, replacing [0,A];
//   (A,B,end) -2.436/3 = -0.812 is not better than the new worst -0.700. Done: -2.100/3 = -0.700
//   cannot beat -0.700. Best: [0,B] at -0.511, then the end token.
Deno.test("beamSearch() with 2 beams finds [start, B, end], which greedy misses", async () => {
  const result = await beamSearch(scorer, [[0]], setup({}));
  assert.deepEqual(result.sequences, [[0, 2, 3]]);
  near(result.sequenceScores?.[0], ln(0.4 * 0.9) / 2, "score");
});

// length_penalty 2 favours longer hypotheses: after step 2 the hypotheses are [0,B] -1.022/4 =
// -0.255 and [0,A] -1.609/4 = -0.402; step 3 adds [0,A,A] at -2.100/9 = -0.233 (dropping
// [0,A]); not done since -2.100/9 = -0.233 > worst -0.255; step 4's [0,A,A,A] at -3.997/16 =
// -0.250 replaces [0,B]; then done. Best: [0,A,A] at -0.233.
Deno.test("beamSearch() with length_penalty 2 prefers the longer [start, A, A, end]", async () => {
  const result = await beamSearch(scorer, [[0]], setup({ lengthPenalty: 2 }));
  assert.deepEqual(result.sequences, [[0, 1, 1, 3]]);
  near(result.sequenceScores?.[0], ln(0.5 * 0.35 * 0.7) / 9, "score");
});

// early_stopping true stops as soon as 2 hypotheses exist (after step 2): [0,B] wins at -0.255.
Deno.test("beamSearch() with early_stopping stops at the first 2 hypotheses", async () => {
  const result = await beamSearch(scorer, [[0]], setup({ lengthPenalty: 2, earlyStopping: true }));
  assert.deepEqual(result.sequences, [[0, 2, 3]]);
  near(result.sequenceScores?.[0], ln(0.4 * 0.9) / 4, "score");
});

// max_new_tokens 1: after step 1 the open beams [0,A] (-0.693/2) and [0,B] (-0.916/2) are
// finalised; the best has no end token.
Deno.test("beamSearch() finalises open beams at the length limit (no end token)", async () => {
  const result = await beamSearch(scorer, [[0]], setup({ maxNewTokens: 1 }));
  assert.deepEqual(result.sequences, [[0, 1]]);
  near(result.sequenceScores?.[0], ln(0.5) / 2, "score");
});

// Two prompts: [4] closes [4] at ln 0.9 / 1 in step 1 and is done after step 2 (its rows then
// carry pad tokens), while [0] goes on to step 3 as above.
Deno.test("beamSearch() runs prompts of a batch independently", async () => {
  const result = await beamSearch(scorer, [[0], [4]], setup({}));
  assert.deepEqual(result.sequences, [[0, 2, 3], [4, 3]]);
  near(result.sequenceScores?.[1], ln(0.9), "score of [4]");
});

Deno.test("beamSearch() gives the scorer parents that continue the previous rows", async () => {
  const seen: Array<{ sequences: number[][]; parents: number[] }> = [];
  const recording = {
    vocabSize: 5,
    next(sequences: readonly (readonly number[])[], parents: readonly number[]) {
      seen.push({ sequences: sequences.map((s) => [...s]), parents: [...parents] });
      return scorer.next(sequences, parents);
    },
  };
  await beamSearch(recording, [[0]], setup({}));
  for (let i = 1; i < seen.length; i++) {
    const { sequences, parents } = seen[i]!;
    sequences.forEach((s, r) => {
      assert.deepEqual(s.slice(0, -1), seen[i - 1]!.sequences[parents[r]!], `step ${i} row ${r}`);
    });
  }
  assert.deepEqual(seen[1]!.sequences, [[0, 1], [0, 2]]);
  assert.deepEqual(seen[2]!.sequences, [[0, 1, 1], [0, 1, 2]]);
});
