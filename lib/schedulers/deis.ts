// registry: "DEISMultistepScheduler" -> DEISMultistepScheduler
// registry: "deis" -> DEISMultistepScheduler
/**
 * DEIS multistep (log-rho, orders 1-3), step-exact with Diffusers 0.27
 * `schedulers/scheduling_deis_multistep.py`
 * (https://github.com/huggingface/diffusers/blob/v0.27.2/src/diffusers/schedulers/scheduling_deis_multistep.py).
 *
 * DEIS (Zhang & Chen 2022, https://arxiv.org/abs/2204.13902) integrates the exponential-integrator
 * form of the probability-flow ODE in rho = sigma_t / alpha_t with a polynomial extrapolation of
 * eps in log(rho) (the "logrho" variant):
 *   x_t / alpha_t = x_s / alpha_s + sum_j c_j eps_j,   c_j = integral over [rho_s, rho_t] of the
 *   Lagrange basis polynomial l_j(log rho) d rho, evaluated in closed form (`ind_fn` below).
 *
 * @module
 */
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import {
  dpmSolverFirstOrderUpdate,
  modelOutputToEpsilon,
  modelOutputToX0,
  parseSolverOrder,
} from "./dpm_solver_math.ts";
import { lastSigmaKeptSchedule, type VpTables, vpTables } from "./dpm_solver_schedule.ts";
import { log32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { thresholdSample } from "./thresholding.ts";
import { sigmaToAlphaSigmaT, VpScheduler } from "./vp_scheduler.ts";

const f = Math.fround;

/** Diffusers `DEISMultistepScheduler.__init__` defaults. */
export const DEIS_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  solverOrder: 2,
  algorithmType: "deis",
  solverType: "logrho",
  lowerOrderFinal: true,
  timestepSpacing: "linspace",
  stepsOffset: 0,
};

/**
 * DEIS multistep scheduler, Diffusers `DEISMultistepScheduler` (0.27).
 *
 * @example
 * ```ts
 * import { DEISMultistepScheduler } from "./deis.ts";
 * const s = new DEISMultistepScheduler({});
 * s.setTimesteps(4);
 * console.log(Array.from(s.timesteps)); // [999, 749, 500, 250]
 * ```
 */
export class DEISMultistepScheduler extends VpScheduler {
  /** The parsed config. */
  readonly config: SchedulerConfig;
  readonly #solverOrder: 1 | 2 | 3;
  #tables: VpTables;
  #modelOutputs: (Float32Array | undefined)[] = [];
  #lowerOrderNums = 0;

  /** Builds the scheduler from a Diffusers `scheduler_config.json` object. */
  constructor(config: Record<string, unknown>) {
    super("DEISMultistepScheduler");
    const name = "DEISMultistepScheduler";
    // 0.27's DEIS has no rescale_betas_zero_snr key (Diffusers ignores it)
    this.config = { ...parseSchedulerConfig(config, DEIS_DEFAULTS), rescaleBetasZeroSnr: false };
    const c = this.config;
    if (!["deis", "dpmsolver", "dpmsolver++"].includes(c.algorithmType)) {
      throw new RangeError(
        `${name}: algorithm_type "${c.algorithmType}" is not supported; use "deis"`,
      );
    }
    if (!["logrho", "midpoint", "heun", "bh1", "bh2"].includes(c.solverType)) {
      throw new RangeError(`${name}: solver_type "${c.solverType}" is not supported; use "logrho"`);
    }
    this.#solverOrder = parseSolverOrder(name, c.solverOrder);
    this.#tables = vpTables(c, false);
  }

  /** Diffusers `set_timesteps`: the last sigma is the first training sigma (never zero). */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("DEISMultistepScheduler", numInferenceSteps, c.numTrainTimesteps);
    const { timesteps, sigmas } = lastSigmaKeptSchedule(c, numInferenceSteps, this.#tables);
    this.setSchedule(timesteps, sigmas);
    this.#modelOutputs = new Array(this.#solverOrder).fill(undefined);
    this.#lowerOrderNums = 0;
  }

  /** Diffusers `convert_model_output`: x0 (thresholded if configured), back to eps. */
  #convert(modelOutput: Float32Array, sample: Float32Array, i: number): Float32Array {
    const c = this.config;
    const sigma = this.sigmas[i]!;
    let x0 = modelOutputToX0(modelOutput, sample, sigma, c.predictionType);
    if (c.thresholding) {
      const batch = this.noiseShape?.[0] ?? 1;
      x0 = thresholdSample(x0, c.dynamicThresholdingRatio, c.sampleMaxValue, batch);
    }
    return modelOutputToEpsilon(x0, sample, sigma, "sample");
  }

  /**
   * One DEIS multistep update from `timesteps[i]`. Same warm-up and lower-order bookkeeping as
   * `DPMSolverMultistepScheduler.step`; kept separate because DEIS's lower_order_final has no
   * euler_at_final / final_sigmas_type terms and its updates take eps.
   */
  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    _rng?: NoiseGenerator,
  ): Float32Array {
    const name = "DEISMultistepScheduler.step";
    const n = this.timesteps.length;
    checkIndex(name, i, n);
    checkSameLength(name, modelOutput, sample);
    this.checkStepOrder(name, i);
    const c = this.config;
    const k = this.#solverOrder;
    const lowerOrderFinal = i === n - 1 && c.lowerOrderFinal && n < 15;
    const lowerOrderSecond = i === n - 2 && c.lowerOrderFinal && n < 15;
    const m = this.#convert(modelOutput, sample, i);
    const outs = this.#modelOutputs;
    for (let j = 0; j < k - 1; j++) outs[j] = outs[j + 1];
    outs[k - 1] = m;
    const sig = this.sigmas;
    let prev: Float32Array;
    if (k === 1 || this.#lowerOrderNums < 1 || lowerOrderFinal) {
      prev = deisFirstOrderUpdate(sample, m, sig[i]!, sig[i + 1]!);
    } else if (k === 2 || this.#lowerOrderNums < 2 || lowerOrderSecond) {
      prev = deisSecondOrderUpdate(
        sample,
        [outs[k - 1]!, outs[k - 2]!],
        [sig[i + 1]!, sig[i]!, sig[i - 1]!],
      );
    } else {
      prev = deisThirdOrderUpdate(
        sample,
        [outs[2]!, outs[1]!, outs[0]!],
        [sig[i + 1]!, sig[i]!, sig[i - 1]!, sig[i - 2]!],
      );
    }
    if (this.#lowerOrderNums < k) this.#lowerOrderNums++;
    this.stepDone(i);
    return prev;
  }
}

