import assert from "node:assert/strict";
import { EulerDiscreteScheduler, eulerStep } from "./euler.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("eulerStep() moves along the ODE derivative", () => {
  const out = eulerStep(new Float32Array([2, -1]), new Float32Array([0, 1]), 2, 1);
  // d = (x - D) / 2 = [1, -1]; x + d * (1 - 2) = [1, 0]
  assert.deepEqual(Array.from(out), [1, 0]);
});

Deno.test("EulerDiscreteScheduler karras sigmas span the training sigmas", () => {
  const s = new EulerDiscreteScheduler({ ...SD15, use_karras_sigmas: true });
  s.setTimesteps(5);
  assert.equal(s.sigmas.length, 6);
  assert.ok(Math.abs(s.sigmas[0]! - 14.61465) < 1e-4, `sigma_max ${s.sigmas[0]}`);
  assert.ok(Math.abs(s.sigmas[4]! - 0.0291675) < 1e-6, `sigma_min ${s.sigmas[4]}`);
  assert.equal(s.sigmas[5], 0);
  assert.ok(Math.abs(s.timesteps[0]! - 999) < 1e-3 && Math.abs(s.timesteps[4]!) < 1e-3);
  for (let k = 1; k < 5; k++) assert.ok(s.timesteps[k]! < s.timesteps[k - 1]!);
});

Deno.test("EulerDiscreteScheduler trailing spacing and zero-SNR rescale stay finite", () => {
  const s = new EulerDiscreteScheduler({
    ...SD15,
    timestep_spacing: "trailing",
    rescale_betas_zero_snr: true,
  });
  s.setTimesteps(4);
  assert.deepEqual(Array.from(s.timesteps), [999, 749, 499, 249]);
  assert.ok(Number.isFinite(s.sigmas[0]!) && s.sigmas[0]! > 1000, `sigma_max ${s.sigmas[0]}`);
  assert.equal(s.initNoiseSigma, Math.fround(s.sigmas[0]!));
});

Deno.test("EulerDiscreteScheduler with s_churn draws noise and needs a generator", () => {
  const s = new EulerDiscreteScheduler({ ...SD15, s_churn: 1 });
  s.setTimesteps(4);
  const x = new Float32Array(16).fill(1);
  assert.throws(() => s.step(new Float32Array(16), 0, x), TypeError);
  const a = s.step(new Float32Array(16), 0, x, new TorchCpuGenerator(0));
  const plain = new EulerDiscreteScheduler(SD15);
  plain.setTimesteps(4);
  const b = plain.step(new Float32Array(16), 0, x);
  assert.notDeepEqual(Array.from(a), Array.from(b));
});

Deno.test("EulerDiscreteScheduler v_prediction uses the v denoiser", () => {
  const s = new EulerDiscreteScheduler({ ...SD15, prediction_type: "v_prediction" });
  s.setTimesteps(2);
  const sigma = s.sigmas[0]!;
  const x = new Float32Array([1]);
  // v = 0 -> denoised = x / (sigma^2 + 1); Euler to sigma_1.
  const out = s.step(new Float32Array([0]), 0, x);
  const d = (1 - 1 / (sigma * sigma + 1)) / sigma;
  const expect = 1 + d * (s.sigmas[1]! - sigma);
  assert.ok(Math.abs(out[0]! - expect) < 1e-5, `${out[0]} vs ${expect}`);
});
