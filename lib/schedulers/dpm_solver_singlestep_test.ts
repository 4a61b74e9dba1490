import assert from "node:assert/strict";
import { DPMSolverSinglestepScheduler, singlestepOrderList } from "./dpm_solver_singlestep.ts";
import { latent, outputFor, SD15, solveError } from "./testing.ts";

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
