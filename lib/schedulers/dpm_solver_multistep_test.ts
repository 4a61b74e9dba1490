import assert from "node:assert/strict";
import type { NoiseGenerator, Scheduler } from "./scheduler.ts";
import { modelOutputToX0 } from "./dpm_solver_math.ts";
import { combine } from "./numpy.ts";
import { DPMSolverMultistepScheduler } from "./dpm_solver_multistep.ts";
import { sigmaToTimestep, solverTimesteps, vpTables } from "./dpm_solver_schedule.ts";
import { sigmaToAlphaSigmaT } from "./vp_scheduler.ts";
import { parseSchedulerConfig } from "./config.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  num_train_timesteps: 1000,
  steps_offset: 1,
};
const f = Math.fround;

/** Deterministic pseudo-random latent (no torch stream needed here). */
function latent(n = 64, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 4 - 2;
  });
}

/** A generator that returns zeros and counts its calls. */
class ZeroNoise implements NoiseGenerator {
  calls = 0;
  randn(shape: number[]): Float32Array {
    this.calls++;
    return new Float32Array(shape.reduce((a, b) => a * b, 1));
  }
}

/**
 * A model whose data prediction is the constant `c` (per element): eps, v or x0 as the
 * prediction type asks, computed from the VP sample at sigma.
 */
function constantX0Model(
  c: Float32Array,
  prediction: "epsilon" | "v_prediction" | "sample",
): (x: Float32Array, sigma: number) => Float32Array {
  return (x, sigma) => {
    const a = 1 / Math.sqrt(sigma * sigma + 1);
    const s = sigma * a;
    return x.map((v, j) => {
      const eps = (v - a * c[j]!) / s;
      if (prediction === "epsilon") return eps;
      if (prediction === "v_prediction") return a * eps - s * c[j]!;
      return c[j]!;
    });
  };
}

/**
 * With a constant data prediction the exact probability-flow solution is
 * x_t = alpha_t c + sigma_t (x_s - alpha_s c) / sigma_s; every order must follow it. The noise-free
 * part of the DPM-Solver++ SDE is exact too, with the eps part decaying by e^{-h} per step.
 */
function checkConstantX0(s: Scheduler, steps: number, what: string, sde = false): void {
  s.setTimesteps(steps);
  const sig = s.sigmas!;
  const c = latent(64, 7).map((v) => v * 0.5);
  const x0 = latent(64, 3);
  const prediction = (s as { config?: { predictionType?: string } }).config?.predictionType ??
    "epsilon";
  const model = constantX0Model(c, prediction as "epsilon");
  const [a0, s0] = sigmaToAlphaSigmaT(sig[0]!);
  const epsStar = x0.map((v, j) => (v - a0 * c[j]!) / s0);
  let x = x0;
  let decay = 1;
  for (let i = 0; i < s.timesteps.length; i++) {
    x = s.step(model(s.scaleModelInput(x, i), sig[i]!), i, x, new ZeroNoise());
    const [a, sT] = sigmaToAlphaSigmaT(sig[i + 1]!);
    if (sde) {
      const [aS, sS] = sigmaToAlphaSigmaT(sig[i]!);
      decay *= Math.exp(-(Math.log(a / sT) - Math.log(aS / sS)));
    }
    for (let j = 0; j < x.length; j++) {
      const want = a * c[j]! + sT * decay * epsStar[j]!;
      assert.ok(
        Math.abs(x[j]! - want) <= 2e-5 * Math.max(1, Math.abs(want)),
        `${what}, step ${i}: ${x[j]} vs ${want}`,
      );
    }
  }
}

Deno.test("solverTimesteps() reproduces Diffusers' linspace, leading and trailing spacings", () => {
  const o = { numTrainTimesteps: 1000, lastTimestep: 1000, stepsOffset: 1 };
  assert.deepEqual(Array.from(solverTimesteps(4, { ...o, spacing: "linspace" })), [
    999,
    749,
    500,
    250,
  ]);
  assert.deepEqual(Array.from(solverTimesteps(4, { ...o, spacing: "leading" })), [
    801,
    601,
    401,
    201,
  ]);
  assert.deepEqual(Array.from(solverTimesteps(4, { ...o, spacing: "trailing" })), [
    999,
    749,
    499,
    249,
  ]);
  // np.linspace(0, 999, 21).round(): 49.95 -> 50, 99.9 -> 100, 149.85 -> 150, ...
  const t20 = solverTimesteps(20, { ...o, spacing: "linspace" });
  assert.deepEqual(Array.from(t20.slice(-3)), [150, 100, 50]);
});

