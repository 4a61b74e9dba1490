import assert from "node:assert/strict";
import { a1111Label, a1111ScheduleType, resolveSampler, samplerTable } from "./names.ts";

Deno.test("resolveSampler() maps A1111 labels with and without a schedule suffix", () => {
  const k = resolveSampler("DPM++ 2M Karras");
  assert.equal(k.sampler, "dpm++2m");
  assert.equal(k.schedule, "karras");
  assert.equal(k.diffusersClass, "DPMSolverMultistepScheduler");
  assert.equal(k.configOverrides["use_karras_sigmas"], true);
  assert.equal(k.configOverrides["sigma_schedule"], "karras");
  const a = resolveSampler("Euler a");
  assert.deepEqual([a.sampler, a.schedule, a.diffusersClass], [
    "euler-a",
    "default",
    "EulerAncestralDiscreteScheduler",
  ]);
  const sde = resolveSampler("DPM++ 2M SDE", "Exponential");
  assert.equal(sde.sampler, "dpm++2m-sde");
  assert.equal(sde.schedule, "exponential");
  assert.equal(sde.configOverrides["algorithm_type"], "sde-dpmsolver++");
  assert.equal(resolveSampler("DPM2 a Karras").sampler, "dpm2-a");
  assert.equal(resolveSampler("PLMS").diffusersClass, "PNDMScheduler");
  assert.equal(resolveSampler("DPM++ 2M", "SGM Uniform").schedule, "sgm-uniform");
});

Deno.test("resolveSampler() maps denoise names and Diffusers class names", () => {
  assert.equal(resolveSampler("dpm++3m-sde").implementation, "KDpmpp3mSdeSampler");
  assert.equal(resolveSampler("euler", "karras").schedule, "karras");
  assert.equal(resolveSampler("HeunDiscreteScheduler").sampler, "heun");
  const fromConfig = resolveSampler("DPMSolverMultistepScheduler", undefined, {
    algorithm_type: "sde-dpmsolver++",
    use_karras_sigmas: true,
  });
  assert.deepEqual([fromConfig.sampler, fromConfig.schedule], ["dpm++2m-sde", "karras"]);
  assert.equal(resolveSampler("DPMSolverMultistepScheduler").sampler, "dpm++2m");
});

Deno.test("resolveSampler() rejects unknown names and schedules a sampler cannot take", () => {
  assert.throws(() => resolveSampler("Euler b"), RangeError);
  assert.throws(() => resolveSampler("ddim", "karras"), RangeError);
  assert.throws(() => resolveSampler("euler", "polyexponential"), RangeError);
});

Deno.test("a1111Label() round-trips through resolveSampler() for every row", () => {
  for (const r of samplerTable()) {
    for (const s of r.schedules) {
      const label = a1111Label(r.sampler, s);
      const type = s === "default" || s === "karras" || s === "exponential"
        ? undefined
        : a1111ScheduleType(s);
      const back = resolveSampler(label, type);
      assert.equal(back.sampler, r.sampler, label);
      assert.equal(back.schedule, s, label);
    }
  }
  assert.equal(a1111Label("dpm2-a", "karras"), "DPM2 a Karras");
});

Deno.test("samplerTable() lists all 18 denoise samplers once", () => {
  const names = samplerTable().map((r) => r.sampler);
  assert.equal(new Set(names).size, 18);
  assert.ok(names.includes("tcd") && names.includes("dpm++2s-a"));
});

Deno.test("createScheduler() builds every sampler in the table", async () => {
  const { createScheduler } = await import("./mod.ts");
  const config = { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 };
  for (const r of samplerTable()) {
    const s = createScheduler(r.sampler, config);
    s.setTimesteps(4);
    assert.ok(s.timesteps.length >= 4, r.sampler);
  }
  assert.throws(() => createScheduler("NoSuchScheduler", {}), RangeError);
});
