/**
 * Shared pieces of every scheduler: the parsed config, beta / alpha tables, timestep spacing,
 * sigma schedules and the `Scheduler` interface.
 *
 * Numbers follow Diffusers 0.27 (`src/diffusers/schedulers/scheduling_*.py`): tables that Diffusers
 * builds as float32 torch tensors are float32 here (every operation rounded with `Math.fround`),
 * tables that it builds with numpy in float64 are float64 here.
 *
 * @module
 */

import type { NoiseGenerator } from "../rng/mod.ts";

/** A source of standard-normal noise (`TorchCpuGenerator`, `PhiloxGenerator` from lib/rng). */
export type { NoiseGenerator };

/**
 * A stateful sampler with the calling convention of a Diffusers scheduler.
 *
 * The denoising loop is
 * ```ts
 * import { createScheduler } from "./mod.ts";
 * import { TorchCpuGenerator } from "../rng/mod.ts";
 * const model = (x: Float32Array, t: number) => x.map((v) => 0.1 * v + 0.05 * Math.sin(t / 100));
 * const s = createScheduler("euler-a", { beta_schedule: "scaled_linear" });
 * const rng = new TorchCpuGenerator(0);
 * s.setTimesteps(20);
 * let x: Float32Array = rng.randn([1, 4, 8, 8]).map((v) => v * s.initNoiseSigma);
 * for (let i = 0; i < s.timesteps.length; i++) {
 *   const eps = model(s.scaleModelInput(x, i), s.timesteps[i]!);
 *   x = s.step(eps, i, x, rng);
 * }
 * ```
 * `i` is always an index into the full `timesteps` array; an img2img loop runs `i` from the
 * `startIndex` returned by `img2imgTimesteps`. Stochastic steps draw their noise with
 * `rng.randn(noiseShape ?? [sample.length])`: torch's CPU `randn` stream depends only on the
 * element count, so the flat shape gives the same numbers as `[1, 4, 64, 64]`.
 */
/** What `Scheduler.img2imgTimesteps` returns. */
export interface Img2ImgTimesteps {
  /** The timesteps the img2img loop runs, `timesteps.slice(startIndex)`. */
  timesteps: Float64Array;
  /** Index into the full `timesteps` of the first img2img step (t_start * order). */
  startIndex: number;
}

export interface Scheduler {
  /** Computes `timesteps` (and `sigmas`) for a run of `numInferenceSteps` and resets history. */
  setTimesteps(numInferenceSteps: number): void;
  /** Exactly Diffusers' `scheduler.timesteps` after `set_timesteps`. */
  readonly timesteps: Float64Array;
  /** Diffusers' `scheduler.sigmas` (float32 values), for schedulers that have them. */
  readonly sigmas?: Float64Array;
  /** Standard deviation of the initial noise. */
  readonly initNoiseSigma: number;
  /** Model evaluations per step (2 for Heun / KDPM2). */
  readonly order: number;
  /** Shape handed to `rng.randn`; unset means `[sample.length]`. */
  noiseShape?: number[];
  /** Scales the denoising model input at `timesteps[i]`. */
  scaleModelInput(sample: Float32Array, i: number): Float32Array;
  /** One update from `timesteps[i]` to the next; returns the new sample. */
  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array;
  /** Noises a clean sample to the noise level of `timesteps[i]` (img2img start). */
  addNoise(original: Float32Array, noise: Float32Array, i: number): Float32Array;
  /**
   * Calls `setTimesteps(numInferenceSteps)` and returns the img2img tail, as
   * StableDiffusionImg2ImgPipeline.get_timesteps does (`startIndex` = t_start * order).
   */
  img2imgTimesteps(numInferenceSteps: number, strength: number): Img2ImgTimesteps;
}

/** Diffusers `beta_schedule`. */
export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
/** Diffusers `prediction_type`. */
export type PredictionType = "epsilon" | "v_prediction" | "sample";
/** Diffusers `timestep_spacing`. */
export type TimestepSpacing = "leading" | "linspace" | "trailing";
/** Noise schedule for sigma-based samplers (`sgm_uniform` and `simple` as A1111 defines them). */
export type SigmaSchedule =
  | "default"
  | "karras"
  | "exponential"
  | "beta"
  | "sgm_uniform"
  | "simple";

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

