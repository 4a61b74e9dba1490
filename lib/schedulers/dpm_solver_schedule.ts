/**
 * The `set_timesteps` side of the VP solvers (DPM-Solver multistep and singlestep, DEIS, UniPC):
 * their float32 training tables (alphas_cumprod, sigmas, log-sigmas, lambdas), numpy-exact integer
 * timestep spacing, `_sigma_to_t`, and the sigma schedules with their final sigma.
 *
 * @module
 */
import { computeAlphasCumprod, finiteAlphasCumprod } from "./betas.ts";
import { logSigmasF32, sigmasFromAlphasCumprod } from "./training_sigmas.ts";
import type { SchedulerConfig, TimestepSpacing } from "./config.ts";
import { log32, numpyArange, numpyLinspace, roundHalfEven } from "./numpy.ts";
import {
  betaSigmas,
  CONFIG_SIGMA_SCHEDULES,
  exponentialSigmas,
  karrasSigmas,
  sgmUniformSigmas,
  type SigmaSchedule,
  simpleSigmas,
} from "./sigma_schedules.ts";

const f = Math.fround;

/**
 * Integer timesteps of the DPM-Solver family's `set_timesteps` (multistep, UniPC, DEIS): spacing
 * over [0, lastTimestep) where lastTimestep is `num_train_timesteps` minus the lambda clip.
 * Same spacings as `spacedTimesteps` in timesteps.ts; kept separate because these Diffusers
 * classes take n + 1 linspace points (rounded) and divide "leading" by n + 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { solverTimesteps } from "./dpm_solver_schedule.ts";
 * const t = solverTimesteps(4, {
 *   numTrainTimesteps: 1000,
 *   lastTimestep: 1000,
 *   spacing: "linspace",
 *   stepsOffset: 0,
 * });
 * assert.deepEqual(Array.from(t), [999, 749, 500, 250]);
 * ```
 */
export function solverTimesteps(
  numInferenceSteps: number,
  options: {
    numTrainTimesteps: number;
    lastTimestep: number;
    spacing: TimestepSpacing;
    stepsOffset: number;
  },
): Float64Array {
  const n = numInferenceSteps;
  const { numTrainTimesteps, lastTimestep, spacing, stepsOffset } = options;
  const out = new Float64Array(n);
  if (spacing === "linspace") {
    const lin = numpyLinspace(0, lastTimestep - 1, n + 1);
    for (let i = 0; i < n; i++) out[i] = roundHalfEven(lin[n - i]!);
  } else if (spacing === "leading") {
    const ratio = Math.floor(lastTimestep / (n + 1));
    for (let i = 0; i < n; i++) out[i] = (n - i) * ratio + stepsOffset;
  } else if (spacing === "trailing") {
    const ratio = numTrainTimesteps / n;
    // a lambda clip can make this shorter than n; Diffusers then runs fewer steps
    return Float64Array.from(numpyArange(lastTimestep, 0, -ratio), (v) => roundHalfEven(v) - 1);
  } else {
    throw new RangeError(
      `timestep_spacing "${spacing}" is not supported: use "linspace", "leading" or "trailing"`,
    );
  }
  return out;
}

/**
 * Diffusers `_sigma_to_t` as numpy 1.x evaluates it when the log-sigma table is float32: the
 * scalar log(sigma) is cast to float32 against the table (value-based casting), so distances and
 * the interpolation weight are float32; only the final blend of the two indices is float64.
 * Same as `sigmaToT` in training_sigmas.ts; kept separate because this float32 casting (and the
 * float32 `1 - w`) changes the last bits that the DPM solvers' golden timesteps depend on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sigmaToTimestep, vpTables } from "./dpm_solver_schedule.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const tables = vpTables(parseSchedulerConfig({}), false);
 * assert.equal(sigmaToTimestep(tables.sigmas[500]!, tables.logSigmas), 500);
 * ```
 */
export function sigmaToTimestep(sigma: number, logSigmas: Float32Array): number {
  const logSigma = f(Math.log(Math.max(sigma, 1e-10)));
  const n = logSigmas.length;
  // low_idx = cumsum(dists >= 0).argmax(): the last index whose log-sigma <= log(sigma), else 0
  let lowIdx = 0;
  for (let k = 0; k < n; k++) if (f(logSigma - logSigmas[k]!) >= 0) lowIdx = k;
  lowIdx = Math.min(lowIdx, n - 2);
  const low = logSigmas[lowIdx]!;
  const high = logSigmas[lowIdx + 1]!;
  let w = f(f(low - logSigma) / f(low - high));
  w = Math.min(Math.max(w, 0), 1);
  return f(1 - w) * lowIdx + w * (lowIdx + 1);
}

