import assert from "node:assert/strict";
import type { Scheduler } from "./common.ts";
import { solveFloat32, UniPCMultistepScheduler } from "./unipc.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  num_train_timesteps: 1000,
  steps_offset: 1,
};

// --- shared VP-solver test harness (duplicated in each *_test.ts of the DPM-Solver family) ---

/** Deterministic pseudo-random latent. */
function latent(n = 64, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 4 - 2;
  });
}

/** VP alpha_t, sigma_t of a k-diffusion sigma, in float64. */
function vp(sigma: number): [number, number] {
  const a = 1 / Math.sqrt(sigma * sigma + 1);
  return [a, sigma * a];
}

/** Model output (eps, v or x0) for the data prediction `x0` at VP sample `x` and `sigma`. */
function outputFor(
  x: Float32Array,
  x0: ArrayLike<number>,
  sigma: number,
  prediction: string,
): Float32Array {
  const [a, s] = vp(sigma);
  return x.map((v, j) => {
    const eps = (v - a * x0[j]!) / s;
    if (prediction === "v_prediction") return a * eps - s * x0[j]!;
    if (prediction === "sample") return x0[j]!;
    return eps;
  });
}

/**
 * Runs a loop whose data prediction is x0(lambda) = c * cos(k lambda) (k = 0: constant) and returns
 * the largest deviation from the exact probability-flow solution
 * x_t / sigma_t = x_s / sigma_s + c * [e^l (cos kl + k sin kl) / (1 + k^2)] from l_s to l_t.
 */
function solveError(s: Scheduler, steps: number, k: number, prediction = "epsilon"): number {
  s.setTimesteps(steps);
  const sig = s.sigmas!;
  const c = latent(64, 7).map((v) => v * 0.5);
  const x0 = latent(64, 3);
  const lam = (sigma: number) => -Math.log(sigma);
  const prim = (l: number) => Math.exp(l) * (Math.cos(k * l) + k * Math.sin(k * l)) / (1 + k * k);
  let x = x0;
  let worst = 0;
  const [, s0] = vp(sig[0]!);
  for (let i = 0; i < s.timesteps.length; i++) {
    const g = Math.cos(k * lam(sig[i]!));
    const target = c.map((v) => v * g);
    x = s.step(outputFor(s.scaleModelInput(x, i), target, sig[i]!, prediction), i, x);
    const [, sT] = vp(sig[i + 1]!);
    const dPrim = prim(lam(sig[i + 1]!)) - prim(lam(sig[0]!));
    for (let j = 0; j < x.length; j++) {
      const want = sT * (x0[j]! / s0 + c[j]! * dPrim);
      worst = Math.max(worst, Math.abs(x[j]! - want) / Math.max(1, Math.abs(want)));
    }
  }
  return worst;
}

Deno.test("UniPCMultistepScheduler is exact for a constant x0 (orders 1-3, bh1/bh2, x0 and eps forms)", () => {
  for (const solver_order of [1, 2, 3]) {
    for (const solver_type of ["bh1", "bh2"]) {
      for (const predict_x0 of [true, false]) {
        for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
          const config = { ...SD15, solver_order, solver_type, predict_x0, prediction_type };
          for (const steps of [5, 20]) {
            const e = solveError(new UniPCMultistepScheduler(config), steps, 0, prediction_type);
            assert.ok(e < 2e-5, `${JSON.stringify(config)} ${steps} steps: ${e}`);
          }
        }
      }
    }
  }
});

Deno.test("UniPCMultistepScheduler gets more accurate with its order on a smooth x0", () => {
  for (const solver_type of ["bh1", "bh2"]) {
    const err = (solver_order: number) =>
      solveError(
        new UniPCMultistepScheduler({
          ...SD15,
          solver_order,
          solver_type,
          lower_order_final: false,
        }),
        24,
        0.5,
      );
    const [e1, e2, e3] = [err(1), err(2), err(3)];
    assert.ok(e3 < e2 && e2 < e1, `${solver_type} errors ${e1} ${e2} ${e3}`);
  }
});

Deno.test("UniPCMultistepScheduler disable_corrector skips the corrector at the listed steps", () => {
  const run = (disable_corrector: number[]) =>
    solveError(new UniPCMultistepScheduler({ ...SD15, disable_corrector }), 10, 0.5);
  const all = run([]);
  assert.notEqual(run([2]), all);
  assert.equal(run([20]), all); // an index past the run changes nothing
});

Deno.test("solveFloat32() solves small systems with pivoting", () => {
  const x = solveFloat32([[0, 2, 1], [1, 1, 1], [2, 1, 0]], [5, 4, 4]);
  const want = [1, 2, 1];
  for (let k = 0; k < 3; k++) assert.ok(Math.abs(x[k]! - want[k]!) < 1e-5, `${x}`);
  assert.throws(() => solveFloat32([[1, 1], [1, 1]], [1, 2]), RangeError);
});

Deno.test("UniPCMultistepScheduler rejects solver_p and bad options", () => {
  assert.throws(() => new UniPCMultistepScheduler({ solver_p: {} }), RangeError);
  assert.throws(() => new UniPCMultistepScheduler({ solver_type: "foo" }), RangeError);
  assert.throws(() => new UniPCMultistepScheduler({ disable_corrector: "x" }), TypeError);
  const s = new UniPCMultistepScheduler(SD15);
  s.setTimesteps(5);
  assert.ok(Math.abs(s.sigmas[5]! - 0.0292) < 1e-4, "UniPC ends at the first training sigma");
});
