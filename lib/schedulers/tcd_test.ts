import assert from "node:assert/strict";
import { TCDScheduler } from "./tcd.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("TCDScheduler with gamma = 0 is deterministic, gamma > 0 draws noise", () => {
  const s = new TCDScheduler(SD15);
  s.setTimesteps(4);
  assert.deepEqual(Array.from(s.timesteps), [999, 759, 499, 259]);
  const x = new Float32Array(16).fill(1);
  const a = s.step(new Float32Array(16).fill(0.1), 0, x);
  const g = new TCDScheduler({ ...SD15, eta: 0.3 });
  g.setTimesteps(4);
  assert.throws(() => g.step(new Float32Array(16), 0, x), TypeError);
  const b = g.step(new Float32Array(16).fill(0.1), 0, x, new TorchCpuGenerator(0));
  assert.notDeepEqual(a, b);
  assert.throws(() => new TCDScheduler({ eta: 2 }), RangeError);
});
