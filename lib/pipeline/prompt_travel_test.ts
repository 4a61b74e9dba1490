import assert from "node:assert/strict";
import type { Cond, StepConditioning } from "./denoise.ts";
import { frameBlends, keyframes, travelConditioning } from "./prompt_travel.ts";

function cond(values: number[], pooled?: number[]): Cond {
  return {
    embedding: { data: Float32Array.from(values), tokens: 1, dim: values.length },
    ...(pooled ? { added: { text_embeds: Float32Array.from(pooled) } } : {}),
  };
}

function step(c: Cond, uncond = cond([0, 0])): (i: number) => StepConditioning {
  return () => ({ uncond, conds: [{ cond: c, weight: 1 }] });
}

Deno.test("frameBlends() weighs keyframes as FizzNodes' interpolate_prompt_series", () => {
  // Keyframes 2 and 6 of 9 frames: frames 0-2 hold the first, 6-8 the last.
  const b = frameBlends([2, 6], 9);
  assert.deepEqual(b.map((x) => [x.from, x.to, x.weight]), [
    [0, 0, 1],
    [0, 0, 1],
    [0, 0, 1],
    [0, 1, 0.75],
    [0, 1, 0.5],
    [0, 1, 0.25],
    [1, 1, 1],
    [1, 1, 1],
    [1, 1, 1],
  ]);
});

Deno.test("travelConditioning() blends embeddings and pooled rows linearly between keyframes", () => {
  const a = cond([0, 4], [8]);
  const b = cond([4, 0], [0]);
  const at = travelConditioning([0, 4], [step(a), step(b)], 6)(0);
  const frames = at.conds[0]!.frames;
  assert.equal(frames.length, 6);
  assert.equal(frames[0], a, "a keyframe's own conditioning, not a copy");
  assert.equal(frames[4], b);
  assert.equal(frames[5], b, "held after the last keyframe");
  assert.deepEqual([...frames[1]!.embedding.data], [1, 3]);
  assert.deepEqual([...frames[2]!.embedding.data], [2, 2]);
  assert.deepEqual([...frames[3]!.added!.text_embeds!], [2]);
  assert.equal(at.uncond.embedding.data.length, 2);
});

Deno.test("travelConditioning() refuses keyframes of different lengths or AND parts", () => {
  const long = { embedding: { data: new Float32Array(4), tokens: 2, dim: 2 } };
  assert.throws(
    () => travelConditioning([0, 2], [step(cond([1, 1])), step(long)], 3)(0),
    /encode to 1 and 2 tokens/,
  );
  const twoParts = () => ({
    uncond: cond([0, 0]),
    conds: [{ cond: cond([1, 1]), weight: 1 }, { cond: cond([2, 2]), weight: 0.5 }],
  });
  assert.throws(
    () => travelConditioning([0, 2], [step(cond([1, 1])), twoParts], 3)(0),
    /different AND parts/,
  );
});

Deno.test("keyframes() sorts frames and refuses keys past the clip or not numbers", () => {
  assert.deepEqual(keyframes({ "7": "b", "0": "a" }, 8).map((k) => k.frame), [0, 7]);
  assert.throws(() => keyframes({ "8": "b" }, 8), /frame 8, but the clip has 8 frames/);
  assert.throws(() => keyframes({ "x": "b" }, 8), /not a frame number/);
  assert.throws(() => keyframes({}, 8), /empty/);
});
