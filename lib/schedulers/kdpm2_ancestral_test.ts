import assert from "node:assert/strict";
import { KDPM2AncestralDiscreteScheduler } from "./kdpm2_ancestral.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("KDPM2AncestralDiscreteScheduler draws noise on both halves of a step", () => {
  const s = new KDPM2AncestralDiscreteScheduler(SD15);
  s.setTimesteps(3);
  assert.equal(s.timesteps.length, 5);
  const x = new Float32Array(16).fill(1);
  assert.throws(() => s.step(new Float32Array(16), 0, x), TypeError);
  const g = new TorchCpuGenerator(5);
  const x1 = s.step(new Float32Array(16), 0, x, g);
  s.step(new Float32Array(16), 1, x1, g);
  // Two 16-value draws consumed: the next draw equals the third one of a fresh stream.
  const fresh = new TorchCpuGenerator(5);
  fresh.randn([16]);
  fresh.randn([16]);
  assert.deepEqual(g.randn([16]), fresh.randn([16]));
});
