import assert from "node:assert/strict";
import { DEISMultistepScheduler } from "./deis.ts";
import { SD15, solveError } from "./testing.ts";

Deno.test("DEISMultistepScheduler is exact for a constant x0 at orders 1-3 and every prediction type", () => {
  for (const solver_order of [1, 2, 3]) {
    for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
      for (const steps of [5, 24]) {
        const s = new DEISMultistepScheduler({ ...SD15, solver_order, prediction_type });
        const e = solveError(s, steps, 0, prediction_type);
        // float32 cancellation in the third-order log-rho integrals reaches ~1e-4
        assert.ok(e < 2e-4, `order ${solver_order} ${prediction_type} ${steps} steps: ${e}`);
      }
    }
  }
});

Deno.test("DEISMultistepScheduler gets more accurate with its order on a smooth x0", () => {
  const err = (solver_order: number) =>
    solveError(
      new DEISMultistepScheduler({ ...SD15, solver_order, lower_order_final: false }),
      24,
      0.5,
    );
  const [e1, e2, e3] = [err(1), err(2), err(3)];
  assert.ok(e3 < e2 && e2 < e1, `errors ${e1} ${e2} ${e3}`);
});

Deno.test("DEISMultistepScheduler ends at the first training sigma and repeats it for karras", () => {
  const s = new DEISMultistepScheduler(SD15);
  s.setTimesteps(4);
  assert.deepEqual(Array.from(s.timesteps), [999, 749, 500, 250]);
  assert.ok(Math.abs(s.sigmas[4]! - 0.0292) < 1e-4, `${s.sigmas[4]}`);
  const k = new DEISMultistepScheduler({ ...SD15, use_karras_sigmas: true });
  k.setTimesteps(6);
  assert.equal(k.sigmas[6], k.sigmas[5]);
  assert.equal(k.timesteps[0], 999);
  assert.equal(k.timesteps[5], 0);
});

Deno.test("DEISMultistepScheduler reads Diffusers' aliases and rejects unknown types", () => {
  assert.doesNotThrow(() => new DEISMultistepScheduler({ algorithm_type: "dpmsolver++" }));
  assert.doesNotThrow(() => new DEISMultistepScheduler({ solver_type: "midpoint" }));
  assert.throws(() => new DEISMultistepScheduler({ algorithm_type: "foo" }), RangeError);
  assert.throws(() => new DEISMultistepScheduler({ solver_order: 4 }), RangeError);
  const s = new DEISMultistepScheduler(SD15);
  const { timesteps, startIndex } = s.img2imgTimesteps(20, 0.75);
  assert.equal(startIndex, 5);
  assert.equal(timesteps.length, 15);
});
