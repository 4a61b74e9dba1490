import assert from "node:assert/strict";
import { ddpmPosteriorMean, DDPMScheduler } from "./ddpm.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("ddpmPosteriorMean() returns x0 when a_prev = 1", () => {
  const out = ddpmPosteriorMean(new Float32Array([0.25]), new Float32Array([3]), 0.5, 1);
  assert.ok(Math.abs(out[0]! - 0.25) < 1e-7);
});

Deno.test("DDPMScheduler adds noise except at t = 0", () => {
  const s = new DDPMScheduler({ ...SD15, clip_sample: false });
  s.setTimesteps(4);
  const x = new Float32Array(16).fill(0.5);
  assert.throws(() => s.step(new Float32Array(16), 0, x), TypeError);
  const last = new DDPMScheduler({ ...SD15, clip_sample: false, steps_offset: 0 });
  last.setTimesteps(4);
  assert.equal(last.timesteps[3], 0);
  const y = last.step(new Float32Array(16), 3, x);
  assert.ok(Math.abs(y[0]! - 0.5 / Math.sqrt(last.alphasCumprod[0]!)) < 1e-5);
  assert.ok(s.step(new Float32Array(16), 0, x, new TorchCpuGenerator(0)).every(Number.isFinite));
  assert.throws(() => new DDPMScheduler({ variance_type: "learned" }), RangeError);
});