/** First-order DEIS (= DDIM): x_t = (alpha_t/alpha_s) x - sigma_t (e^h - 1) eps. */
export function deisFirstOrderUpdate(
  x: Float32Array,
  eps: Float32Array,
  sigmaS: number,
  sigmaT: number,
): Float32Array {
  return dpmSolverFirstOrderUpdate(x, eps, sigmaS, sigmaT, "dpmsolver");
}

/** rho = sigma_t / alpha_t of a k-diffusion sigma, float32 (equal to sigma up to rounding). */
function rhoOf(sigma: number): [number, number] {
  const [alpha, s] = sigmaToAlphaSigmaT(sigma);
  return [alpha, f(s / alpha)];
}

/**
 * Second-order DEIS: `eps` = [eps_s0 (current), eps_s1], `sigmas` = [sigma_t, sigma_s0, sigma_s1].
 * ind(t, b, c) = integral of (log t - log c) / (log b - log c) dt = t (log t - log c - 1) / (log b - log c).
 */
export function deisSecondOrderUpdate(
  x: Float32Array,
  eps: readonly [Float32Array, Float32Array],
  sigmas: readonly [number, number, number],
): Float32Array {
  const [alphaT, rhoT] = rhoOf(sigmas[0]);
  const [alphaS0, rhoS0] = rhoOf(sigmas[1]);
  const [, rhoS1] = rhoOf(sigmas[2]);
  const ind = (t: number, b: number, c: number) =>
    f(f(t * f(f(-log32(c) + log32(t)) - 1)) / f(log32(b) - log32(c)));
  const coef1 = f(ind(rhoT, rhoS0, rhoS1) - ind(rhoS0, rhoS0, rhoS1));
  const coef2 = f(ind(rhoT, rhoS1, rhoS0) - ind(rhoS0, rhoS1, rhoS0));
  // x_t = alpha_t (x / alpha_s0 + coef1 eps0 + coef2 eps1)
  const [e0, e1] = eps;
  const out = new Float32Array(x.length);
  for (let j = 0; j < x.length; j++) {
    const inner = f(f(f(x[j]! / alphaS0) + f(coef1 * e0[j]!)) + f(coef2 * e1[j]!));
    out[j] = alphaT * inner;
  }
  return out;
}

/**
 * Third-order DEIS: `eps` = [eps_s0, eps_s1, eps_s2] newest first, `sigmas` =
 * [sigma_t, sigma_s0, sigma_s1, sigma_s2]; the quadratic Lagrange basis in log rho is integrated
 * in closed form.
 */
export function deisThirdOrderUpdate(
  x: Float32Array,
  eps: readonly [Float32Array, Float32Array, Float32Array],
  sigmas: readonly [number, number, number, number],
): Float32Array {
  const [alphaT, rhoT] = rhoOf(sigmas[0]);
  const [alphaS0, rhoS0] = rhoOf(sigmas[1]);
  const [, rhoS1] = rhoOf(sigmas[2]);
  const [, rhoS2] = rhoOf(sigmas[3]);
  const ind = (t: number, b: number, c: number, d: number) => {
    const lt = log32(t);
    const lc = log32(c);
    const ld = log32(d);
    const lb = log32(b);
    // t (log c (log d - log t + 1) - log d log t + log d + log t^2 - 2 log t + 2)
    let v = f(lc * f(f(ld - lt) + 1));
    v = f(v - f(ld * lt));
    v = f(v + ld);
    v = f(v + f(lt * lt));
    v = f(v - f(2 * lt));
    v = f(v + 2);
    const numerator = f(t * v);
    const denominator = f(f(lb - lc) * f(lb - ld));
    return f(numerator / denominator);
  };
  const coef1 = f(ind(rhoT, rhoS0, rhoS1, rhoS2) - ind(rhoS0, rhoS0, rhoS1, rhoS2));
  const coef2 = f(ind(rhoT, rhoS1, rhoS2, rhoS0) - ind(rhoS0, rhoS1, rhoS2, rhoS0));
  const coef3 = f(ind(rhoT, rhoS2, rhoS0, rhoS1) - ind(rhoS0, rhoS2, rhoS0, rhoS1));
  const [e0, e1, e2] = eps;
  const out = new Float32Array(x.length);
  for (let j = 0; j < x.length; j++) {
    let inner = f(f(x[j]! / alphaS0) + f(coef1 * e0[j]!));
    inner = f(inner + f(coef2 * e1[j]!));
    inner = f(inner + f(coef3 * e2[j]!));
    out[j] = alphaT * inner;
  }
  return out;
}
