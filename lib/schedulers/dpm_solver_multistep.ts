// registry: "DPMSolverMultistepScheduler" -> DPMSolverMultistepScheduler
// registry: "dpm++2m" -> DPMSolverMultistepScheduler (Diffusers' "DPM++ 2M"; karras via use_karras_sigmas)
/**
 * DPM-Solver and DPM-Solver++ multistep (orders 1-3, ODE and SDE variants), step-exact with
 * Diffusers 0.27 `schedulers/scheduling_dpmsolver_multistep.py`
 * (https://github.com/huggingface/diffusers/blob/v0.27.2/src/diffusers/schedulers/scheduling_dpmsolver_multistep.py).
 *
 * Notation (Lu et al. 2022, https://arxiv.org/abs/2206.00927 and https://arxiv.org/abs/2211.01095):
 * a VP process x_t = alpha_t x_0 + sigma_t eps with alpha_t = 1 / sqrt(1 + s^2), sigma_t = s alpha_t
 * for the k-diffusion sigma s, log-SNR lambda_t = log alpha_t - log sigma_t and h = lambda_t - lambda_s.
 *
 * Torch evaluates every scalar and every tensor operation in float32; the helpers here round after
 * each operation (`Math.fround`) in the same order, so results match Diffusers to the last bit
 * except where a float32 `log`/`exp` of torch differs by one ulp from the correctly rounded value.
 *
 * @module
 */
import { alphasCumprodFromBetas, makeBetas } from "./betas.ts";
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import {
  parseSchedulerConfig,
  type PredictionType,
  type SchedulerConfig,
  type TimestepSpacing,
} from "./config.ts";
import { drawNoise } from "./noise.ts";
import { numpyArange, numpyLinspace, roundHalfEven } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import {
  betaSigmas,
  exponentialSigmas,
  karrasSigmas,
  sgmUniformSigmas,
  simpleSigmas,
} from "./sigma_schedules.ts";
import { thresholdSample } from "./thresholding.ts";
import { sigmaToAlphaSigmaT, vpAddNoise, VpScheduler } from "./vp_scheduler.ts";

export { sigmaToAlphaSigmaT, vpAddNoise };

const f = Math.fround;

// ---------------------------------------------------------------------------------------------
// Float32 scalar helpers shared by the DPM-Solver family (multistep, singlestep, UniPC, DEIS).
// ---------------------------------------------------------------------------------------------

/** float32 natural logarithm (torch.log on a 0-d float32 tensor). */
export function log32(x: number): number {
  return f(Math.log(x));
}

/** float32 exponential. */
export function exp32(x: number): number {
  return f(Math.exp(x));
}

/** float32 expm1. */
export function expm132(x: number): number {
  return f(Math.expm1(x));
}

/** Log-SNR lambda = log(alpha_t) - log(sigma_t), in float32 (+Infinity for sigma 0). */
export function lambdaOf(alpha: number, sigma: number): number {
  return f(log32(alpha) - log32(sigma));
}

/**
 * Evaluates `c[0]*a[0] + c[1]*a[1] + ...` element-wise, left to right, rounding each product and
 * each partial sum to float32 like a chain of torch tensor operations. A subtraction `- c*a` is
 * written as the term `(-c, a)`; IEEE negation makes both identical.
 */
export function combine(coefs: readonly number[], arrays: readonly Float32Array[]): Float32Array {
  const n = arrays[0]!.length;
  const out = new Float32Array(n);
  const c0 = f(coefs[0]!);
  const a0 = arrays[0]!;
  for (let j = 0; j < n; j++) out[j] = c0 * a0[j]!;
  for (let k = 1; k < arrays.length; k++) {
    const c = f(coefs[k]!);
    const a = arrays[k]!;
    // out[j] is float32; f(c * a[j]) is the rounded product; the Float32Array store rounds the sum
    for (let j = 0; j < n; j++) out[j] = out[j]! + f(c * a[j]!);
  }
  return out;
}