/** The VP training tables a DPM-family scheduler derives from its config (all float32). */
export interface VpTables {
  /** Cumulative products of 1 - beta (with the zero-SNR fix when configured). */
  alphasCumprod: Float32Array;
  /** sqrt((1 - a) / a), ascending with t. */
  sigmas: Float32Array;
  /** log of `sigmas`. */
  logSigmas: Float32Array;
  /** lambda_t = log sqrt(a) - log sqrt(1 - a), descending with t. */
  lambdas: Float32Array;
}

/**
 * Builds the float32 tables of the DPM-Solver family's constructors. `zeroSnrFix` sets the last
 * alpha_bar to 2^-24 when betas are rescaled to zero terminal SNR (DPMSolverMultistep only).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { vpTables } from "./dpm_solver_schedule.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const tables = vpTables(parseSchedulerConfig({}), false);
 * assert.equal(tables.sigmas.length, 1000);
 * assert.ok(tables.lambdas[0]! > tables.lambdas[999]!);
 * ```
 */
export function vpTables(config: SchedulerConfig, zeroSnrFix: boolean): VpTables {
  const alphasCumprod = zeroSnrFix ? finiteAlphasCumprod(config) : computeAlphasCumprod(config);
  const sigmas = sigmasFromAlphasCumprod(alphasCumprod);
  const logSigmas = logSigmasF32(sigmas);
  const lambdas = alphasCumprod.map((a) =>
    f(log32(f(Math.sqrt(a))) - log32(f(Math.sqrt(f(1 - a)))))
  );
  return { alphasCumprod, sigmas, logSigmas, lambdas };
}

/**
 * sigma of the first training step, sqrt((1 - a_0) / a_0), as a float32 tensor op.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sigmaMinOf, vpTables } from "./dpm_solver_schedule.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const tables = vpTables(parseSchedulerConfig({}), false);
 * assert.equal(sigmaMinOf(tables), tables.sigmas[0]);
 * ```
 */
export function sigmaMinOf(tables: VpTables): number {
  return tables.sigmas[0]!;
}

/**
 * Replaces interpolated sigmas by a karras / exponential / beta / sgm_uniform / simple schedule
 * between the first and last training sigma, and the timesteps by their `_sigma_to_t` (rounded
 * for karras and Lu lambdas as Diffusers 0.27 does; truncated for exponential and beta, as
 * Diffusers 0.32 does: those two are not in 0.27's DPM solvers and are offered as newer Diffusers
 * has them; rounded for A1111's sgm_uniform and simple).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { solverSigmaSchedule, vpTables } from "./dpm_solver_schedule.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const config = parseSchedulerConfig({ beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 });
 * const tables = vpTables(config, false);
 * const s = solverSigmaSchedule("karras", 4, tables, { alpha: 0.6, beta: 0.6 });
 * assert.deepEqual(Array.from(s.timesteps), [999, 687, 146, 0]);
 * ```
 */
export function solverSigmaSchedule(
  schedule: SigmaSchedule | "lu",
  n: number,
  tables: VpTables,
  betaShape: { alpha: number; beta: number },
): { sigmas: Float64Array; timesteps: Float64Array } {
  const sigmaMin = tables.sigmas[0]!;
  const sigmaMax = tables.sigmas[tables.sigmas.length - 1]!;
  let sigmas: Float64Array;
  let round = true;
  if (schedule === "karras") {
    sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
  } else if (schedule === "lu") {
    // Diffusers _convert_to_lu with rho = 1: log-sigma uniform from the largest to the smallest
    const lMin = tables.logSigmas[0]!;
    const lMax = tables.logSigmas[tables.logSigmas.length - 1]!;
    sigmas = numpyLinspace(0, 1, n).map((r) => Math.exp(lMax + r * (lMin - lMax)));
  } else if (schedule === "exponential") {
    sigmas = exponentialSigmas(sigmaMin, sigmaMax, n);
    round = false;
  } else if (schedule === "beta") {
    sigmas = betaSigmas(sigmaMin, sigmaMax, n, betaShape.alpha, betaShape.beta);
    round = false;
  } else if (schedule === "sgm_uniform") {
    // A1111 / ComfyUI schedules (denoise extensions; Diffusers has no key for them)
    sigmas = sgmUniformSigmas(sigmaMin, sigmaMax, n, tables.logSigmas);
  } else if (schedule === "simple") {
    sigmas = simpleSigmas(n, tables.sigmas);
  } else {
    const names = CONFIG_SIGMA_SCHEDULES.map((name) => `"${name}"`);
    throw new RangeError(
      `sigma schedule "${schedule}" is not available for DPM-Solver schedulers: use ` +
        `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`,
    );
  }
  const timesteps = sigmas.map((s) => {
    const t = sigmaToTimestep(s, tables.logSigmas);
    return round ? roundHalfEven(t) : Math.trunc(t);
  });
  return { sigmas, timesteps };
}

