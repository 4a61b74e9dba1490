import assert from "node:assert/strict";
import { interleaveSigmas, KDPM2DiscreteScheduler, logMidpoint32 } from "./kdpm2.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("logMidpoint32() is the geometric mean", () => {
  assert.ok(Math.abs(logMidpoint32(4, 1) - 2) < 1e-6);
  assert.deepEqual(Array.from(interleaveSigmas([3, 2, 1])), [3, 2, 2, 1, 1, 1]);
});

Deno.test("KDPM2DiscreteScheduler interleaves midpoint timesteps", () => {
  const s = new KDPM2DiscreteScheduler(SD15);
  s.setTimesteps(4);
  assert.equal(s.timesteps.length, 7);
  assert.equal(s.order, 2);
  for (let k = 1; k < 7; k++) assert.ok(s.timesteps[k]! < s.timesteps[k - 1]!, `${s.timesteps}`);
  // Karras timesteps are rounded like Diffusers'.
  const k = new KDPM2DiscreteScheduler({ ...SD15, use_karras_sigmas: true });
  k.setTimesteps(4);
  for (let j = 0; j < 7; j += 2) assert.ok(Number.isInteger(k.timesteps[j]!));
});