/** Element-wise `(c * (a - b))` in float32: a DPM-Solver divided difference such as D1. */
export function scaledDifference(c: number, a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const c32 = f(c);
  for (let j = 0; j < a.length; j++) out[j] = c32 * f(a[j]! - b[j]!);
  return out;
}

/**
 * Converts a raw model output to the data prediction x0 (DPM-Solver++ form), element-wise in
 * float32. epsilon: x0 = (x - sigma_t eps) / alpha_t; v: x0 = alpha_t x - sigma_t v; sample: as is.
 */
export function modelOutputToX0(
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
  predictionType: PredictionType,
): Float32Array {
  const [alpha, sigmaT] = sigmaToAlphaSigmaT(sigma);
  const n = sample.length;
  const out = new Float32Array(n);
  if (predictionType === "epsilon") {
    for (let j = 0; j < n; j++) out[j] = f(sample[j]! - f(sigmaT * modelOutput[j]!)) / alpha;
  } else if (predictionType === "v_prediction") {
    for (let j = 0; j < n; j++) out[j] = f(alpha * sample[j]!) - f(sigmaT * modelOutput[j]!);
  } else {
    out.set(modelOutput);
  }
  return out;
}

/**
 * Converts a raw model output to the noise prediction eps (DPM-Solver form), element-wise in
 * float32. sample: eps = (x - alpha_t x0) / sigma_t; v: eps = alpha_t v + sigma_t x.
 */
export function modelOutputToEpsilon(
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
  predictionType: PredictionType,
): Float32Array {
  const [alpha, sigmaT] = sigmaToAlphaSigmaT(sigma);
  const n = sample.length;
  const out = new Float32Array(n);
  if (predictionType === "epsilon") {
    out.set(modelOutput);
  } else if (predictionType === "v_prediction") {
    for (let j = 0; j < n; j++) out[j] = f(alpha * modelOutput[j]!) + f(sigmaT * sample[j]!);
  } else {
    for (let j = 0; j < n; j++) out[j] = f(sample[j]! - f(alpha * modelOutput[j]!)) / sigmaT;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// numpy-exact timestep spacing
// ---------------------------------------------------------------------------------------------

/**
 * Integer timesteps of the DPM-Solver family's `set_timesteps` (multistep, UniPC, DEIS): spacing
 * over [0, lastTimestep) where lastTimestep is `num_train_timesteps` minus the lambda clip.
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
 */
export function vpTables(config: SchedulerConfig, zeroSnrFix: boolean): VpTables {
  const alphasCumprod = alphasCumprodFromBetas(makeBetas(config));
  if (zeroSnrFix && config.rescaleBetasZeroSnr) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
  const n = alphasCumprod.length;
  const sigmas = new Float32Array(n);
  const logSigmas = new Float32Array(n);
  const lambdas = new Float32Array(n);
  for (let k = 0; k < n; k++) {
    const a = alphasCumprod[k]!;
    sigmas[k] = Math.sqrt(f(f(1 - a) / a));
    logSigmas[k] = Math.log(sigmas[k]!);
    lambdas[k] = f(log32(f(Math.sqrt(a))) - log32(f(Math.sqrt(f(1 - a)))));
  }
  return { alphasCumprod, sigmas, logSigmas, lambdas };
}

/** sigma of the first training step, sqrt((1 - a_0) / a_0), as a float32 tensor op. */
export function sigmaMinOf(tables: VpTables): number {
  return tables.sigmas[0]!;
}

/**
 * Replaces interpolated sigmas by a karras / exponential / beta / sgm_uniform / simple schedule
 * between the first and last training sigma, and the timesteps by their `_sigma_to_t` (rounded
 * for karras and Lu lambdas as Diffusers 0.27 does; truncated for exponential and beta, as
 * Diffusers 0.32 does: those two are not in 0.27's DPM solvers and are offered as newer Diffusers
 * has them; rounded for A1111's sgm_uniform and simple).
 */
export function solverSigmaSchedule(
  schedule: SchedulerConfig["sigmaSchedule"] | "lu",
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
    throw new RangeError(
      `sigma schedule "${schedule}" is not available for DPM-Solver schedulers: use "default", ` +
        '"karras", "exponential", "beta", "sgm_uniform" or "simple"',
    );
  }
  const timesteps = sigmas.map((s) => {
    const t = sigmaToTimestep(s, tables.logSigmas);
    return round ? roundHalfEven(t) : Math.trunc(t);
  });
  return { sigmas, timesteps };
}

/** Algorithm types of DPMSolverMultistepScheduler. */
/**
 * The `set_timesteps` schedule of Diffusers 0.27's DEIS and UniPC (no lambda clip, no
 * `final_sigmas_type`): `timesteps` and `sigmas` with one more sigma than timesteps, the last being
 * the first training sigma for the default schedule and the repeated last sigma otherwise.
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

export type DpmAlgorithmType = "dpmsolver" | "dpmsolver++" | "sde-dpmsolver" | "sde-dpmsolver++";
/** Second-order solver flavours. */
export type DpmSolverType = "midpoint" | "heun";

/** Parsed options of DPMSolverMultistepScheduler (Diffusers defaults in brackets). */
export interface DpmSolverMultistepOptions {
  /** Solver order 1, 2 or 3 [2]. */
  solverOrder: 1 | 2 | 3;
  /** [dpmsolver++]; "deis" is read as dpmsolver++ as Diffusers does. */
  algorithmType: DpmAlgorithmType;
  /** [midpoint]; logrho / bh1 / bh2 are read as midpoint. */
  solverType: DpmSolverType;
}

/** Diffusers `DPMSolverMultistepScheduler.__init__` defaults. */
export const DPM_SOLVER_MULTISTEP_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  solverOrder: 2,
  algorithmType: "dpmsolver++",
  solverType: "midpoint",
  lowerOrderFinal: true,
  eulerAtFinal: false,
  finalSigmasType: "zero",
  lambdaMinClipped: -Infinity,
  timestepSpacing: "linspace",
  stepsOffset: 0,
};