/**
 * The `set_timesteps` schedule of Diffusers 0.27's DEIS and UniPC (no lambda clip, no
 * `final_sigmas_type`): `timesteps` and `sigmas` with one more sigma than timesteps, the last being
 * the first training sigma for the default schedule and the repeated last sigma otherwise.
 * Same steps as `clippedSolverSchedule` below without the clip; kept separate because DEIS and
 * UniPC end on a kept sigma where multistep and singlestep append 0 or sigma_min.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lastSigmaKeptSchedule, vpTables } from "./dpm_solver_schedule.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const config = parseSchedulerConfig({ beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 });
 * const tables = vpTables(config, false);
 * const s = lastSigmaKeptSchedule(config, 4, tables);
 * assert.deepEqual(Array.from(s.timesteps), [999, 749, 500, 250]);
 * assert.equal(s.sigmas[4], tables.sigmas[0]); // ends on the first training sigma
 * ```
 */
export function lastSigmaKeptSchedule(
  config: SchedulerConfig,
  numInferenceSteps: number,
  tables: VpTables,
): { timesteps: Float64Array; sigmas: Float64Array } {
  const c = config;
  let timesteps = solverTimesteps(numInferenceSteps, {
    numTrainTimesteps: c.numTrainTimesteps,
    lastTimestep: c.numTrainTimesteps,
    spacing: c.timestepSpacing,
    stepsOffset: c.stepsOffset,
  });
  let all: Float64Array;
  if (c.sigmaSchedule === "default") {
    all = new Float64Array(timesteps.length + 1);
    timesteps.forEach((t, k) => (all[k] = tables.sigmas[t]!));
    all[timesteps.length] = sigmaMinOf(tables);
  } else {
    const s = solverSigmaSchedule(c.sigmaSchedule, numInferenceSteps, tables, {
      alpha: c.betaSigmaAlpha,
      beta: c.betaSigmaBeta,
    });
    timesteps = s.timesteps;
    // karras: the last sigma is repeated
    all = new Float64Array(s.sigmas.length + 1);
    s.sigmas.forEach((v, k) => (all[k] = f(v)));
    all[s.sigmas.length] = all[s.sigmas.length - 1]!;
  }
  return { timesteps, sigmas: all };
}

/**
 * The `set_timesteps` schedule of Diffusers 0.27's DPM-Solver multistep and singlestep: spacing
 * over the timesteps that `lambda_min_clipped` leaves, the sigma schedule ("lu" for
 * `use_lu_lambdas`), then a final sigma of 0 or sigma_min (`final_sigmas_type`). `timesteps` and
 * `sigmas` as the scheduler stores them (one more sigma than timesteps, float32 values).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clippedSolverSchedule, vpTables } from "./dpm_solver_schedule.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const config = parseSchedulerConfig({ beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 });
 * const s = clippedSolverSchedule(config, 4, vpTables(config, true), "default");
 * assert.deepEqual(Array.from(s.timesteps), [999, 749, 500, 250]);
 * assert.equal(s.sigmas[4], 0); // final_sigmas_type "zero"
 * ```
 */
export function clippedSolverSchedule(
  config: SchedulerConfig,
  numInferenceSteps: number,
  tables: VpTables,
  schedule: SigmaSchedule | "lu",
): { timesteps: Float64Array; sigmas: Float64Array } {
  const c = config;
  // clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped): lambdas below the clip
  let clipped = 0;
  for (const l of tables.lambdas) if (l < c.lambdaMinClipped) clipped++;
  const lastTimestep = c.numTrainTimesteps - clipped;
  let timesteps = solverTimesteps(numInferenceSteps, {
    numTrainTimesteps: c.numTrainTimesteps,
    lastTimestep,
    spacing: c.timestepSpacing,
    stepsOffset: c.stepsOffset,
  });
  let sigmas: Float64Array;
  if (schedule === "default") {
    sigmas = Float64Array.from(timesteps, (t) => tables.sigmas[t]!);
  } else {
    ({ sigmas, timesteps } = solverSigmaSchedule(schedule, numInferenceSteps, tables, {
      alpha: c.betaSigmaAlpha,
      beta: c.betaSigmaBeta,
    }));
  }
  const last = c.finalSigmasType === "sigma_min" ? sigmaMinOf(tables) : 0;
  const all = new Float64Array(sigmas.length + 1);
  for (let k = 0; k < sigmas.length; k++) all[k] = f(sigmas[k]!);
  all[sigmas.length] = last;
  return { timesteps, sigmas: all };
}
