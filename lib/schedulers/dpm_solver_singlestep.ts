// registry: "DPMSolverSinglestepScheduler" -> DPMSolverSinglestepScheduler
/**
 * DPM-Solver(++) singlestep, step-exact with Diffusers 0.27
 * `schedulers/scheduling_dpmsolver_singlestep.py`
 * (https://github.com/huggingface/diffusers/blob/v0.27.2/src/diffusers/schedulers/scheduling_dpmsolver_singlestep.py).
 *
 * A singlestep solver of order k spends k model evaluations on one jump: the intermediate
 * evaluations are ordinary steps on the timestep grid, and the k-th step recomputes the sample
 * from the sample at the start of the group (Lu et al. 2022, https://arxiv.org/abs/2206.00927,
 * Algorithms 1 and 2; DPM-Solver++ https://arxiv.org/abs/2211.01095, Algorithm 1).
 *
 * @module
 */
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import {
  dpmSolverFirstOrderUpdate,
  dropVarianceChannels,
  lambdaOf,
  modelOutputToEpsilon,
  modelOutputToX0,
  parseDpmSolverType,
  parseSolverOrder,
  scaledDifference,
  secondOrderCombination,
  thirdOrderCombination,
} from "./dpm_solver_math.ts";
import { clippedSolverSchedule, type VpTables, vpTables } from "./dpm_solver_schedule.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { thresholdSample } from "./thresholding.ts";
import { sigmaToAlphaSigmaT, VpScheduler } from "./vp_scheduler.ts";

const f = Math.fround;

/** Diffusers `DPMSolverSinglestepScheduler.__init__` defaults. */
export const DPM_SOLVER_SINGLESTEP_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  solverOrder: 2,
  algorithmType: "dpmsolver++",
  solverType: "midpoint",
  lowerOrderFinal: false,
  finalSigmasType: "zero",
  lambdaMinClipped: -Infinity,
  timestepSpacing: "linspace",
  stepsOffset: 0,
};

/**
 * Diffusers `get_order_list`: the solver order used at each of `steps` steps.
 *
 * @example
 * ```ts
 * import { singlestepOrderList } from "./dpm_solver_singlestep.ts";
 * singlestepOrderList(5, 2, true); // [1, 2, 1, 2, 1]
 * ```
 */
export function singlestepOrderList(
  steps: number,
  order: 1 | 2 | 3,
  lowerOrderFinal: boolean,
): number[] {
  const rep = (pattern: number[], times: number) =>
    Array.from({ length: Math.max(0, times) }, () => pattern).flat();
  if (order === 1) return new Array(steps).fill(1);
  if (lowerOrderFinal) {
    if (order === 3) {
      if (steps % 3 === 0) return [...rep([1, 2, 3], steps / 3 - 1), 1, 2, 1];
      if (steps % 3 === 1) return [...rep([1, 2, 3], Math.floor(steps / 3)), 1];
      return [...rep([1, 2, 3], Math.floor(steps / 3)), 1, 2];
    }
    if (steps % 2 === 0) return [...rep([1, 2], steps / 2 - 1), 1, 1];
    return [...rep([1, 2], Math.floor(steps / 2)), 1];
  }
  if (order === 3) return rep([1, 2, 3], Math.floor(steps / 3));
  return rep([1, 2], Math.floor(steps / 2));
}

/**
 * DPM-Solver(++) singlestep scheduler, Diffusers `DPMSolverSinglestepScheduler` (0.27).
 *
 * Equations (h = lambda_t - lambda_s over the whole group, x at the group start s):
 * - order 1: x_t = (sigma_t/sigma_s) x - alpha_t (e^-h - 1) x0           (DPM-Solver++ Eq. (5))
 * - order 2: D0 = m_{s}, D1 = (m_{s1} - m_s) / r0 with r0 = h_0 / h; midpoint or Heun weights
 * - order 3: D1 = (r0 D1_0 - r1 D1_1) / (r0 - r1), D2 = 2 (D1_1 - D1_0) / (r0 - r1)
 *
 * `lower_order_final` is switched on for good (as Diffusers re-registers it) when the step count
 * is not a multiple of the order or `final_sigmas_type` is "zero".
 *
 * @example
 * ```ts
 * import { DPMSolverSinglestepScheduler } from "./dpm_solver_singlestep.ts";
 * const s = new DPMSolverSinglestepScheduler({});
 * s.setTimesteps(4);
 * console.log(Array.from(s.timesteps)); // [999, 749, 500, 250]
 * ```
 */