function parseOrder(name: string, order: number): 1 | 2 | 3 {
  if (order !== 1 && order !== 2 && order !== 3) {
    throw new RangeError(`${name}: solver_order ${order} is not supported; use 1, 2 or 3`);
  }
  return order;
}

/**
 * Reads `solver_type` with Diffusers' aliases (logrho / bh1 / bh2 mean midpoint for DPM-Solver).
 */
export function parseDpmSolverType(name: string, solverType: string): DpmSolverType {
  if (solverType === "midpoint" || solverType === "heun") return solverType;
  if (solverType === "logrho" || solverType === "bh1" || solverType === "bh2") return "midpoint";
  throw new RangeError(
    `${name}: solver_type "${solverType}" is not supported; use "midpoint" or "heun"`,
  );
}

/**
 * DPM-Solver(++) multistep scheduler, Diffusers `DPMSolverMultistepScheduler` (0.27).
 *
 * Update equations (h = lambda_t - lambda_s, m = converted model output, x0 for the "++" types,
 * eps otherwise; Lu et al. 2022b Eq. (5) and Algorithm 2):
 * - 1st order ++:  x_t = (sigma_t/sigma_s) x - alpha_t (e^-h - 1) m0
 * - 1st order:     x_t = (alpha_t/alpha_s) x - sigma_t (e^h - 1) m0
 * - SDE ++:        x_t = (sigma_t/sigma_s) e^-h x + alpha_t (1 - e^-2h) m0 + sigma_t sqrt(1 - e^-2h) z
 * - SDE:           x_t = (alpha_t/alpha_s) x - 2 sigma_t (e^h - 1) m0 + sigma_t sqrt(e^2h - 1) z
 * - 2nd order adds a D1 = (m0 - m1) / r0 term (r0 = h_prev / h), midpoint or Heun weighted;
 *   3rd order adds D2 from a second divided difference.
 *
 * @example
 * ```ts
 * import { DPMSolverMultistepScheduler } from "./dpm_solver_multistep.ts";
 * const s = new DPMSolverMultistepScheduler({ beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 });
 * s.setTimesteps(4);
 * console.log(Array.from(s.timesteps)); // [999, 749, 500, 250]
 * ```
 */
