import assert from "node:assert/strict";
import { heunCorrect, HeunDiscreteScheduler } from "./heun.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("heunCorrect() averages the two derivatives", () => {
  assert.deepEqual(
    Array.from(
      heunCorrect(new Float32Array([1]), new Float32Array([1]), new Float32Array([3]), -0.5),
    ),
    [0],
  );
});

Deno.test("HeunDiscreteScheduler repeats inner timesteps and reaches sigma 0", () => {
  const s = new HeunDiscreteScheduler(SD15);
  s.setTimesteps(3);
  assert.deepEqual(Array.from(s.timesteps), [999, 499.5, 499.5, 0, 0]);
  assert.equal(s.sigmas.length, 6);
  assert.equal(s.sigmas.at(-1), 0);
  const r = s.img2imgTimesteps(4, 0.5);
  assert.equal(r.startIndex, 4);
  assert.equal(r.timesteps.length, s.timesteps.length - 4);
});

Deno.test("HeunDiscreteScheduler is exact for a model whose denoised estimate is 0", () => {
  // eps = x / sigma makes denoised = x - sigma * eps = 0, so dx/dsigma = 1 and x tracks sigma.
  const s = new HeunDiscreteScheduler(SD15);
  s.setTimesteps(4);
  let x: Float32Array = new Float32Array([s.sigmas[0]!]);
  for (let i = 0; i < s.timesteps.length; i++) {
    x = s.step(new Float32Array([x[0]! / s.sigmas[i]!]), i, x);
    if (i === 1) assert.ok(Math.abs(x[0]! - s.sigmas[1]!) < 1e-5, `after one step ${x[0]}`);
  }
  assert.ok(Math.abs(x[0]!) < 1e-6, `final ${x[0]}`);
});
