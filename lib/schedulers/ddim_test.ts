import assert from "node:assert/strict";
import { DDIMScheduler, integerTimesteps, predictOriginalAndNoise } from "./ddim.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("integerTimesteps() rounds linspace and offsets leading like Diffusers", () => {
  assert.deepEqual(Array.from(integerTimesteps("linspace", 1000, 3, 0)), [999, 500, 0]);
  assert.deepEqual(Array.from(integerTimesteps("leading", 1000, 3, 1)), [667, 334, 1]);
  assert.deepEqual(Array.from(integerTimesteps("trailing", 1000, 3, 0)), [999, 666, 332]);
});

Deno.test("predictOriginalAndNoise() inverts x = sqrt(a) x0 + sqrt(1 - a) eps", () => {
  const a = 0.36;
  const x0 = 0.5;
  const eps = -1.25;
  const x = new Float32Array([0.6 * x0 + 0.8 * eps]);
  for (
    const [type, out] of [["epsilon", eps], ["sample", x0], [
      "v_prediction",
      0.6 * eps - 0.8 * x0,
    ]] as const
  ) {
    const p = predictOriginalAndNoise(type, new Float32Array([out]), x, a);
    assert.ok(Math.abs(p.x0[0]! - x0) < 1e-5 && Math.abs(p.eps[0]! - eps) < 1e-5, type);
  }
});

Deno.test("DDIMScheduler with eta = 0 is deterministic and eta > 0 needs a generator", () => {
  const s = new DDIMScheduler(SD15);
  s.setTimesteps(10);
  const x = new Float32Array(16).fill(0.5);
  assert.deepEqual(s.step(new Float32Array(16), 0, x), s.step(new Float32Array(16), 0, x));
  const e = new DDIMScheduler({ ...SD15, eta: 1 });
  e.setTimesteps(10);
  assert.throws(() => e.step(new Float32Array(16), 0, x), TypeError);
  const y = e.step(new Float32Array(16), 0, x, new TorchCpuGenerator(0));
  assert.notDeepEqual(y, s.step(new Float32Array(16), 0, x));
});

Deno.test("DDIMScheduler clips x0 when clip_sample is on (its class default)", () => {
  const s = new DDIMScheduler({
    beta_schedule: "scaled_linear",
    beta_start: 0.00085,
    beta_end: 0.012,
  });
  s.setTimesteps(2);
  const out = s.step(new Float32Array([0]), 1, new Float32Array([100]));
  // Final step to alpha_bar = 1 (set_alpha_to_one): returns the clipped x0 = 1.
  assert.ok(Math.abs(out[0]! - 1) < 1e-6, `${out[0]}`);
});