const SIGMA_SCHEDULES: readonly SigmaSchedule[] = [
  "default",
  "karras",
  "exponential",
  "beta",
  "sgm_uniform",
  "simple",
];

/**
 * Parses a Diffusers scheduler config (snake_case keys) into a `SchedulerConfig`.
 * `classDefaults` are the keyword defaults of the scheduler class's `__init__`.
 *
 * @example
 * ```ts
 * import { parseSchedulerConfig } from "./common.ts";
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
    if (!(SIGMA_SCHEDULES as readonly string[]).includes(s)) {
      throw new RangeError(
        `Scheduler config "sigma_schedule" is "${s}"; use one of ${SIGMA_SCHEDULES.join(", ")}`,
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

const f32 = Math.fround;
/** Float32 square root (correctly rounded, like torch's float32 sqrt / `** 0.5`). */
export function sqrt32(x: number): number {
  return f32(Math.sqrt(x));
}

/**
 * `torch.linspace(start, end, steps, dtype=float32)` on CPU: the step is a float32, the first half
 * counts up from `start` and the second half down from `end` (ATen RangeFactoriesKernel.cpp).
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)));
  }
  return out;
}

/** `numpy.linspace(start, stop, num)` in float64 (`i * step + start`, last value = stop). */
export function numpyLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

/** `numpy.arange(start, stop, step)` in float64 (`start + i * delta`, numpy's fill rule). */
export function numpyArange(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(n);
  const delta = (start + step) - start;
  for (let i = 0; i < n; i++) out[i] = start + i * delta;
  return out;
}

/** `numpy.round` (round half to even). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; numpy rounds ties to the even neighbour.
  if (Math.abs(x % 1) === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/**
 * Diffusers `betas_for_alpha_bar` (squaredcos_cap_v2): betas from the cosine alpha-bar of
 * Nichol & Dhariwal 2021, Eq. (17), computed in float64 and stored as float32.
 */
export function betasForAlphaBar(numDiffusionTimesteps: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
  const out = new Float32Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps;
    const t2 = (i + 1) / numDiffusionTimesteps;
    out[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return out;
}

/**
 * Diffusers `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1) in float32:
 * shift and scale sqrt(alpha_bar) so the last step has zero SNR.
 */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const sqrtBar = new Float32Array(n);
  const bar0 = alphasCumprodFromBetas(betas);
  for (let i = 0; i < n; i++) sqrtBar[i] = Math.sqrt(bar0[i]!);
  const s0 = sqrtBar[0]!;
  const sT = sqrtBar[n - 1]!;
  const scale = f32(s0 / f32(s0 - sT));
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32(sqrtBar[i]! - sT) * scale);
    bar[i] = f32(v * v);
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(bar[i]! / bar[i - 1]!));
  return out;
}

/** Betas exactly as the Diffusers constructors build them (float32), including the zero-SNR rescale. */
export function makeBetas(config: SchedulerConfig): Float32Array {
  let betas: Float32Array;
  if (config.trainedBetas !== null) {
    betas = Float32Array.from(config.trainedBetas);
  } else if (config.betaSchedule === "linear") {
    betas = torchLinspaceF32(config.betaStart, config.betaEnd, config.numTrainTimesteps);
  } else if (config.betaSchedule === "scaled_linear") {
    // torch.linspace(beta_start**0.5, beta_end**0.5, n) ** 2; the roots are Python float64.
    const r = torchLinspaceF32(
      Math.sqrt(config.betaStart),
      Math.sqrt(config.betaEnd),
      config.numTrainTimesteps,
    );
    betas = r.map((x) => f32(x * x));
  } else {
    betas = betasForAlphaBar(config.numTrainTimesteps);
  }
  return config.rescaleBetasZeroSnr ? rescaleZeroTerminalSnr(betas) : betas;
}

/**
 * `torch.cumprod(1 - betas)` for a float32 tensor on CPU: the running product is kept in float64
 * (ATen's `acc_type<float>` on CPU) and each output is rounded to float32.
 */
