import assert from "node:assert/strict";
import { PNDMScheduler } from "./pndm.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("PNDMScheduler timesteps with and without Runge-Kutta warm-up", () => {
  const plms = new PNDMScheduler({ ...SD15, skip_prk_steps: true });
  plms.setTimesteps(4);
  assert.deepEqual(Array.from(plms.timesteps), [751, 501, 501, 251, 1]);
  const prk = new PNDMScheduler(SD15);
  prk.setTimesteps(10);
  // 12 PRK timesteps (with half steps) over the 4 highest, then PLMS on the other 7
  // (checked against numpy running the Diffusers expression).
  assert.equal(prk.timesteps.length, 12 + 7);
  assert.deepEqual(Array.from(prk.timesteps.slice(0, 4)), [901, 851, 851, 801]);
  let x: Float32Array = new Float32Array(4).fill(1);
  for (let i = 0; i < prk.timesteps.length; i++) {
    x = prk.step(x.map((v) => 0.1 * v), i, x);
  }
  assert.ok(x.every(Number.isFinite));
});
