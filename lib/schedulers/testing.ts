/**
 * Test support for the VP solvers (DPM-Solver singlestep, DEIS, UniPC): a deterministic latent,
 * model outputs for a known data prediction, and the error of a run against the exact
 * probability-flow solution. Imported by `*_test.ts` only.
 *
 * @module
 */
import type { Scheduler } from "./scheduler.ts";

/** The SD 1.x scheduler config. */
export const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  num_train_timesteps: 1000,
  steps_offset: 1,
};

/** Deterministic pseudo-random latent. */
export function latent(n = 64, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 4 - 2;
  });
}

/** VP alpha_t, sigma_t of a k-diffusion sigma, in float64. */
export function vp(sigma: number): [number, number] {
  const a = 1 / Math.sqrt(sigma * sigma + 1);
  return [a, sigma * a];
}

/** Model output (eps, v or x0) for the data prediction `x0` at VP sample `x` and `sigma`. */
export function outputFor(
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
export function solveError(s: Scheduler, steps: number, k: number, prediction = "epsilon"): number {
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
