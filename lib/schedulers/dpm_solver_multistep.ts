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
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import {
  type DpmAlgorithmType,
  dpmSolverFirstOrderUpdate,
  type DpmSolverType,
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
import { drawNoise } from "./noise.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { thresholdSample } from "./thresholding.ts";
import { sigmaToAlphaSigmaT, VpScheduler } from "./vp_scheduler.ts";

const f = Math.fround;

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
      solverOrder: parseSolverOrder(name, c.solverOrder),
      algorithmType,
      solverType: parseDpmSolverType(name, c.solverType),
    };
    this.#tables = vpTables(c, true);
  }

  /** Diffusers `set_timesteps`: spacing, lambda clip, sigma schedule, final sigma. */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("DPMSolverMultistepScheduler", numInferenceSteps, c.numTrainTimesteps);
    const schedule = c.sigmaSchedule === "default" && c.useLuLambdas ? "lu" : c.sigmaSchedule;
    const { timesteps, sigmas } = clippedSolverSchedule(
      c,
      numInferenceSteps,
      this.#tables,
      schedule,
    );
    this.setSchedule(timesteps, sigmas);
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
      // threshold the x0 that eps implies, then go back to eps
      let x0 = modelOutputToX0(eps, sample, sigma, "epsilon");
      x0 = thresholdSample(x0, c.dynamicThresholdingRatio, c.sampleMaxValue, batch);
      eps = modelOutputToEpsilon(x0, sample, sigma, "sample");
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
  const k = { alphaT, sigmaT: sT, alphaS: alphaS0, sigmaS: sS0, h };
  return thirdOrderCombination(x, m0, d1, d2, k, algorithmType);
}