export function alphasCumprodFromBetas(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f32(1 - betas[i]!);
    out[i] = acc;
  }
  return out;
}

/** `alphas_cumprod` of a config: `makeBetas` then the float32 cumulative product. */
export function computeAlphasCumprod(config: SchedulerConfig): Float32Array {
  return alphasCumprodFromBetas(makeBetas(config));
}

/** Training sigmas `((1 - a) / a) ** 0.5` in float32, ascending in t (index = timestep). */
export function sigmasFromAlphasCumprod(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
}

/** `np.log` of float32 sigmas, kept as float32 like numpy does. */
export function logSigmasF32(sigmas: Float32Array): Float32Array {
  return sigmas.map((s) => Math.log(s));
}

/** `numpy.interp(x, xp, fp)` (xp ascending; clamps outside). */
export function interp(
  x: ArrayLike<number>,
  xp: ArrayLike<number>,
  fp: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(x.length);
  const n = xp.length;
  for (let k = 0; k < x.length; k++) {
    const v = x[k]!;
    if (v <= xp[0]!) {
      out[k] = fp[0]!;
      continue;
    }
    if (v >= xp[n - 1]!) {
      out[k] = fp[n - 1]!;
      continue;
    }
    let lo = 0;
    let hi = n - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (xp[mid]! <= v) lo = mid;
      else hi = mid;
    }
    const slope = (fp[hi]! - fp[lo]!) / (xp[hi]! - xp[lo]!);
    out[k] = slope * (v - xp[lo]!) + fp[lo]!;
  }
  return out;
}

/**
 * Diffusers `_sigma_to_t`: the (fractional) training timestep whose sigma is `sigma`, by linear
 * interpolation of log-sigma between the two neighbouring training steps.
 * With `float32`, the log and the weight are rounded to float32 as numpy does for float32 input.
 */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>, float32 = false): number {
  // float32: the sigma is a float32 tensor (KDPM2's interpolated sigmas), so numpy computes the
  // log and the weight in float32.
  const f = float32 ? f32 : (x: number) => x;
  const logSigma = f(Math.log(Math.max(sigma, 1e-10)));
  const n = logSigmas.length;
  // low_idx = last index whose log-sigma is <= log_sigma (cumsum(dists >= 0).argmax()).
  let count = 0;
  let lowIdx = 0;
  let best = -1;
  for (let i = 0; i < n; i++) {
    if (logSigma - logSigmas[i]! >= 0) count++;
    if (count > best) {
      best = count;
      lowIdx = i;
    }
  }
  lowIdx = Math.min(lowIdx, n - 2);
  const highIdx = lowIdx + 1;
  const low = logSigmas[lowIdx]!;
  const high = logSigmas[highIdx]!;
  let w = f(f(low - logSigma) / f(low - high));
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * lowIdx + w * highIdx;
}

/** k-diffusion `DiscreteSchedule.t_to_sigma` in float32: log-linear interpolation of sigmas. */
export function tToSigma(t: number, logSigmas: ArrayLike<number>): number {
  const tt = f32(t);
  const lo = Math.floor(tt);
  const hi = Math.ceil(tt);
  const w = f32(tt - lo);
  const ls = f32(f32(f32(1 - w) * logSigmas[lo]!) + f32(w * logSigmas[hi]!));
  return f32(Math.exp(ls));
}

/** Karras et al. 2022 Eq. (5) with rho = 7, from sigmaMax down to sigmaMin (float64). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): Float64Array {
  const ramp = numpyLinspace(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Diffusers `_convert_to_exponential`: log-uniform sigmas from sigmaMax to sigmaMin. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  return numpyLinspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}

function logGamma(x: number): number {
  // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
  const c = [
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

function betaContinuedFraction(x: number, a: number, b: number): number {
  // Lentz's method for the continued fraction of the incomplete beta function.
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - (a + b) * x / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 500; m++) {
    const m2 = 2 * m;
    let aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return h;
}

/** Regularized incomplete beta function I_x(a, b). */
export function betaCdf(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lbt = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  if (x < (a + 1) / (a + b + 2)) return Math.exp(lbt) * betaContinuedFraction(x, a, b) / a;
  return 1 - Math.exp(lbt) * betaContinuedFraction(1 - x, b, a) / b;
}

