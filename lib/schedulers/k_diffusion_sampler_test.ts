/**
 * Invariants of the k-diffusion DPM-Solver++ samplers (no golden file exists for them), and
 * cross-checks against DPMSolverMultistepScheduler, whose loops are golden-verified: for >= 15
 * steps on the same karras sigmas, k-diffusion's 2M equals Diffusers' dpmsolver++ order 2, 2M SDE
 * (eta 1) equals sde-dpmsolver++ order 2 with the same noise stream, and 3M SDE (eta 0) equals
 * dpmsolver++ order 3 with Heun weighting, after mapping x_k = x_vp * sqrt(sigma^2 + 1).
 */
import assert from "node:assert/strict";
import { TorchCpuGenerator } from "../rng/mod.ts";
import type { Scheduler } from "./scheduler.ts";
import { DPMSolverMultistepScheduler } from "./dpm_solver_multistep.ts";
import { ancestralStep, KDiffusionSampler } from "./k_diffusion_sampler.ts";
import { KDpmpp2mSampler } from "./k_dpmpp_2m.ts";
import { KDpmpp2mSdeSampler } from "./k_dpmpp_2m_sde.ts";
import { KDpmpp2sAncestralSampler } from "./k_dpmpp_2s_ancestral.ts";
import { KDpmpp3mSdeSampler } from "./k_dpmpp_3m_sde.ts";
import { KDpmppSdeSampler } from "./k_dpmpp_sde.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  num_train_timesteps: 1000,
  steps_offset: 1,
};
const f = Math.fround;

function noise(seed: number, n = 64): Float32Array {
  return new TorchCpuGenerator(seed).randn([1, 4, 4, n / 16]);
}

/** eps = 0.1 x_in + 0.05 sin(sigma): a smooth fake model that depends on the noise level. */
function fakeEps(xIn: Float32Array, sigma: number): Float32Array {
  const c = f(0.05 * Math.sin(sigma));
  return xIn.map((v) => f(v * f(0.1)) + c);
}

/** Runs a full loop; `sigmaOf(i)` is the noise level of evaluation i. */
function runLoop(
  s: Scheduler,
  x0: Float32Array,
  sigmaOf: (i: number) => number,
  model: (xIn: Float32Array, sigma: number) => Float32Array,
  rng?: TorchCpuGenerator,
  onStep?: (i: number, x: Float32Array) => void,
): Float32Array {
  let x = x0;
  for (let i = 0; i < s.timesteps.length; i++) {
    const sigma = sigmaOf(i);
    x = s.step(model(s.scaleModelInput(x, i), sigma), i, x, rng);
    onStep?.(i, x);
  }
  return x;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let j = 0; j < a.length; j++) m = Math.max(m, Math.abs(a[j]! - b[j]!));
  return m;
}

