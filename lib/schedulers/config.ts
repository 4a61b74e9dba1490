/**
 * The parsed scheduler config: a Diffusers `scheduler_config.json` (plus the options Diffusers
 * passes to `step()`) in camelCase, with the defaults shared by most Diffusers schedulers.
 *
 * @module
 */
import { CONFIG_SIGMA_SCHEDULES, type SigmaSchedule } from "./sigma_schedules.ts";

/** Diffusers `beta_schedule`. */
export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
/** Diffusers `prediction_type`. */
export type PredictionType = "epsilon" | "v_prediction" | "sample";
/** Diffusers `timestep_spacing`. */
export type TimestepSpacing = "leading" | "linspace" | "trailing";

/**
 * A Diffusers `scheduler_config.json` (plus the options Diffusers passes to `step()`), parsed into
 * camelCase. Keys not listed are ignored, as Diffusers does; `raw` keeps the original object for
 * schedulers that read rarer keys.
 */
export interface SchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas: number[] | null;
  predictionType: PredictionType;
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  rescaleBetasZeroSnr: boolean;
  /**
   * From `use_karras_sigmas` / `use_exponential_sigmas` / `use_beta_sigmas`, or denoise's own key
   * `sigma_schedule` ("karras", "sgm_uniform", ...), which wins when present.
   */
  sigmaSchedule: SigmaSchedule;
  sigmaMin: number | null;
  sigmaMax: number | null;
  /** alpha and beta of the beta-distribution schedule (Diffusers fixes both at 0.6). */
  betaSigmaAlpha: number;
  betaSigmaBeta: number;
  interpolationType: "linear" | "log_linear";
  timestepType: "discrete" | "continuous";
  clipSample: boolean;
  clipSampleRange: number;
  setAlphaToOne: boolean;
  thresholding: boolean;
  dynamicThresholdingRatio: number;
  sampleMaxValue: number;
  skipPrkSteps: boolean;
  varianceType: string | null;
  // DPM-Solver family (used by schedulers part 2).
  solverOrder: number;
  algorithmType: string;
  solverType: string;
  lowerOrderFinal: boolean;
  eulerAtFinal: boolean;
  finalSigmasType: "zero" | "sigma_min";
  lambdaMinClipped: number;
  useLuLambdas: boolean;
  // LCM / TCD.
  originalInferenceSteps: number;
  timestepScaling: number;
  // Options Diffusers takes in step().
  eta: number;
  useClippedModelOutput: boolean;
  sChurn: number;
  sTmin: number;
  sTmax: number;
  sNoise: number;
  /** The object that was parsed (snake_case keys). */
  raw: Readonly<Record<string, unknown>>;
}

/** Defaults shared by most Diffusers schedulers; each class overrides its own. */
export const BASE_CONFIG_DEFAULTS: Readonly<Omit<SchedulerConfig, "raw">> = {
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: "linear",
  trainedBetas: null,
  predictionType: "epsilon",
  timestepSpacing: "linspace",
  stepsOffset: 0,
  rescaleBetasZeroSnr: false,
  sigmaSchedule: "default",
  sigmaMin: null,
  sigmaMax: null,
  betaSigmaAlpha: 0.6,
  betaSigmaBeta: 0.6,
  interpolationType: "linear",
  timestepType: "discrete",
  clipSample: true,
  clipSampleRange: 1.0,
  setAlphaToOne: true,
  thresholding: false,
  dynamicThresholdingRatio: 0.995,
  sampleMaxValue: 1.0,
  skipPrkSteps: false,
  varianceType: null,
  solverOrder: 2,
  algorithmType: "dpmsolver++",
  solverType: "midpoint",
  lowerOrderFinal: true,
  eulerAtFinal: false,
  finalSigmasType: "zero",
  lambdaMinClipped: -Infinity,
  useLuLambdas: false,
  originalInferenceSteps: 50,
  timestepScaling: 10.0,
  eta: 0.0,
  useClippedModelOutput: false,
  sChurn: 0.0,
  sTmin: 0.0,
  sTmax: Infinity,
  sNoise: 1.0,
};

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function num(raw: Record<string, unknown>, key: string, fallback: number): number {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v === "number") return v;
  // JSON cannot hold infinities; Diffusers configs written by Python may carry "-inf" strings.
  if (v === "inf" || v === "Infinity") return Infinity;
  if (v === "-inf" || v === "-Infinity") return -Infinity;
  throw new TypeError(`Scheduler config "${key}" must be a number, got ${JSON.stringify(v)}`);
}

