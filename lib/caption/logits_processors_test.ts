import assert from "node:assert/strict";
import {
  applyRepetitionPenalty,
  banRepeatedNgrams,
  keepTopK,
  keepTopP,
  processScores,
  warpScores,
} from "./logits_processors.ts";
import { GENERATION_DEFAULTS } from "./generation_config.ts";

Deno.test("applyRepetitionPenalty() divides positive and multiplies negative scores (CTRL)", () => {
  const s = Float32Array.of(2, -2, 4);
  applyRepetitionPenalty(s, [0, 1, 1], 2);
  assert.deepEqual([...s], [1, -4, 4]);
});

Deno.test("banRepeatedNgrams() bans completions of n-grams already in the sequence", () => {
  const s = new Float32Array(5);
  // trigrams of [1,2,3,1,2]: (1,2,3), (2,3,1), (3,1,2); the tail (1,2) was followed by 3.
  banRepeatedNgrams(s, [1, 2, 3, 1, 2], 3);
  assert.deepEqual([...s], [0, 0, 0, -Infinity, 0]);
  const short = new Float32Array(5);
  banRepeatedNgrams(short, [1], 3);
  assert.deepEqual([...short], [0, 0, 0, 0, 0]);
});

Deno.test("keepTopK() keeps the k best and ties with the k-th", () => {
  const s = Float32Array.of(1, 3, 2, 3, 0);
  keepTopK(s, 2);
  assert.deepEqual([...s], [-Infinity, 3, -Infinity, 3, -Infinity]);
  const t = Float32Array.of(1, 3, 2, 2, 0);
  keepTopK(t, 2);
  assert.deepEqual([...t], [-Infinity, 3, 2, 2, -Infinity]);
});

Deno.test("keepTopP() keeps the smallest set reaching p (transformers' cumulative rule)", () => {
  // probabilities 0.1, 0.2, 0.3, 0.4 (ascending sort): cumulative 0.1, 0.3, 0.6, 1.0;
  // top_p 0.7 removes cumulative <= 0.3: tokens 0 and 1.
  const s = Float32Array.from([0.1, 0.2, 0.3, 0.4], Math.log);
  keepTopP(s, 0.7);
  assert.deepEqual([...s].map((v) => v === -Infinity), [true, true, false, false]);
  // Tiny p still keeps the best token.
  const t = Float32Array.from([0.1, 0.2, 0.3, 0.4], Math.log);
  keepTopP(t, 1e-9);
  assert.deepEqual([...t].map((v) => v === -Infinity), [true, true, true, false]);
});

Deno.test("warpScores() applies temperature before top-k", () => {
  const s = Float32Array.of(1, 2, 4);
  warpScores(s, { ...GENERATION_DEFAULTS, temperature: 2, topK: 2 });
  assert.deepEqual([...s], [-Infinity, 1, 2]);
});

Deno.test("processScores() forces BOS after one token and EOS one before max length", () => {
  const config = { ...GENERATION_DEFAULTS, forcedBosTokenId: 0, forcedEosTokenId: 2 };
  const context = { config, eosTokenIds: [2], promptLength: 1, maxLength: 5 };
  const first = Float32Array.of(3, 1, 2, 4);
  processScores(first, [2], context);
  assert.deepEqual([...first], [0, -Infinity, -Infinity, -Infinity]);
  const middle = Float32Array.of(3, 1, 2, 4);
  processScores(middle, [2, 0, 3], context);
  assert.deepEqual([...middle], [3, 1, 2, 4]);
  const last = Float32Array.of(3, 1, 2, 4);
  processScores(last, [2, 0, 3, 3], context);
  assert.deepEqual([...last], [-Infinity, -Infinity, 0, -Infinity]);
  assert.throws(() => processScores(new Float32Array(2), [2, 0, 3, 3], context), /force token 2/);
});