export class DPMSolverMultistepScheduler extends VpScheduler {
  /** The parsed config. */
  readonly config: SchedulerConfig;
  /** Solver options after Diffusers' aliasing. */
  readonly options: DpmSolverMultistepOptions;
  #tables: VpTables;
  #modelOutputs: (Float32Array | undefined)[] = [];
  #lowerOrderNums = 0;

  /** Builds the scheduler from a Diffusers `scheduler_config.json` object. */
  constructor(config: Record<string, unknown>) {
    super("DPMSolverMultistepScheduler");
    const name = "DPMSolverMultistepScheduler";
    this.config = parseSchedulerConfig(config, DPM_SOLVER_MULTISTEP_DEFAULTS);
    const c = this.config;
    let algorithmType = c.algorithmType;
    if (algorithmType === "deis") algorithmType = "dpmsolver++";
    if (
      algorithmType !== "dpmsolver" && algorithmType !== "dpmsolver++" &&
      algorithmType !== "sde-dpmsolver" && algorithmType !== "sde-dpmsolver++"
    ) {
      throw new RangeError(
        `${name}: algorithm_type "${algorithmType}" is not supported; use "dpmsolver++", ` +
          '"sde-dpmsolver++", "dpmsolver" or "sde-dpmsolver"',
      );
    }
    if (
      algorithmType !== "dpmsolver++" && algorithmType !== "sde-dpmsolver++" &&
      c.finalSigmasType === "zero"
    ) {
      throw new RangeError(
        `${name}: final_sigmas_type "zero" is not supported for algorithm_type ` +
          `"${algorithmType}"; set final_sigmas_type to "sigma_min"`,
      );
    }
    this.options = {
      solverOrder: parseOrder(name, c.solverOrder),
      algorithmType,
      solverType: parseDpmSolverType(name, c.solverType),
    };
    this.#tables = vpTables(c, true);
  }

  /** Diffusers `set_timesteps`: spacing, lambda clip, sigma schedule, final sigma. */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("DPMSolverMultistepScheduler", numInferenceSteps, c.numTrainTimesteps);
    // clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped): lambdas below the clip
    let clipped = 0;
    for (const l of this.#tables.lambdas) if (l < c.lambdaMinClipped) clipped++;
    const lastTimestep = c.numTrainTimesteps - clipped;
    let timesteps = solverTimesteps(numInferenceSteps, {
      numTrainTimesteps: c.numTrainTimesteps,
      lastTimestep,
      spacing: c.timestepSpacing,
      stepsOffset: c.stepsOffset,
    });
    let sigmas: Float64Array;
    const schedule = c.sigmaSchedule === "default" && c.useLuLambdas ? "lu" : c.sigmaSchedule;
    if (schedule === "default") {
      sigmas = Float64Array.from(timesteps, (t) => this.#tables.sigmas[t]!);
    } else {
      ({ sigmas, timesteps } = solverSigmaSchedule(schedule, numInferenceSteps, this.#tables, {
        alpha: c.betaSigmaAlpha,
        beta: c.betaSigmaBeta,
      }));
    }
    const last = c.finalSigmasType === "sigma_min" ? sigmaMinOf(this.#tables) : 0;
    const all = new Float64Array(sigmas.length + 1);
    for (let k = 0; k < sigmas.length; k++) all[k] = f(sigmas[k]!);
    all[sigmas.length] = last;
    this.setSchedule(timesteps, all);
    this.#reset();
  }

  #reset(): void {
    this.#modelOutputs = new Array(this.options.solverOrder).fill(undefined);
    this.#lowerOrderNums = 0;
  }