/** Inverse of `betaCdf` in x (scipy.stats.beta.ppf), by bisection to double precision. */
export function betaPpf(p: number, a: number, b: number): number {
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  let lo = 0;
  let hi = 1;
  for (let k = 0; k < 200 && hi - lo > 0; k++) {
    const mid = 0.5 * (lo + hi);
    if (mid === lo || mid === hi) break;
    if (betaCdf(mid, a, b) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/**
 * Diffusers `_convert_to_beta` (Lee et al. 2024, "Beta Sampling is All You Need"): sigmas at the
 * beta(alpha, beta) quantiles of 1 - linspace(0, 1, n).
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
 */
export function simpleSigmas(n: number, trainingSigmas: ArrayLike<number>): Float64Array {
  const len = trainingSigmas.length;
  const ss = len / n;
  const out = new Float64Array(n);
  for (let x = 0; x < n; x++) out[x] = trainingSigmas[len - 1 - Math.trunc(x * ss)]!;
  return out;
}

/**
 * Replaces the default (interpolated, descending) sigmas by the configured schedule, as the
 * Diffusers `_convert_to_karras` / `_convert_to_exponential` / `_convert_to_beta` calls do, with
 * `sigma_min` / `sigma_max` from the config when set, else the ends of `inSigmas`.
 * Returns `inSigmas` itself for "default".
 */
export function convertSigmas(
  inSigmas: Float64Array,
  n: number,
  config: SchedulerConfig,
  trainingSigmas: Float32Array,
  logSigmas: ArrayLike<number>,
): Float64Array {
  const sigmaMin = config.sigmaMin ?? inSigmas[inSigmas.length - 1]!;
  const sigmaMax = config.sigmaMax ?? inSigmas[0]!;
  switch (config.sigmaSchedule) {
    case "default":
      return inSigmas;
    case "karras":
      return karrasSigmas(sigmaMin, sigmaMax, n);
    case "exponential":
      return exponentialSigmas(sigmaMin, sigmaMax, n);
    case "beta":
      return betaSigmas(sigmaMin, sigmaMax, n, config.betaSigmaAlpha, config.betaSigmaBeta);
    case "sgm_uniform":
      return sgmUniformSigmas(
        trainingSigmas[0]!,
        trainingSigmas[trainingSigmas.length - 1]!,
        n,
        logSigmas,
      );
    case "simple":
      return simpleSigmas(n, trainingSigmas);
  }
}

/**
 * Timesteps as Diffusers' sigma-based schedulers (Euler, LMS, Heun, ...) space them, in float64
 * before their cast to float32: linspace (not rounded), leading (+ steps_offset) or trailing.
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  n: number,
  stepsOffset: number,
): Float64Array {
  if (spacing === "linspace") {
    return numpyLinspace(0, numTrainTimesteps - 1, n).reverse();
  }
  if (spacing === "leading") {
    const ratio = Math.floor(numTrainTimesteps / n);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = (n - 1 - i) * ratio + stepsOffset;
    return out;
  }
  const ratio = numTrainTimesteps / n;
  return numpyArange(numTrainTimesteps, 0, -ratio).map((t) => roundHalfEven(t) - 1);
}

/** Throws a RangeError unless `n` is a usable number of inference steps. */
export function checkSteps(name: string, n: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`${name}: numInferenceSteps must be a positive integer, got ${n}`);
  }
  if (n > numTrainTimesteps) {
    throw new RangeError(
      `${name}: numInferenceSteps ${n} exceeds num_train_timesteps ${numTrainTimesteps}; use fewer steps`,
    );
  }
}

/** Throws a RangeError unless `i` indexes `timesteps`. */
export function checkIndex(name: string, i: number, length: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= length) {
    throw new RangeError(
      `${name}: step index ${i} is outside timesteps [0, ${length}); call setTimesteps() first`,
    );
  }
}

/** Throws a TypeError unless the two arrays have the same length. */
export function checkSameLength(name: string, a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length) {
    throw new TypeError(
      `${name}: model output has ${a.length} values but the sample has ${b.length}; pass tensors of one shape`,
    );
  }
}