export class DPMSolverSinglestepScheduler extends VpScheduler {
  /** The parsed config (`lowerOrderFinal` may be switched on by `setTimesteps`). */
  readonly config: SchedulerConfig;
  readonly #solverOrder: 1 | 2 | 3;
  readonly #algorithmType: "dpmsolver" | "dpmsolver++";
  readonly #solverType: "midpoint" | "heun";
  #lowerOrderFinal: boolean;
  #tables: VpTables;
  #orderList: number[] = [];
  #modelOutputs: (Float32Array | undefined)[] = [];
  #groupSample: Float32Array | undefined;

  /** Builds the scheduler from a Diffusers `scheduler_config.json` object. */
  constructor(config: Record<string, unknown>) {
    super("DPMSolverSinglestepScheduler");
    const name = "DPMSolverSinglestepScheduler";
    // 0.27's singlestep solver has no timestep_spacing, steps_offset or zero-SNR rescale keys
    const parsed = parseSchedulerConfig(config, DPM_SOLVER_SINGLESTEP_DEFAULTS);
    this.config = {
      ...parsed,
      timestepSpacing: "linspace",
      stepsOffset: 0,
      rescaleBetasZeroSnr: false,
    };
    const c = this.config;
    let algorithmType = c.algorithmType;
    if (algorithmType === "deis") algorithmType = "dpmsolver++";
    if (algorithmType !== "dpmsolver" && algorithmType !== "dpmsolver++") {
      throw new RangeError(
        `${name}: algorithm_type "${algorithmType}" is not supported; use "dpmsolver++" or "dpmsolver"`,
      );
    }
    if (algorithmType !== "dpmsolver++" && c.finalSigmasType === "zero") {
      throw new RangeError(
        `${name}: final_sigmas_type "zero" is not supported for algorithm_type "${algorithmType}"; ` +
          'set final_sigmas_type to "sigma_min"',
      );
    }
    this.#solverOrder = parseSolverOrder(name, c.solverOrder);
    this.#algorithmType = algorithmType;
    this.#solverType = parseDpmSolverType(name, c.solverType);
    this.#lowerOrderFinal = c.lowerOrderFinal;
    this.#tables = vpTables(c, false);
  }

  /** Solver order of each step, Diffusers' `order_list`. */
  get orderList(): readonly number[] {
    return this.#orderList;
  }

  /** Diffusers `set_timesteps`. */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("DPMSolverSinglestepScheduler", numInferenceSteps, c.numTrainTimesteps);
    // spacing is linspace and steps_offset 0 here (the constructor fixes both); no Lu lambdas
    const { timesteps, sigmas } = clippedSolverSchedule(
      c,
      numInferenceSteps,
      this.#tables,
      c.sigmaSchedule,
    );
    this.setSchedule(timesteps, sigmas);
    // Diffusers re-registers lower_order_final=True in these two cases, permanently
    if (!this.#lowerOrderFinal && numInferenceSteps % this.#solverOrder !== 0) {
      this.#lowerOrderFinal = true;
    }
    if (!this.#lowerOrderFinal && c.finalSigmasType === "zero") this.#lowerOrderFinal = true;
    this.#orderList = singlestepOrderList(
      numInferenceSteps,
      this.#solverOrder,
      this.#lowerOrderFinal,
    );
    this.#modelOutputs = new Array(this.#solverOrder).fill(undefined);
    this.#groupSample = undefined;
  }

  #convert(modelOutput: Float32Array, sample: Float32Array, i: number): Float32Array {
    const c = this.config;
    const sigma = this.sigmas[i]!;
    if (this.#algorithmType === "dpmsolver++") {
      const x0 = modelOutputToX0(modelOutput, sample, sigma, c.predictionType);
      if (!c.thresholding) return x0;
      const batch = this.noiseShape?.[0] ?? 1;
      return thresholdSample(x0, c.dynamicThresholdingRatio, c.sampleMaxValue, batch);
    }
    // Diffusers' singlestep dpmsolver branch does not threshold
    return modelOutputToEpsilon(modelOutput, sample, sigma, c.predictionType);
  }

  /** One singlestep update at `timesteps[i]` (no noise is drawn). */
  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    _rng?: NoiseGenerator,
  ): Float32Array {
    const name = "DPMSolverSinglestepScheduler.step";
    checkIndex(name, i, this.timesteps.length);
    if (this.config.varianceType === "learned_range" && this.config.predictionType === "epsilon") {
      modelOutput = dropVarianceChannels(modelOutput, sample.length, this.noiseShape?.[0] ?? 1);
    }
    checkSameLength(name, modelOutput, sample);
    this.checkStepOrder(name, i);
    const k = this.#solverOrder;
    const outs = this.#modelOutputs;
    const m = this.#convert(modelOutput, sample, i);
    for (let j = 0; j < k - 1; j++) outs[j] = outs[j + 1];
    outs[k - 1] = m;
    let order = this.#orderList[i] ?? 1;
    // img2img may start inside a group: fall back to the orders the history allows
    while (outs[k - order] === undefined) order--;
    if (order === 1) this.#groupSample = sample;
    const x = this.#groupSample!;
    const sig = this.sigmas;
    let prev: Float32Array;
    if (order === 1) {
      prev = dpmSolverFirstOrderUpdate(x, m, sig[i]!, sig[i + 1]!, this.#algorithmType);
    } else if (order === 2) {
      prev = singlestepSecondOrderUpdate(
        x,
        [outs[k - 1]!, outs[k - 2]!],
        [sig[i + 1]!, sig[i]!, sig[i - 1]!],
        this.#algorithmType,
        this.#solverType,
      );
    } else {
      prev = singlestepThirdOrderUpdate(
        x,
        [outs[k - 1]!, outs[k - 2]!, outs[k - 3]!],
        [sig[i + 1]!, sig[i]!, sig[i - 1]!, sig[i - 2]!],
        this.#algorithmType,
        this.#solverType,
      );
    }
    this.stepDone(i);
    return prev;
  }
}