  /** Diffusers `convert_model_output`: x0 for the "++" types, eps otherwise. */
  #convert(modelOutput: Float32Array, sample: Float32Array, i: number): Float32Array {
    const c = this.config;
    const sigma = this.sigmas[i]!;
    const batch = this.noiseShape?.[0] ?? 1;
    if (this.options.algorithmType.endsWith("++")) {
      let x0 = modelOutputToX0(modelOutput, sample, sigma, c.predictionType);
      if (c.thresholding) {
        x0 = thresholdSample(x0, c.dynamicThresholdingRatio, c.sampleMaxValue, batch);
      }
      return x0;
    }
    let eps = modelOutputToEpsilon(modelOutput, sample, sigma, c.predictionType);
    if (c.thresholding) {
      const [alpha, sigmaT] = sigmaToAlphaSigmaT(sigma);
      let x0: Float32Array = new Float32Array(sample.length);
      for (let j = 0; j < x0.length; j++) x0[j] = f(sample[j]! - f(sigmaT * eps[j]!)) / alpha;
      x0 = thresholdSample(x0, c.dynamicThresholdingRatio, c.sampleMaxValue, batch);
      eps = new Float32Array(sample.length);
      for (let j = 0; j < x0.length; j++) eps[j] = f(sample[j]! - f(alpha * x0[j]!)) / sigmaT;
    }
    return eps;
  }

  /** One multistep DPM-Solver update from `timesteps[i]`; SDE types draw noise from `rng`. */
  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    const name = "DPMSolverMultistepScheduler.step";
    const n = this.timesteps.length;
    checkIndex(name, i, n);

    this.checkStepOrder(name, i);
    const c = this.config;
    const { solverOrder, algorithmType } = this.options;
    if (
      (c.varianceType === "learned" || c.varianceType === "learned_range") &&
      c.predictionType === "epsilon"
    ) {
      modelOutput = dropVarianceChannels(modelOutput, sample.length, this.noiseShape?.[0] ?? 1);
    }
    checkSameLength(name, modelOutput, sample);
    // Improve numerical stability for small numbers of steps (Diffusers' lower_order_final)
    const lowerOrderFinal = i === n - 1 &&
      (c.eulerAtFinal || (c.lowerOrderFinal && n < 15) || c.finalSigmasType === "zero");
    const lowerOrderSecond = i === n - 2 && c.lowerOrderFinal && n < 15;

    const m = this.#convert(modelOutput, sample, i);
    const outs = this.#modelOutputs;
    for (let k = 0; k < solverOrder - 1; k++) outs[k] = outs[k + 1];
    outs[solverOrder - 1] = m;

    const sde = algorithmType.startsWith("sde-");
    const noise = sde ? drawNoise(rng, sample.length, this.noiseShape, name) : undefined;

    const sig = this.sigmas;
    let prev: Float32Array;
    if (solverOrder === 1 || this.#lowerOrderNums < 1 || lowerOrderFinal) {
      prev = dpmSolverFirstOrderUpdate(sample, m, sig[i]!, sig[i + 1]!, algorithmType, noise);
    } else if (solverOrder === 2 || this.#lowerOrderNums < 2 || lowerOrderSecond) {
      prev = multistepSecondOrderUpdate(
        sample,
        [outs[solverOrder - 1]!, outs[solverOrder - 2]!],
        [sig[i + 1]!, sig[i]!, sig[i - 1]!],
        algorithmType,
        this.options.solverType,
        noise,
      );
    } else {
      if (sde) {
        // Diffusers 0.27's third-order update has no SDE branch and fails with UnboundLocalError
        throw new RangeError(
          `${name}: solver_order 3 is not supported with algorithm_type "${algorithmType}" ` +
            "(Diffusers 0.27 fails here too); use solver_order 2",
        );
      }
      prev = multistepThirdOrderUpdate(
        sample,
        [outs[2]!, outs[1]!, outs[0]!],
        [sig[i + 1]!, sig[i]!, sig[i - 1]!, sig[i - 2]!],
        algorithmType,
      );
    }
    if (this.#lowerOrderNums < solverOrder) this.#lowerOrderNums++;
    this.stepDone(i);
    return prev;
  }
}

