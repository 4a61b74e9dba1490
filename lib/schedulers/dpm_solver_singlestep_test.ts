import assert from "node:assert/strict";
import type { Scheduler } from "./common.ts";
import { DPMSolverSinglestepScheduler, singlestepOrderList } from "./dpm_solver_singlestep.ts";

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

Deno.test("singlestepOrderList() matches Diffusers' get_order_list", () => {
  assert.deepEqual(singlestepOrderList(6, 2, true), [1, 2, 1, 2, 1, 1]);
  assert.deepEqual(singlestepOrderList(5, 2, true), [1, 2, 1, 2, 1]);
  assert.deepEqual(singlestepOrderList(6, 3, true), [1, 2, 3, 1, 2, 1]);
  assert.deepEqual(singlestepOrderList(7, 3, true), [1, 2, 3, 1, 2, 3, 1]);
  assert.deepEqual(singlestepOrderList(8, 3, true), [1, 2, 3, 1, 2, 3, 1, 2]);
  assert.deepEqual(singlestepOrderList(6, 3, false), [1, 2, 3, 1, 2, 3]);
  assert.deepEqual(singlestepOrderList(4, 2, false), [1, 2, 1, 2]);
  assert.deepEqual(singlestepOrderList(3, 1, false), [1, 1, 1]);
});

Deno.test("DPMSolverSinglestepScheduler switches lower_order_final on as Diffusers does", () => {
  const s = new DPMSolverSinglestepScheduler({ ...SD15, final_sigmas_type: "sigma_min" });
  s.setTimesteps(6);
  assert.deepEqual(s.orderList, [1, 2, 1, 2, 1, 2]);
  s.setTimesteps(5); // odd: lower_order_final becomes true, and stays true
  assert.deepEqual(s.orderList, [1, 2, 1, 2, 1]);
  s.setTimesteps(6);
  assert.deepEqual(s.orderList, [1, 2, 1, 2, 1, 1]);
  const z = new DPMSolverSinglestepScheduler(SD15); // final sigma 0 forces it too
  z.setTimesteps(6);
  assert.deepEqual(z.orderList, [1, 2, 1, 2, 1, 1]);
});

Deno.test("DPMSolverSinglestepScheduler is exact for a constant x0 (orders 1-3, both types)", () => {
  for (const solver_order of [1, 2, 3]) {
    for (const algorithm_type of ["dpmsolver++", "dpmsolver"]) {
      for (const solver_type of ["midpoint", "heun"]) {
        for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
          const config = {
            ...SD15,
            solver_order,
            algorithm_type,
            solver_type,
            prediction_type,
            final_sigmas_type: "sigma_min",
          };
          for (const steps of [6, 13]) {
            const s = new DPMSolverSinglestepScheduler(config);
            const e = solveError(s, steps, 0, prediction_type);
            assert.ok(e < 2e-5, `${JSON.stringify(config)} ${steps} steps: ${e}`);
          }
        }
      }
    }
  }
});

Deno.test("DPMSolverSinglestepScheduler gets more accurate with its order on a smooth x0", () => {
  for (const solver_type of ["midpoint", "heun"]) {
    const err = (solver_order: number) =>
      solveError(
        new DPMSolverSinglestepScheduler({
          ...SD15,
          solver_order,
          solver_type,
          final_sigmas_type: "sigma_min",
        }),
        24,
        0.5,
      );
    const [e1, e2, e3] = [err(1), err(2), err(3)];
    assert.ok(e3 < e2 && e2 < e1, `${solver_type} errors ${e1} ${e2} ${e3}`);
  }
});

Deno.test("DPMSolverSinglestepScheduler img2img starts inside a group with lower orders", () => {
  const s = new DPMSolverSinglestepScheduler({ ...SD15, solver_order: 3 });
  const { startIndex } = s.img2imgTimesteps(9, 0.5); // t_start 5: order_list[5] is 3
  assert.equal(startIndex, 5);
  let x = latent();
  for (let i = startIndex; i < 9; i++) {
    x = s.step(outputFor(x, latent(64, i), s.sigmas[i]!, "epsilon"), i, x);
  }
  assert.ok(x.every(Number.isFinite));
});

Deno.test("DPMSolverSinglestepScheduler rejects SDE types and zero final sigma for dpmsolver", () => {
  assert.throws(
    () => new DPMSolverSinglestepScheduler({ algorithm_type: "sde-dpmsolver++" }),
    RangeError,
  );
  assert.throws(
    () => new DPMSolverSinglestepScheduler({ algorithm_type: "dpmsolver" }),
    RangeError,
  );
});