Deno.test("DPMSolverMultistepScheduler karras sigmas run from sigma_max to sigma_min then 0", () => {
  const s = new DPMSolverMultistepScheduler({ ...SD15, use_karras_sigmas: true });
  s.setTimesteps(10);
  const tables = vpTables(parseSchedulerConfig(SD15), false);
  assert.equal(s.sigmas.length, 11);
  assert.equal(s.sigmas[0], tables.sigmas[999]);
  assert.ok(Math.abs(s.sigmas[9]! - tables.sigmas[0]!) < 1e-7);
  assert.equal(s.sigmas[10], 0);
  assert.equal(s.timesteps[0], 999);
  assert.equal(s.timesteps[9], 0);
  for (let k = 1; k < 10; k++) assert.ok(s.timesteps[k]! <= s.timesteps[k - 1]!);
  // the rounded timestep of each sigma is the training step whose sigma is nearest in log space
  for (let k = 0; k < 10; k++) {
    const t = s.timesteps[k]!;
    const exact = sigmaToTimestep(s.sigmas[k]!, tables.logSigmas);
    assert.ok(Math.abs(t - exact) <= 0.5, `${t} vs ${exact}`);
  }
});

Deno.test("DPMSolverMultistepScheduler lambda_min_clipped shortens the cosine schedule", () => {
  const base = { beta_schedule: "squaredcos_cap_v2" };
  const a = new DPMSolverMultistepScheduler(base);
  const b = new DPMSolverMultistepScheduler({ ...base, lambda_min_clipped: -5.1 });
  a.setTimesteps(10);
  b.setTimesteps(10);
  assert.equal(a.timesteps[0], 999);
  assert.ok(b.timesteps[0]! < 999 && b.timesteps[0]! > 900, `${b.timesteps[0]}`);
});

Deno.test("DPMSolverMultistepScheduler follows the exact solution for a constant x0 (all variants)", () => {
  for (const algorithm_type of ["dpmsolver++", "dpmsolver", "sde-dpmsolver++"]) {
    for (const solver_type of ["midpoint", "heun"]) {
      for (const solver_order of [1, 2, 3]) {
        if (solver_order === 3 && algorithm_type.startsWith("sde")) continue;
        for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
          const config = {
            ...SD15,
            algorithm_type,
            solver_type,
            solver_order,
            prediction_type,
            final_sigmas_type: "sigma_min",
          };
          // SDE noise is zero here, so only the deterministic part of the update is checked
          const what = JSON.stringify({
            algorithm_type,
            solver_type,
            solver_order,
            prediction_type,
          });
          const sde = algorithm_type === "sde-dpmsolver++";
          checkConstantX0(new DPMSolverMultistepScheduler(config), 8, what, sde);
          checkConstantX0(new DPMSolverMultistepScheduler(config), 16, what, sde);
        }
      }
    }
  }
});

Deno.test("DPMSolverMultistepScheduler first-order step equals DDIM (eta 0)", () => {
  const s = new DPMSolverMultistepScheduler({ ...SD15, solver_order: 1 });
  s.setTimesteps(5);
  const x = latent();
  const eps = latent(64, 9);
  const out = s.step(eps, 0, x);
  const [a0, s0] = sigmaToAlphaSigmaT(s.sigmas[0]!);
  const [a1, s1] = sigmaToAlphaSigmaT(s.sigmas[1]!);
  for (let j = 0; j < x.length; j++) {
    const x0 = (x[j]! - s0 * eps[j]!) / a0;
    const want = a1 * x0 + s1 * eps[j]!;
    assert.ok(Math.abs(out[j]! - want) < 1e-5 * Math.max(1, Math.abs(want)));
  }
});

Deno.test("DPMSolverMultistepScheduler SDE variants draw one noise tensor per step", () => {
  for (const algorithm_type of ["sde-dpmsolver++", "sde-dpmsolver"]) {
    const s = new DPMSolverMultistepScheduler({
      ...SD15,
      algorithm_type,
      final_sigmas_type: "sigma_min",
    });
    s.setTimesteps(6);
    s.noiseShape = [1, 4, 4, 4];
    const rng = new ZeroNoise();
    let x = latent();
    for (let i = 0; i < 6; i++) x = s.step(latent(64, i + 2), i, x, rng);
    assert.equal(rng.calls, 6);
    assert.throws(() => {
      const t = new DPMSolverMultistepScheduler({ ...SD15, algorithm_type: "sde-dpmsolver++" });
      t.setTimesteps(3);
      t.step(x, 0, x);
    }, TypeError);
  }
});