/**
 * Diffusers' `model_output[:, :3]` for models that also predict a variance (`variance_type`
 * "learned" / "learned_range"): keeps, per batch item, the leading channels that match the sample
 * (NCHW, so they are the first values of each item's block). Returns `modelOutput` itself when it
 * already has the sample's size.
 */
export function dropVarianceChannels(
  modelOutput: Float32Array,
  sampleLength: number,
  batch = 1,
): Float32Array {
  if (modelOutput.length === sampleLength) return modelOutput;
  const per = sampleLength / batch;
  const perOut = modelOutput.length / batch;
  if (!Number.isInteger(per) || !Number.isInteger(perOut) || perOut < per) {
    throw new TypeError(
      `model output of ${modelOutput.length} values cannot hold a ${sampleLength}-value sample ` +
        `plus its variance in ${batch} batch items; set noiseShape to the latent shape`,
    );
  }
  const out = new Float32Array(sampleLength);
  for (let b = 0; b < batch; b++) {
    out.set(modelOutput.subarray(b * perOut, b * perOut + per), b * per);
  }
  return out;
}

/**
 * First-order DPM-Solver(++) step from sigma `sigmaS` to `sigmaT` (equivalent to DDIM), with the
 * SDE variants when `noise` is given. `m` is x0 for the "++" types and eps otherwise.
 */
export function dpmSolverFirstOrderUpdate(
  x: Float32Array,
  m: Float32Array,
  sigmaS: number,
  sigmaT: number,
  algorithmType: DpmAlgorithmType,
  noise?: Float32Array,
): Float32Array {
  const [alphaT, sT] = sigmaToAlphaSigmaT(sigmaT);
  const [alphaS, sS] = sigmaToAlphaSigmaT(sigmaS);
  const h = f(lambdaOf(alphaT, sT) - lambdaOf(alphaS, sS));
  switch (algorithmType) {
    case "dpmsolver++":
      // x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) x0          Lu et al. 2022b Eq. (5)
      return combine([f(sT / sS), -f(alphaT * f(exp32(-h) - 1))], [x, m]);
    case "dpmsolver":
      // x_t = (alpha_t / alpha_s) x - sigma_t (e^{h} - 1) eps          Lu et al. 2022a Eq. (3.7)
      return combine([f(alphaT / alphaS), -f(sT * f(exp32(h) - 1))], [x, m]);
    case "sde-dpmsolver++": {
      // x_t = (sigma_t/sigma_s) e^{-h} x + alpha_t (1 - e^{-2h}) x0 + sigma_t sqrt(1 - e^{-2h}) z
      const e2 = f(1 - exp32(f(-2 * h)));
      return combine(
        [f(f(sT / sS) * exp32(-h)), f(alphaT * e2), f(sT * f(Math.sqrt(e2)))],
        [x, m, requireNoise(noise)],
      );
    }
    case "sde-dpmsolver": {
      // x_t = (alpha_t/alpha_s) x - 2 sigma_t (e^{h} - 1) eps + sigma_t sqrt(e^{2h} - 1) z
      const e1 = f(exp32(h) - 1);
      return combine(
        [f(alphaT / alphaS), -f(2 * f(sT * e1)), f(sT * f(Math.sqrt(f(exp32(f(2 * h)) - 1))))],
        [x, m, requireNoise(noise)],
      );
    }
  }
}