function maxAbs(a: Float32Array): number {
  return a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

/** Runs the k-diffusion sampler and Diffusers' DPM-Solver on the same karras sigmas. */
function crossCheck(
  k: KDiffusionSampler,
  dpmConfig: Record<string, unknown>,
  steps: number,
  seed?: number,
): { kd: Float32Array; dpm: Float32Array } {
  const dpm = new DPMSolverMultistepScheduler({ ...SD15, use_karras_sigmas: true, ...dpmConfig });
  dpm.setTimesteps(steps);
  k.setTimesteps(steps);
  for (let j = 0; j < steps; j++) {
    assert.ok(
      Math.abs(k.sigmas[j]! - dpm.sigmas[j]!) <= 1e-6 * dpm.sigmas[j]!,
      `sigma ${j}: ${k.sigmas[j]} vs ${dpm.sigmas[j]}`,
    );
  }
  const z = noise(3);
  const s0 = dpm.sigmas[0]!;
  const xk = z.map((v) => f(v * f(Math.sqrt(s0 * s0 + 1))));
  const rng1 = seed === undefined ? undefined : new TorchCpuGenerator(seed);
  const rng2 = seed === undefined ? undefined : new TorchCpuGenerator(seed);
  const kd = runLoop(k, xk, (i) => k.evaluationSigma(i), fakeEps, rng1);
  const out = runLoop(dpm, z, (i) => dpm.sigmas[i]!, fakeEps, rng2);
  return { kd, dpm: out };
}

Deno.test("KDpmpp2mSampler matches DPMSolverMultistepScheduler (order 2) on karras sigmas for 20 steps", () => {
  const { kd, dpm } = crossCheck(new KDpmpp2mSampler({ ...SD15, use_karras_sigmas: true }), {}, 20);
  const d = maxAbsDiff(kd, dpm);
  assert.ok(d <= 1e-5 * maxAbs(dpm), `maxdiff ${d}`);
});

Deno.test("KDpmpp2mSdeSampler (eta 1) matches sde-dpmsolver++ order 2 with the same noise for 20 steps", () => {
  const { kd, dpm } = crossCheck(
    new KDpmpp2mSdeSampler({ ...SD15, use_karras_sigmas: true }),
    { algorithm_type: "sde-dpmsolver++" },
    20,
    7,
  );
  const d = maxAbsDiff(kd, dpm);
  assert.ok(d <= 1e-5 * maxAbs(dpm), `maxdiff ${d}`);
});

Deno.test("KDpmpp3mSdeSampler (eta 0) matches dpmsolver++ order 3 (heun) for 20 steps", () => {
  const { kd, dpm } = crossCheck(
    new KDpmpp3mSdeSampler({ ...SD15, use_karras_sigmas: true, eta: 0 }),
    { solver_order: 3, solver_type: "heun" },
    20,
  );
  const d = maxAbsDiff(kd, dpm);
  assert.ok(d <= 1e-5 * maxAbs(dpm), `maxdiff ${d}`);
});

Deno.test("KDpmpp2mSdeSampler with eta 0 equals KDpmpp2mSampler on the same karras sigmas within 1e-6", () => {
  for (const steps of [4, 10, 25]) {
    const a = new KDpmpp2mSdeSampler({ ...SD15, use_karras_sigmas: true, eta: 0 });
    const b = new KDpmpp2mSampler({ ...SD15, use_karras_sigmas: true });
    a.setTimesteps(steps);
    b.setTimesteps(steps);
    const x0 = noise(0).map((v) => f(v * f(a.initNoiseSigma)));
    const xa = runLoop(a, x0, (i) => a.evaluationSigma(i), fakeEps);
    const xb = runLoop(b, x0, (i) => b.evaluationSigma(i), fakeEps);
    const d = maxAbsDiff(xa, xb);
    assert.ok(d <= 1e-6 * maxAbs(xb), `${steps} steps: maxdiff ${d}`);
  }
});

Deno.test("KDpmpp3mSdeSampler reduces to the exact solution when the denoised estimate is constant", () => {
  // D(x, sigma) = c for all inputs: every divided difference vanishes and the ODE solution is
  // x(sigma) = c + (sigma / sigma_0) (x_0 - c), which the eta = 0 samplers must hit exactly.
  for (
    const make of [
      () => new KDpmpp3mSdeSampler({ ...SD15, eta: 0 }),
      () => new KDpmpp2mSdeSampler({ ...SD15, eta: 0 }),
      () => new KDpmpp2mSampler(SD15),
      () => new KDpmpp2sAncestralSampler({ ...SD15, eta: 0 }),
      () => new KDpmppSdeSampler({ ...SD15, eta: 0 }),
    ]
  ) {
    const s = make();
    s.setTimesteps(12);
    const c = 0.3;
    const x0 = noise(1).map((v) => f(v * f(s.initNoiseSigma)));
    // eps such that x - sigma * eps = c, given the scaled input x_in = x / sqrt(sigma^2 + 1)
    const model = (xIn: Float32Array, sigma: number) =>
      xIn.map((v) => f(f(f(v * f(Math.sqrt(sigma * sigma + 1))) - c) / sigma));
    const sigma0 = s.evaluationSigma(0);
    const rng = new TorchCpuGenerator(5); // 2S a draws (zero-scaled) noise even with eta 0
    runLoop(s, x0, (i) => s.evaluationSigma(i), model, rng, (i, x) => {
      const next = i + 1 < s.timesteps.length ? s.evaluationSigma(i + 1) : 0;
      for (let j = 0; j < x.length; j++) {
        const want = c + (next / sigma0) * (x0[j]! - c);
        assert.ok(
          Math.abs(x[j]! - want) <= 2e-5 * Math.max(1, Math.abs(want)),
          `${s.kind} evaluation ${i}: ${x[j]} vs ${want}`,
        );
      }
    });
  }
});

Deno.test("k-diffusion ODE samplers keep x / sigma constant when the denoiser returns 0", () => {
  for (
    const make of [
      () => new KDpmpp2mSampler({ ...SD15, use_karras_sigmas: true }),
      () => new KDpmpp2mSdeSampler({ ...SD15, eta: 0 }),
      () => new KDpmpp3mSdeSampler({ ...SD15, eta: 0 }),
      () => new KDpmpp2sAncestralSampler({ ...SD15, eta: 0 }),
      () => new KDpmppSdeSampler({ ...SD15, eta: 0 }),
    ]
  ) {
    const s = make();
    s.setTimesteps(8);
    const x0 = noise(2).map((v) => f(v * f(s.initNoiseSigma)));
    // eps = x / sigma  <=>  denoised = x - sigma * eps = 0
    const model = (xIn: Float32Array, sigma: number) =>
      xIn.map((v) => f(f(v * f(Math.sqrt(sigma * sigma + 1))) / sigma));
    const ratio0 = x0.map((v) => v / s.evaluationSigma(0));
    const n = s.timesteps.length;
    const rng = new TorchCpuGenerator(5);
    const last = runLoop(s, x0, (i) => s.evaluationSigma(i), model, rng, (i, x) => {
      if (i + 1 >= n) return;
      const sig = s.evaluationSigma(i + 1);
      for (let j = 0; j < x.length; j++) {
        assert.ok(
          // float32 residuals of D = x - sigma * eps grow with the last, large step ratio
          Math.abs(x[j]! / sig - ratio0[j]!) <= 1e-4 * Math.max(1, Math.abs(ratio0[j]!)),
          `${s.kind} evaluation ${i}: x/sigma ${x[j]! / sig} vs ${ratio0[j]}`,
        );
      }
    });
    assert.ok(maxAbs(last) < 1e-6, `${s.kind} must end at the denoised value 0`);
  }
});

Deno.test("k-diffusion stochastic samplers are deterministic given the seed and differ across seeds", () => {
  for (
    const make of [
      () => new KDpmpp2mSdeSampler(SD15),
      () => new KDpmpp3mSdeSampler(SD15),
      () => new KDpmpp2sAncestralSampler(SD15),
      () => new KDpmppSdeSampler({ ...SD15, use_karras_sigmas: true }),
    ]
  ) {
    const run = (seed: number) => {
      const s = make();
      s.setTimesteps(6);
      const x0 = noise(0).map((v) => f(v * f(s.initNoiseSigma)));
      return runLoop(s, x0, (i) => s.evaluationSigma(i), fakeEps, new TorchCpuGenerator(seed));
    };
    const a = run(11);
    assert.deepEqual(a, run(11));
    assert.ok(maxAbsDiff(a, run(12)) > 1e-3, "a different seed must change the result");
  }
});

Deno.test("k-diffusion stochastic samplers throw a TypeError without a generator", () => {
  const s = new KDpmpp2mSdeSampler(SD15);
  s.setTimesteps(4);
  const x = noise(0);
  assert.throws(() => s.step(x, 0, x), TypeError);
});

Deno.test("two-stage samplers plan two evaluations per step and one for the last", () => {
  const a = new KDpmpp2sAncestralSampler(SD15);
  a.setTimesteps(5);
  assert.equal(a.timesteps.length, 9);
  assert.equal(a.order, 2);
  // stage entries are at the log-midpoint: between the step's sigma and the next one
  for (let k = 0; k < 4; k++) {
    const mid = a.evaluationSigma(2 * k + 1);
    assert.ok(mid < a.stepSigmas[k]! && mid > 0, `midpoint ${k}`);
    assert.equal(a.sigmas[2 * k + 1], mid);
    assert.ok(a.timesteps[2 * k + 1]! < a.timesteps[2 * k]!, "model time decreases");
  }
  const sde = new KDpmppSdeSampler(SD15);
  sde.setTimesteps(5);
  assert.equal(sde.timesteps.length, 9);
  const m = sde.evaluationSigma(1);
  // DPM-Solver++ SDE's midpoint is the geometric mean of sigma_i and sigma_{i+1}
  const g = Math.sqrt(sde.stepSigmas[0]! * sde.stepSigmas[1]!);
  assert.ok(Math.abs(m - g) <= 1e-5 * g, `${m} vs ${g}`);
  const { timesteps, startIndex } = sde.img2imgTimesteps(5, 0.6);
  assert.equal(startIndex, 4); // steps 0 and 1 skipped, 2 evaluations each
  assert.equal(timesteps.length, 5);
});

Deno.test("ancestralStep() splits sigma_to^2 into sigma_down^2 + sigma_up^2", () => {
  const [down, up] = ancestralStep(2, 1, 1);
  assert.ok(Math.abs(down * down + up * up - 1) < 1e-6);
  assert.ok(Math.abs(up - Math.sqrt(3) / 2) < 1e-6);
  assert.deepEqual(ancestralStep(2, 1, 0), [1, 0]);
  assert.deepEqual(ancestralStep(2, 0, 1), [0, 0]);
});

Deno.test("k-diffusion samplers reject a loop that skips an evaluation", () => {
  const s = new KDpmpp2mSampler(SD15);
  s.setTimesteps(4);
  const x = noise(0);
  s.step(x, 0, x);
  assert.throws(() => s.step(x, 2, x), RangeError);
});
