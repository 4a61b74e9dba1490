import assert from "node:assert/strict";
import { lmsCoefficient, LMSDiscreteScheduler, lmsStep } from "./lms.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("lmsCoefficient() integrates the Lagrange basis exactly", () => {
  const sigmas = [4, 3, 2, 1, 0];
  // Order 1: the integral of 1 from sigma_i to sigma_{i+1}.
  assert.ok(Math.abs(lmsCoefficient(sigmas, 1, 2, 0) - -1) < 1e-12);
  // Order 2 at i = 1: basis through (3, 4): integral over [3, 2] of (tau - 4) / (3 - 4) = -1.5.
  assert.ok(Math.abs(lmsCoefficient(sigmas, 2, 1, 0) - -1.5) < 1e-12);
  assert.ok(Math.abs(lmsCoefficient(sigmas, 2, 1, 1) - 0.5) < 1e-12);
});

Deno.test("lmsStep() adds the weighted derivatives", () => {
  const out = lmsStep(new Float32Array([1]), [new Float32Array([2]), new Float32Array([4])], [
    0.5,
    0.25,
  ]);
  assert.deepEqual(Array.from(out), [3]);
});

Deno.test("LMSDiscreteScheduler with karras keeps float64 timesteps and resets history", () => {
  const s = new LMSDiscreteScheduler({ ...SD15, use_karras_sigmas: true });
  s.setTimesteps(4);
  assert.ok(!Number.isInteger(s.timesteps[1]!));
  const x = new Float32Array([1, 2]);
  const a = s.step(new Float32Array([0.1, 0.1]), 0, x);
  s.setTimesteps(4);
  const b = s.step(new Float32Array([0.1, 0.1]), 0, x);
  assert.deepEqual(a, b);
});