function requireNoise(noise: Float32Array | undefined): Float32Array {
  if (noise === undefined) throw new TypeError("SDE DPM-Solver updates need a noise tensor");
  return noise;
}

/**
 * Second-order multistep update. `ms` = [m0 (current), m1 (previous)], `sigmas` =
 * [sigma_t (target), sigma_s0 (current), sigma_s1 (previous)].
 */
export function multistepSecondOrderUpdate(
  x: Float32Array,
  ms: readonly [Float32Array, Float32Array],
  sigmas: readonly [number, number, number],
  algorithmType: DpmAlgorithmType,
  solverType: DpmSolverType,
  noise?: Float32Array,
): Float32Array {
  const [m0, m1] = ms;
  const [alphaT, sT] = sigmaToAlphaSigmaT(sigmas[0]);
  const [alphaS0, sS0] = sigmaToAlphaSigmaT(sigmas[1]);
  const [alphaS1, sS1] = sigmaToAlphaSigmaT(sigmas[2]);
  const lambdaT = lambdaOf(alphaT, sT);
  const lambdaS0 = lambdaOf(alphaS0, sS0);
  const lambdaS1 = lambdaOf(alphaS1, sS1);
  const h = f(lambdaT - lambdaS0);
  const h0 = f(lambdaS0 - lambdaS1);
  const r0 = f(h0 / h);
  const d1 = scaledDifference(f(1 / r0), m0, m1); // D1 = (m0 - m1) / r0
  return secondOrderCombination(
    x,
    m0,
    d1,
    {
      alphaT,
      sigmaT: sT,
      alphaS: alphaS0,
      sigmaS: sS0,
      h,
    },
    algorithmType,
    solverType,
    noise,
  );
}

/**
 * The second-order combination shared by the multistep and singlestep solvers:
 * x_t from x (at sigma_s), D0 and D1 (Lu et al. 2022b Algorithm 2 / Eq. (8)).
 */
export function secondOrderCombination(
  x: Float32Array,
  d0: Float32Array,
  d1: Float32Array,
  k: { alphaT: number; sigmaT: number; alphaS: number; sigmaS: number; h: number },
  algorithmType: DpmAlgorithmType,
  solverType: DpmSolverType,
  noise?: Float32Array,
): Float32Array {
  const { alphaT, sigmaT, alphaS, sigmaS, h } = k;
  const em = f(exp32(-h) - 1); // e^{-h} - 1
  const ep = f(exp32(h) - 1); // e^{h} - 1
  switch (algorithmType) {
    case "dpmsolver++": {
      const c1 = f(sigmaT / sigmaS);
      const c2 = f(alphaT * em);
      if (solverType === "midpoint") {
        // - alpha_t (e^-h - 1) D0 - 0.5 alpha_t (e^-h - 1) D1
        return combine([c1, -c2, -f(0.5 * c2)], [x, d0, d1]);
      }
      // - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1)/h + 1) D1
      return combine([c1, -c2, f(alphaT * f(f(em / h) + 1))], [x, d0, d1]);
    }
    case "dpmsolver": {
      const c1 = f(alphaT / alphaS);
      const c2 = f(sigmaT * ep);
      if (solverType === "midpoint") return combine([c1, -c2, -f(0.5 * c2)], [x, d0, d1]);
      return combine([c1, -c2, -f(sigmaT * f(f(ep / h) - 1))], [x, d0, d1]);
    }
    case "sde-dpmsolver++": {
      const z = requireNoise(noise);
      const e2 = f(1 - exp32(f(-2 * h))); // 1 - e^{-2h}
      const c1 = f(f(sigmaT / sigmaS) * exp32(-h));
      const c2 = f(alphaT * e2);
      const cz = f(sigmaT * f(Math.sqrt(e2)));
      if (solverType === "midpoint") {
        return combine([c1, c2, f(0.5 * c2), cz], [x, d0, d1, z]);
      }
      // + alpha_t ((1 - e^{-2h}) / (-2h) + 1) D1
      return combine([c1, c2, f(alphaT * f(f(e2 / f(-2 * h)) + 1)), cz], [x, d0, d1, z]);
    }
    case "sde-dpmsolver": {
      const z = requireNoise(noise);
      const c1 = f(alphaT / alphaS);
      const c2 = f(2 * f(sigmaT * ep));
      const cz = f(sigmaT * f(Math.sqrt(f(exp32(f(2 * h)) - 1))));
      if (solverType === "midpoint") {
        return combine([c1, -c2, -f(sigmaT * ep), cz], [x, d0, d1, z]);
      }
      return combine([c1, -c2, -f(2 * f(sigmaT * f(f(ep / h) - 1))), cz], [x, d0, d1, z]);
    }
  }
}