function bool(raw: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v === "boolean") return v;
  throw new TypeError(`Scheduler config "${key}" must be true or false, got ${JSON.stringify(v)}`);
}

function str(raw: Record<string, unknown>, key: string, fallback: string): string {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v === "string") return v;
  throw new TypeError(`Scheduler config "${key}" must be a string, got ${JSON.stringify(v)}`);
}

function choice<T extends string>(
  raw: Record<string, unknown>,
  key: string,
  fallback: T,
  allowed: readonly T[],
): T {
  const v = str(raw, key, fallback);
  if (!(allowed as readonly string[]).includes(v)) {
    throw new RangeError(
      `Scheduler config "${key}" is "${v}"; use one of ${allowed.map((a) => `"${a}"`).join(", ")}`,
    );
  }
  return v as T;
}

/**
 * Parses a Diffusers scheduler config (snake_case keys) into a `SchedulerConfig`.
 * `classDefaults` are the keyword defaults of the scheduler class's `__init__`.
 *
 * @example
 * ```ts
 * import { parseSchedulerConfig } from "./config.ts";
 * const c = parseSchedulerConfig({ beta_schedule: "scaled_linear", foo: 1 });
 * console.log(c.betaSchedule); // "scaled_linear"
 * ```
 */
export function parseSchedulerConfig(
  raw: Record<string, unknown>,
  classDefaults: Partial<Omit<SchedulerConfig, "raw">> = {},
): SchedulerConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError("Scheduler config must be a JSON object of snake_case keys");
  }
  const d: Mutable<Omit<SchedulerConfig, "raw">> = { ...BASE_CONFIG_DEFAULTS, ...classDefaults };
  const tb = raw["trained_betas"];
  let trainedBetas: number[] | null = d.trainedBetas;
  if (tb !== undefined && tb !== null) {
    if (!Array.isArray(tb) || !tb.every((x) => typeof x === "number")) {
      throw new TypeError('Scheduler config "trained_betas" must be an array of numbers or null');
    }
    trainedBetas = tb as number[];
  }
  let sigmaSchedule: SigmaSchedule = d.sigmaSchedule;
  if (bool(raw, "use_karras_sigmas", false)) sigmaSchedule = "karras";
  else if (bool(raw, "use_exponential_sigmas", false)) sigmaSchedule = "exponential";
  else if (bool(raw, "use_beta_sigmas", false)) sigmaSchedule = "beta";
  if (raw["sigma_schedule"] !== undefined && raw["sigma_schedule"] !== null) {
    const s = str(raw, "sigma_schedule", "default").replace("-", "_");
    if (!(CONFIG_SIGMA_SCHEDULES as readonly string[]).includes(s)) {
      throw new RangeError(
        `Scheduler config "sigma_schedule" is "${s}"; use one of ${
          CONFIG_SIGMA_SCHEDULES.join(", ")
        }`,
      );
    }
    sigmaSchedule = s as SigmaSchedule;
  }
  const numTrain = num(raw, "num_train_timesteps", d.numTrainTimesteps);
  if (!Number.isInteger(numTrain) || numTrain < 2) {
    throw new RangeError(`Scheduler config "num_train_timesteps" must be an integer >= 2`);
  }
  const sigmaMin = raw["sigma_min"];
  const sigmaMax = raw["sigma_max"];
  return {
    numTrainTimesteps: numTrain,
    betaStart: num(raw, "beta_start", d.betaStart),
    betaEnd: num(raw, "beta_end", d.betaEnd),
    betaSchedule: choice(raw, "beta_schedule", d.betaSchedule, [
      "linear",
      "scaled_linear",
      "squaredcos_cap_v2",
    ]),
    trainedBetas,
    predictionType: choice(raw, "prediction_type", d.predictionType, [
      "epsilon",
      "v_prediction",
      "sample",
    ]),
    timestepSpacing: choice(raw, "timestep_spacing", d.timestepSpacing, [
      "leading",
      "linspace",
      "trailing",
    ]),
    stepsOffset: num(raw, "steps_offset", d.stepsOffset),
    rescaleBetasZeroSnr: bool(raw, "rescale_betas_zero_snr", d.rescaleBetasZeroSnr),
    sigmaSchedule,
    sigmaMin: sigmaMin === undefined || sigmaMin === null ? d.sigmaMin : num(raw, "sigma_min", 0),
    sigmaMax: sigmaMax === undefined || sigmaMax === null ? d.sigmaMax : num(raw, "sigma_max", 0),
    betaSigmaAlpha: num(raw, "beta_sigma_alpha", d.betaSigmaAlpha),
    betaSigmaBeta: num(raw, "beta_sigma_beta", d.betaSigmaBeta),
    interpolationType: choice(raw, "interpolation_type", d.interpolationType, [
      "linear",
      "log_linear",
    ]),
    timestepType: choice(raw, "timestep_type", d.timestepType, ["discrete", "continuous"]),
    clipSample: bool(raw, "clip_sample", d.clipSample),
    clipSampleRange: num(raw, "clip_sample_range", d.clipSampleRange),
    setAlphaToOne: bool(raw, "set_alpha_to_one", d.setAlphaToOne),
    thresholding: bool(raw, "thresholding", d.thresholding),
    dynamicThresholdingRatio: num(raw, "dynamic_thresholding_ratio", d.dynamicThresholdingRatio),
    sampleMaxValue: num(raw, "sample_max_value", d.sampleMaxValue),
    skipPrkSteps: bool(raw, "skip_prk_steps", d.skipPrkSteps),
    varianceType: raw["variance_type"] === undefined || raw["variance_type"] === null
      ? d.varianceType
      : str(raw, "variance_type", ""),
    solverOrder: num(raw, "solver_order", d.solverOrder),
    algorithmType: str(raw, "algorithm_type", d.algorithmType),
    solverType: str(raw, "solver_type", d.solverType),
    lowerOrderFinal: bool(raw, "lower_order_final", d.lowerOrderFinal),
    eulerAtFinal: bool(raw, "euler_at_final", d.eulerAtFinal),
    finalSigmasType: choice(raw, "final_sigmas_type", d.finalSigmasType, ["zero", "sigma_min"]),
    lambdaMinClipped: num(raw, "lambda_min_clipped", d.lambdaMinClipped),
    useLuLambdas: bool(raw, "use_lu_lambdas", d.useLuLambdas),
    originalInferenceSteps: num(raw, "original_inference_steps", d.originalInferenceSteps),
    timestepScaling: num(raw, "timestep_scaling", d.timestepScaling),
    eta: num(raw, "eta", d.eta),
    useClippedModelOutput: bool(raw, "use_clipped_model_output", d.useClippedModelOutput),
    sChurn: num(raw, "s_churn", d.sChurn),
    sTmin: num(raw, "s_tmin", d.sTmin),
    sTmax: num(raw, "s_tmax", d.sTmax),
    sNoise: num(raw, "s_noise", d.sNoise),
    raw: Object.freeze({ ...raw }),
  };
}

/**
 * Overrides for classes whose Diffusers 0.27 `__init__` lacks `sigma_min` / `sigma_max` (all
 * k-diffusion-style ones but Euler): there Diffusers ignores the keys and Karras uses the ends of
 * the interpolated sigmas.
 */
export const NO_SIGMA_RANGE: Readonly<{ sigmaMin: null; sigmaMax: null }> = {
  sigmaMin: null,
  sigmaMax: null,
};
