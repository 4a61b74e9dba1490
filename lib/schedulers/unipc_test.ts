import assert from "node:assert/strict";
import { solveFloat32, UniPCMultistepScheduler } from "./unipc.ts";
import { SD15, solveError } from "./testing.ts";

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