Deno.test("DPMSolverMultistepScheduler sde-dpmsolver++ with zero noise matches its closed form", () => {
  const s = new DPMSolverMultistepScheduler({ ...SD15, algorithm_type: "sde-dpmsolver++" });
  s.setTimesteps(5);
  const x = latent();
  const eps = latent(64, 5);
  const out = s.step(eps, 0, x, new ZeroNoise());
  const [a0, s0] = sigmaToAlphaSigmaT(s.sigmas[0]!);
  const [a1, s1] = sigmaToAlphaSigmaT(s.sigmas[1]!);
  const h = Math.log(a1 / s1) - Math.log(a0 / s0);
  for (let j = 0; j < x.length; j++) {
    const x0 = (x[j]! - s0 * eps[j]!) / a0;
    // (sigma_t / sigma_s) e^{-h} x + alpha_t (1 - e^{-2h}) x0
    const want = (s1 / s0) * Math.exp(-h) * x[j]! + a1 * (1 - Math.exp(-2 * h)) * x0;
    assert.ok(Math.abs(out[j]! - want) < 1e-5 * Math.max(1, Math.abs(want)));
  }
});

Deno.test("DPMSolverMultistepScheduler sde-dpmsolver with zero noise matches its closed form", () => {
  const s = new DPMSolverMultistepScheduler({
    ...SD15,
    algorithm_type: "sde-dpmsolver",
    final_sigmas_type: "sigma_min",
  });
  s.setTimesteps(5);
  const x = latent();
  const eps = latent(64, 5);
  const out = s.step(eps, 0, x, new ZeroNoise());
  const [a0, s0] = sigmaToAlphaSigmaT(s.sigmas[0]!);
  const [a1, s1] = sigmaToAlphaSigmaT(s.sigmas[1]!);
  const h = Math.log(a1 / s1) - Math.log(a0 / s0);
  for (let j = 0; j < x.length; j++) {
    // (alpha_t / alpha_s) x - 2 sigma_t (e^h - 1) eps
    const want = (a1 / a0) * x[j]! - 2 * s1 * (Math.exp(h) - 1) * eps[j]!;
    assert.ok(Math.abs(out[j]! - want) < 1e-5 * Math.max(1, Math.abs(want)));
  }
});

Deno.test("DPMSolverMultistepScheduler euler_at_final makes the last step first order", () => {
  const run = (extra: Record<string, unknown>) => {
    const s = new DPMSolverMultistepScheduler({
      ...SD15,
      final_sigmas_type: "sigma_min",
      ...extra,
    });
    s.setTimesteps(20);
    let x = latent();
    let before = x;
    let lastModel = x;
    for (let i = 0; i < 20; i++) {
      before = x;
      lastModel = latent(64, 100 + i).map((v, j) => f(0.1 * x[j]! + 0.05 * v));
      x = s.step(lastModel, i, x);
    }
    return { x, before, lastModel, s };
  };
  const plain = run({});
  const euler = run({ euler_at_final: true });
  assert.ok(plain.x.some((v, j) => v !== euler.x[j]), "euler_at_final must change the last step");
  // expected: first-order DPM-Solver++ from the previous sample
  const s = euler.s;
  const sig = s.sigmas;
  const m = modelOutputToX0(euler.lastModel, euler.before, sig[19]!, "epsilon");
  const [aT, sT] = sigmaToAlphaSigmaT(sig[20]!);
  const [, sS] = sigmaToAlphaSigmaT(sig[19]!);
  const h = f(
    f(f(Math.log(aT)) - f(Math.log(sT))) -
      f(f(Math.log(sigmaToAlphaSigmaT(sig[19]!)[0])) - f(Math.log(sS))),
  );
  const want = combine([f(sT / sS), -f(aT * f(f(Math.exp(-h)) - 1))], [euler.before, m]);
  const d = want.reduce((mx, v, j) => Math.max(mx, Math.abs(v - euler.x[j]!)), 0);
  assert.ok(d < 1e-6, `maxdiff ${d}`);
});