/**
 * StableDiffusionImg2ImgPipeline.get_timesteps: keeps the last int(N * strength) steps.
 * `startIndex` is t_start * order (what Diffusers passes to set_begin_index).
 */
export function img2imgSlice(
  timesteps: Float64Array,
  numInferenceSteps: number,
  strength: number,
  order: number,
): Img2ImgTimesteps {
  if (!(strength >= 0 && strength <= 1)) {
    throw new RangeError(`img2img strength must be in [0, 1], got ${strength}`);
  }
  const initTimestep = Math.min(Math.trunc(numInferenceSteps * strength), numInferenceSteps);
  const tStart = Math.max(numInferenceSteps - initTimestep, 0);
  const startIndex = tStart * order;
  return { timesteps: timesteps.slice(startIndex), startIndex };
}

/**
 * Draws the step noise; `what` names the caller for the error raised when no generator is given.
 */
export function drawNoise(
  rng: NoiseGenerator | undefined,
  length: number,
  shape: number[] | undefined,
  what: string,
): Float32Array {
  if (rng === undefined) {
    throw new TypeError(
      `${what} is stochastic and needs a NoiseGenerator: pass rng (e.g. new TorchCpuGenerator(seed))`,
    );
  }
  const s = shape ?? [length];
  const noise = rng.randn(s);
  if (noise.length !== length) {
    throw new TypeError(
      `${what}: noiseShape [${
        s.join(", ")
      }] has ${noise.length} values but the sample has ${length}`,
    );
  }
  return noise;
}

/**
 * Diffusers `_threshold_sample` (dynamic thresholding, Saharia et al. 2022): per batch item, clamp
 * to the `ratio` quantile of |x| (at least 1, at most maxValue) and divide by it.
 */
export function thresholdSample(
  sample: Float32Array,
  ratio: number,
  maxValue: number,
  batch = 1,
): Float32Array {
  const out = new Float32Array(sample.length);
  const per = sample.length / batch;
  for (let b = 0; b < batch; b++) {
    const part = sample.subarray(b * per, (b + 1) * per);
    const abs = Float32Array.from(part, Math.abs).sort();
    // torch.quantile, linear interpolation between the two nearest ranks.
    const pos = ratio * (per - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, per - 1);
    const w = pos - lo;
    const a = abs[lo]!;
    const c = abs[hi]!;
    let s = w < 0.5 ? f32(a + f32(w * f32(c - a))) : f32(c - f32(f32(c - a) * (1 - w)));
    s = Math.min(Math.max(s, 1), maxValue);
    for (let k = 0; k < per; k++) {
      const v = Math.min(Math.max(part[k]!, -s), s);
      out[b * per + k] = f32(v / s);
    }
  }
  return out;
}

/**
 * Noising of the DDPM family at training timestep `t` (`add_noise` of DDPM / DDIM / PNDM / LCM):
 * sqrt(a_t) * x0 + sqrt(1 - a_t) * noise, Ho et al. 2020 Eq. (4), in float32.
 */
export function addNoiseAlphas(
  alphasCumprod: Float32Array,
  original: Float32Array,
  noise: Float32Array,
  t: number,
): Float32Array {
  checkSameLength("addNoise", original, noise);
  const a = alphasCumprod[t];
  if (a === undefined) {
    throw new RangeError(`addNoise: timestep ${t} is outside [0, ${alphasCumprod.length})`);
  }
  const sa = sqrt32(a);
  const sb = sqrt32(f32(1 - a));
  const out = new Float32Array(original.length);
  for (let k = 0; k < out.length; k++) out[k] = f32(sa * original[k]!) + f32(sb * noise[k]!);
  return out;
}

/** Noising of the sigma (k-diffusion) family: x0 + sigma * noise, in float32. */
export function addNoiseSigma(
  original: Float32Array,
  noise: Float32Array,
  sigma: number,
): Float32Array {
  checkSameLength("addNoise", original, noise);
  const out = new Float32Array(original.length);
  for (let k = 0; k < out.length; k++) out[k] = original[k]! + f32(noise[k]! * sigma);
  return out;
}

