/**
 * Sigma schedules (the noise levels a sigma-based sampler visits): the one list of their names,
 * and Karras, exponential, beta, sgm_uniform and simple sigmas.
 *
 * @module
 */
import { betaPpf } from "./beta_distribution.ts";
import { numpyLinspace, torchLinspaceF32 } from "./numpy.ts";
import { sigmaToT, tToSigma } from "./training_sigmas.ts";

/**
 * The sigma schedules denoise implements, spelled as `--schedule` takes them: "default" (the
 * sampler's own spacing), Karras et al. 2022, exponential, beta (Lee et al. 2024) and A1111's
 * sgm-uniform and simple. Every other list of schedule names is derived from this one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SIGMA_SCHEDULES } from "./sigma_schedules.ts";
 * assert.ok(SIGMA_SCHEDULES.includes("sgm-uniform"));
 * ```
 */
export const SIGMA_SCHEDULES = [
  "default",
  "karras",
  "exponential",
  "beta",
  "sgm-uniform",
  "simple",
] as const;

/** A sigma schedule name as `--schedule` spells it (`"sgm-uniform"`). */
export type ScheduleName = typeof SIGMA_SCHEDULES[number];

type Underscored<S extends string> = S extends `${infer A}-${infer B}` ? `${A}_${Underscored<B>}`
  : S;

/** A sigma schedule as scheduler configs spell it (`sigma_schedule: "sgm_uniform"`). */
export type SigmaSchedule = Underscored<ScheduleName>;

/**
 * The config spelling of a schedule name (hyphens become underscores).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configSigmaSchedule } from "./sigma_schedules.ts";
 * assert.equal(configSigmaSchedule("sgm-uniform"), "sgm_uniform");
 * ```
 */
export function configSigmaSchedule(name: ScheduleName): SigmaSchedule {
  return name.replaceAll("-", "_") as SigmaSchedule;
}

/** `SIGMA_SCHEDULES` in the config spelling (`sigma_schedule` values). */
export const CONFIG_SIGMA_SCHEDULES: readonly SigmaSchedule[] = SIGMA_SCHEDULES.map(
  configSigmaSchedule,
);

/**
 * Karras et al. 2022 Eq. (5) with rho = 7, from sigmaMax down to sigmaMin (float64).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { karrasSigmas } from "./sigma_schedules.ts";
 * const s = karrasSigmas(0.1, 10, 3);
 * assert.ok(Math.abs(s[0]! - 10) < 1e-12 && Math.abs(s[2]! - 0.1) < 1e-12);
 * ```
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): Float64Array {
  const ramp = numpyLinspace(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/**
 * Diffusers `_convert_to_exponential`: log-uniform sigmas from sigmaMax to sigmaMin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exponentialSigmas } from "./sigma_schedules.ts";
 * const s = exponentialSigmas(0.1, 10, 3);
 * assert.ok(Math.abs(s[1]! - 1) < 1e-12); // log-uniform: the middle is the geometric mean
 * ```
 */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  return numpyLinspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}

/**
 * Diffusers `_convert_to_beta` (Lee et al. 2024, "Beta Sampling is All You Need"): sigmas at the
 * beta(alpha, beta) quantiles of 1 - linspace(0, 1, n).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { betaSigmas } from "./sigma_schedules.ts";
 * const s = betaSigmas(0.1, 10, 3);
 * assert.deepEqual([s[0], s[2]], [10, 0.1]);
 * assert.ok(Math.abs(s[1]! - 5.05) < 1e-12); // beta(0.6, 0.6) is symmetric
 * ```
 */
export function betaSigmas(
  sigmaMin: number,
  sigmaMax: number,
  n: number,
  alpha = 0.6,
  beta = 0.6,
): Float64Array {
  const ts = numpyLinspace(0, 1, n);
  return ts.map((t) => sigmaMin + betaPpf(1 - t, alpha, beta) * (sigmaMax - sigmaMin));
}

/**
 * A1111 `sgm_uniform` (modules/sd_schedulers.py): t uniform from the t of sigmaMax to the t of
 * sigmaMin, n + 1 points less the last, mapped back with `t_to_sigma`. Float32 like torch.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sgmUniformSigmas } from "./sigma_schedules.ts";
 * const logSigmas = [Math.log(0.1), Math.log(1), Math.log(10)];
 * const s = sgmUniformSigmas(0.1, 10, 2, logSigmas);
 * assert.equal(s.length, 2);
 * assert.equal(s[0], Math.fround(10));
 * ```
 */
export function sgmUniformSigmas(
  sigmaMin: number,
  sigmaMax: number,
  n: number,
  logSigmas: ArrayLike<number>,
): Float64Array {
  const start = sigmaToT(sigmaMax, logSigmas);
  const end = sigmaToT(sigmaMin, logSigmas);
  const ts = torchLinspaceF32(start, end, n + 1);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = tToSigma(ts[i]!, logSigmas);
  return out;
}

/**
 * A1111 / ComfyUI `simple` schedule: every (len / n)-th training sigma counted from the top.
 * `trainingSigmas` ascend with t.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { simpleSigmas } from "./sigma_schedules.ts";
 * assert.deepEqual(Array.from(simpleSigmas(4, [1, 2, 3, 4, 5, 6, 7, 8])), [8, 6, 4, 2]);
 * ```
 */
export function simpleSigmas(n: number, trainingSigmas: ArrayLike<number>): Float64Array {
  const len = trainingSigmas.length;
  const ss = len / n;
  const out = new Float64Array(n);
  for (let x = 0; x < n; x++) out[x] = trainingSigmas[len - 1 - Math.trunc(x * ss)]!;
  return out;
}
