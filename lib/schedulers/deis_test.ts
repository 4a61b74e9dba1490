import assert from "node:assert/strict";
import type { Scheduler } from "./common.ts";
import { DEISMultistepScheduler } from "./deis.ts";

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
