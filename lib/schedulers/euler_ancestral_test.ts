import assert from "node:assert/strict";
import { ancestralSigmas, EulerAncestralDiscreteScheduler } from "./euler_ancestral.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};

Deno.test("ancestralSigmas() splits sigma_to^2 into down^2 + up^2", () => {
  const { sigmaUp, sigmaDown } = ancestralSigmas(2, 1);
  assert.ok(Math.abs(sigmaUp * sigmaUp + sigmaDown * sigmaDown - 1) < 1e-6);
  assert.ok(Math.abs(sigmaUp - Math.sqrt(0.75)) < 1e-6);
  assert.deepEqual(ancestralSigmas(2, 0), { sigmaUp: 0, sigmaDown: 0 });
});

Deno.test("EulerAncestralDiscreteScheduler needs a generator and follows it", () => {
  const s = new EulerAncestralDiscreteScheduler(SD15);
  s.setTimesteps(4);
  const x = new Float32Array(16).fill(1);
  assert.throws(() => s.step(new Float32Array(16), 0, x), TypeError);
  const a = s.step(new Float32Array(16), 0, x, new TorchCpuGenerator(1));
  const b = s.step(new Float32Array(16), 0, x, new TorchCpuGenerator(1));
  const c = s.step(new Float32Array(16), 0, x, new TorchCpuGenerator(2));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("EulerAncestralDiscreteScheduler ignores use_karras_sigmas like Diffusers 0.27", () => {
  const a = new EulerAncestralDiscreteScheduler({ ...SD15, use_karras_sigmas: true });
  const b = new EulerAncestralDiscreteScheduler(SD15);
  const c = new EulerAncestralDiscreteScheduler({ ...SD15, sigma_schedule: "karras" });
  for (const s of [a, b, c]) s.setTimesteps(6);
  assert.deepEqual(a.sigmas, b.sigmas);
  assert.notDeepEqual(c.sigmas, b.sigmas);
});