/** Float32 `1 / (sigma ** 2 + 1) ** 0.5` input scaling of the k-diffusion schedulers. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const s = f32(sigma);
  const denom = sqrt32(f32(f32(s * s) + 1));
  const out = new Float32Array(sample.length);
  for (let k = 0; k < out.length; k++) out[k] = sample[k]! / denom;
  return out;
}

/**
 * The k-diffusion denoised estimate from a model output at noise level `sigma`, in float32:
 * epsilon: x - sigma * eps; v_prediction: v * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)
 * (Salimans & Ho 2022, Eq. 2 in the sigma parametrisation); sample: the output itself.
 */
export function kDenoised(
  predictionType: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
): Float32Array {
  checkSameLength("step", modelOutput, sample);
  const s = f32(sigma);
  const out = new Float32Array(sample.length);
  if (predictionType === "epsilon") {
    for (let k = 0; k < out.length; k++) out[k] = sample[k]! - f32(s * modelOutput[k]!);
  } else if (predictionType === "v_prediction") {
    const s2p1 = f32(f32(s * s) + 1);
    const c = f32(-s / sqrt32(s2p1));
    for (let k = 0; k < out.length; k++) {
      out[k] = f32(modelOutput[k]! * c) + f32(sample[k]! / s2p1);
    }
  } else {
    out.set(modelOutput);
  }
  return out;
}

/** The sigma table of a k-diffusion-style Diffusers scheduler before its per-class layout. */
export interface KSigmaSchedule {
  /** float32 timestep values (float64 from `_sigma_to_t` when a non-default schedule is used). */
  timesteps: Float64Array;
  /** `numInferenceSteps` sigmas in float64, before the cast to float32 and the appended 0. */
  sigmas: Float64Array;
  /** Training sigmas ascending in t (float32) and their float32 logs. */
  trainingSigmas: Float32Array;
  logSigmas: Float32Array;
}

/**
 * The shared `set_timesteps` body of EulerDiscrete, EulerAncestral, LMS, Heun and KDPM2(-a):
 * spaced float32 timesteps, sigmas by `np.interp` on the training sigmas, then the configured
 * sigma schedule with timesteps from `_sigma_to_t` (rounded when `roundTimesteps`, as KDPM2 does).
 */
export function kSigmaSchedule(
  config: SchedulerConfig,
  alphasCumprod: Float32Array,
  numInferenceSteps: number,
  roundTimesteps = false,
): KSigmaSchedule {
  const ts = spacedTimesteps(
    config.timestepSpacing,
    config.numTrainTimesteps,
    numInferenceSteps,
    config.stepsOffset,
  ).map(f32);
  const trainingSigmas = sigmasFromAlphasCumprod(alphasCumprod);
  const logSigmas = logSigmasF32(trainingSigmas);
  const index = Float64Array.from(trainingSigmas, (_, k) => k);
  let sigmas = interp(ts, index, trainingSigmas);
  let timesteps = ts;
  if (config.sigmaSchedule !== "default") {
    sigmas = convertSigmas(sigmas, numInferenceSteps, config, trainingSigmas, logSigmas);
    timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    if (roundTimesteps) timesteps = timesteps.map(roundHalfEven);
  }
  return { timesteps, sigmas, trainingSigmas, logSigmas };
}

/** torch.lerp(a, b, 0.5) on float32: `b - (b - a) * 0.5` (ATen's branch for weight >= 0.5). */
export function lerpHalf32(a: number, b: number): number {
  return f32(b - f32(f32(b - a) * 0.5));
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

/** Largest value of an array (Diffusers `sigmas.max()`). */
export function arrayMax(a: ArrayLike<number>): number {
  let m = -Infinity;
  for (let k = 0; k < a.length; k++) if (a[k]! > m) m = a[k]!;
  return m;
}

/**
 * `init_noise_sigma` of the k-diffusion schedulers: max sigma for linspace / trailing spacing,
 * else sqrt(max^2 + 1), in float32.
 */
export function kInitNoiseSigma(spacing: TimestepSpacing, sigmas: ArrayLike<number>): number {
  const m = f32(arrayMax(sigmas));
  return spacing === "leading" ? sqrt32(f32(f32(m * m) + 1)) : m;
}