Deno.test("DPMSolverMultistepScheduler sde-dpmsolver++ order 3 fails where Diffusers 0.27 fails", () => {
  const s = new DPMSolverMultistepScheduler({
    ...SD15,
    algorithm_type: "sde-dpmsolver++",
    solver_order: 3,
  });
  // under 15 steps the lower-order tail avoids the third-order update, as in Diffusers
  s.setTimesteps(4);
  let x = latent();
  for (let i = 0; i < 4; i++) x = s.step(latent(64, i), i, x, new ZeroNoise());
  s.setTimesteps(20);
  x = latent();
  x = s.step(latent(64, 1), 0, x, new ZeroNoise());
  x = s.step(latent(64, 2), 1, x, new ZeroNoise());
  assert.throws(() => s.step(latent(64, 3), 2, x, new ZeroNoise()), RangeError);
});

Deno.test("DPMSolverMultistepScheduler rejects bad configs and out-of-order steps", () => {
  assert.throws(
    () => new DPMSolverMultistepScheduler({ algorithm_type: "dpmsolver" }),
    RangeError,
  );
  assert.throws(() => new DPMSolverMultistepScheduler({ solver_order: 4 }), RangeError);
  assert.throws(() => new DPMSolverMultistepScheduler({ solver_type: "foo" }), RangeError);
  const s = new DPMSolverMultistepScheduler(SD15);
  s.setTimesteps(4);
  const x = latent();
  s.step(x, 0, x);
  assert.throws(() => s.step(x, 2, x), RangeError);
  assert.throws(() => s.step(x.subarray(1), 1, x), TypeError);
  // aliases Diffusers accepts
  assert.equal(
    new DPMSolverMultistepScheduler({ algorithm_type: "deis" }).options.algorithmType,
    "dpmsolver++",
  );
  assert.equal(
    new DPMSolverMultistepScheduler({ solver_type: "bh2" }).options.solverType,
    "midpoint",
  );
});

Deno.test("DPMSolverMultistepScheduler img2img starts at t_start and noises with alpha/sigma", () => {
  const s = new DPMSolverMultistepScheduler(SD15);
  const { timesteps, startIndex } = s.img2imgTimesteps(10, 0.5);
  assert.equal(startIndex, 5);
  assert.deepEqual(Array.from(timesteps), Array.from(s.timesteps.slice(5)));
  const x0 = latent();
  const z = latent(64, 4);
  const noisy = s.addNoise(x0, z, startIndex);
  const [a, sg] = sigmaToAlphaSigmaT(s.sigmas[5]!);
  for (let j = 0; j < 64; j++) {
    assert.ok(Math.abs(noisy[j]! - (a * x0[j]! + sg * z[j]!)) < 1e-6);
  }
});

Deno.test("DPMSolverMultistepScheduler drops the variance channels of learned-variance models", () => {
  const make = (variance_type: string | null) => {
    const s = new DPMSolverMultistepScheduler({ ...SD15, variance_type });
    s.setTimesteps(4);
    s.noiseShape = [2, 2, 4, 4];
    return s;
  };
  const x = latent(64);
  const eps = latent(64, 8);
  // [B, 2C, H, W]: each batch item holds its eps channels, then its variance channels
  const withVar = new Float32Array(128);
  withVar.set(eps.subarray(0, 32), 0);
  withVar.set(latent(32, 99), 32);
  withVar.set(eps.subarray(32), 64);
  withVar.set(latent(32, 98), 96);
  assert.deepEqual(make("learned_range").step(withVar, 0, x), make(null).step(eps, 0, x));
  assert.throws(() => make(null).step(withVar, 0, x), TypeError);
});

Deno.test("DPM-Solver schedulers accept every denoise sigma schedule", () => {
  for (const sigma_schedule of ["exponential", "beta", "sgm_uniform", "simple"]) {
    const s = new DPMSolverMultistepScheduler({ ...SD15, sigma_schedule });
    s.setTimesteps(8);
    assert.equal(s.sigmas.length, 9);
    for (let k = 1; k < 8; k++) {
      assert.ok(s.sigmas[k]! < s.sigmas[k - 1]!, `${sigma_schedule} sigmas descend`);
      assert.ok(s.timesteps[k]! <= s.timesteps[k - 1]!, `${sigma_schedule} timesteps descend`);
    }
    checkConstantX0(
      new DPMSolverMultistepScheduler({ ...SD15, sigma_schedule }),
      8,
      sigma_schedule,
    );
  }
});
