import assert from "node:assert/strict";
import { lcmScalings, LCMScheduler, lcmTimesteps } from "./lcm.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("lcmTimesteps() picks from the distillation schedule", () => {
  assert.deepEqual(Array.from(lcmTimesteps("LCM", 1000, 50, 4)), [999, 759, 499, 259]);
  assert.throws(() => lcmTimesteps("LCM", 1000, 50, 51), RangeError);
});

Deno.test("lcmScalings() tends to c_skip = 0, c_out = 1 at large t", () => {
  const { cSkip, cOut } = lcmScalings(999, 10);
  assert.ok(cSkip < 1e-6 && Math.abs(cOut - 1) < 1e-6);
  assert.deepEqual(lcmScalings(0, 10), { cSkip: 1, cOut: 0 });
});

Deno.test("LCMScheduler re-noises between steps but not after the last", () => {
  const s = new LCMScheduler(SD15);
  s.setTimesteps(2);
  const x = new Float32Array(16).fill(1);
  assert.throws(() => s.step(new Float32Array(16), 0, x), TypeError);
  const a = s.step(new Float32Array(16), 1, x);
  assert.ok(a.every(Number.isFinite));
  assert.ok(s.step(new Float32Array(16), 0, x, new TorchCpuGenerator(0)).every(Number.isFinite));
});