/**
 * Singlestep second-order update from the group start x (at sigma_s1) to sigma_t.
 * `ms` = [m0 (at s0, newest), m1 (at s1)], `sigmas` = [sigma_t, sigma_s0, sigma_s1].
 */
export function singlestepSecondOrderUpdate(
  x: Float32Array,
  ms: readonly [Float32Array, Float32Array],
  sigmas: readonly [number, number, number],
  algorithmType: "dpmsolver" | "dpmsolver++",
  solverType: "midpoint" | "heun",
): Float32Array {
  const [m0, m1] = ms;
  const [alphaT, sT] = sigmaToAlphaSigmaT(sigmas[0]);
  const [alphaS0, sS0] = sigmaToAlphaSigmaT(sigmas[1]);
  const [alphaS1, sS1] = sigmaToAlphaSigmaT(sigmas[2]);
  const lambdaT = lambdaOf(alphaT, sT);
  const lambdaS0 = lambdaOf(alphaS0, sS0);
  const lambdaS1 = lambdaOf(alphaS1, sS1);
  const h = f(lambdaT - lambdaS1);
  const r0 = f(f(lambdaS0 - lambdaS1) / h);
  const d1 = scaledDifference(f(1 / r0), m0, m1); // D1 = (m0 - m1) / r0, D0 = m1
  return secondOrderCombination(
    x,
    m1,
    d1,
    {
      alphaT,
      sigmaT: sT,
      alphaS: alphaS1,
      sigmaS: sS1,
      h,
    },
    algorithmType,
    solverType,
  );
}

/**
 * Singlestep third-order update from the group start x (at sigma_s2) to sigma_t.
 * `ms` = [m0, m1, m2] newest first, `sigmas` = [sigma_t, sigma_s0, sigma_s1, sigma_s2].
 */
export function singlestepThirdOrderUpdate(
  x: Float32Array,
  ms: readonly [Float32Array, Float32Array, Float32Array],
  sigmas: readonly [number, number, number, number],
  algorithmType: "dpmsolver" | "dpmsolver++",
  solverType: "midpoint" | "heun",
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
  const h = f(lambdaT - lambdaS2);
  const r0 = f(f(lambdaS0 - lambdaS2) / h);
  const r1 = f(f(lambdaS1 - lambdaS2) / h);
  const d10 = scaledDifference(f(1 / r1), m1, m2); // D1_0 = (m1 - m2) / r1
  const d11 = scaledDifference(f(1 / r0), m0, m2); // D1_1 = (m0 - m2) / r0
  const dr = f(r0 - r1);
  const k = { alphaT, sigmaT: sT, alphaS: alphaS2, sigmaS: sS2, h };
  if (solverType === "midpoint") {
    // x_t = (sigma_t/sigma_s2) x - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1)/h + 1) D1_1: the
    // Heun-weighted second-order combination with D1 = D1_1
    return secondOrderCombination(x, m2, d11, k, algorithmType, "heun");
  }
  const n = x.length;
  const d1 = new Float32Array(n);
  const d2 = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    d1[j] = f(f(r0 * d10[j]!) - f(r1 * d11[j]!)) / dr; // (r0 D1_0 - r1 D1_1) / (r0 - r1)
    d2[j] = f(2 * f(d11[j]! - d10[j]!)) / dr; // 2 (D1_1 - D1_0) / (r0 - r1)
  }
  return thirdOrderCombination(x, m2, d1, d2, k, algorithmType);
}