/**
 * Third-order multistep update (ODE types only). `ms` = [m0, m1, m2] newest first, `sigmas` =
 * [sigma_t, sigma_s0, sigma_s1, sigma_s2].
 */
export function multistepThirdOrderUpdate(
  x: Float32Array,
  ms: readonly [Float32Array, Float32Array, Float32Array],
  sigmas: readonly [number, number, number, number],
  algorithmType: DpmAlgorithmType,
): Float32Array {
  const [m0, m1, m2] = ms;
  const [alphaT, sT] = sigmaToAlphaSigmaT(sigmas[0]);
  const [alphaS0, sS0] = sigmaToAlphaSigmaT(sigmas[1]);
  const [alphaS1, sS1] = sigmaToAlphaSigmaT(sigmas[2]);
  const [alphaS2, sS2] = sigmaToAlphaSigmaT(sigmas[3]);
  const lambdaT = lambdaOf(alphaT, sT);
  const lambdaS0 = lambdaOf(alphaS0, sS0);
  const lambdaS1 = lambdaOf(alphaS1, sS1);
  const lambdaS2 = lambdaOf(alphaS2, sS2);
  const h = f(lambdaT - lambdaS0);
  const h0 = f(lambdaS0 - lambdaS1);
  const h1 = f(lambdaS1 - lambdaS2);
  const r0 = f(h0 / h);
  const r1 = f(h1 / h);
  const d10 = scaledDifference(f(1 / r0), m0, m1);
  const d11 = scaledDifference(f(1 / r1), m1, m2);
  const n = x.length;
  const d1 = new Float32Array(n);
  const d2 = new Float32Array(n);
  const k1 = f(r0 / f(r0 + r1));
  const k2 = f(1 / f(r0 + r1));
  for (let j = 0; j < n; j++) {
    const diff = f(d10[j]! - d11[j]!);
    d1[j] = d10[j]! + f(k1 * diff); // D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1)
    d2[j] = k2 * diff; // D2 = (D1_0 - D1_1) / (r0 + r1)
  }
  const hh = f(h * h);
  if (algorithmType === "dpmsolver++") {
    const em = f(exp32(-h) - 1);
    return combine([
      f(sT / sS0),
      -f(alphaT * em),
      f(alphaT * f(f(em / h) + 1)),
      -f(alphaT * f(f(f(em + h) / hh) - 0.5)),
    ], [x, m0, d1, d2]);
  }
  if (algorithmType === "dpmsolver") {
    const ep = f(exp32(h) - 1);
    return combine([
      f(alphaT / alphaS0),
      -f(sT * ep),
      -f(sT * f(f(ep / h) - 1)),
      -f(sT * f(f(f(ep - h) / hh) - 0.5)),
    ], [x, m0, d1, d2]);
  }
  throw new RangeError(`third-order DPM-Solver has no "${algorithmType}" form`);
}
