// registry: "UniPCMultistepScheduler" -> UniPCMultistepScheduler
// registry: "unipc" -> UniPCMultistepScheduler
/**
 * UniPC multistep predictor-corrector (B(h) = h "bh1" or e^h - 1 "bh2"), step-exact with
 * Diffusers 0.27 `schedulers/scheduling_unipc_multistep.py`
 * (https://github.com/huggingface/diffusers/blob/v0.27.2/src/diffusers/schedulers/scheduling_unipc_multistep.py).
 *
 * Zhao et al. 2023 (https://arxiv.org/abs/2302.04867), data-prediction form (predict_x0):
 *   UniP-p: x_t = (sigma_t/sigma_s) x - alpha_t h phi_1(-h) m0 - alpha_t B(h) sum_k a_k D_k
 *   UniC-p: the same from the previous sample, with the new model output m_t added to the
 *           divided differences: - alpha_t B(h) (sum_k a_k D_k + a_p (m_t - m0))
 * where D_k = (m_k - m0) / r_k, r_k = (lambda_k - lambda_s) / h, and the weights a solve
 * R a = b with R_ij = r_j^(i-1), b_i = h phi_{i+1}(h) i! / B(h) (Eq. (8) and Algorithm 2 there).
 *
 * @module
 */
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { lambdaOf, modelOutputToEpsilon, modelOutputToX0 } from "./dpm_solver_math.ts";
import { lastSigmaKeptSchedule, type VpTables, vpTables } from "./dpm_solver_schedule.ts";
import { combine, expm132 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { thresholdSample } from "./thresholding.ts";
import { sigmaToAlphaSigmaT, VpScheduler } from "./vp_scheduler.ts";

const f = Math.fround;

/** Diffusers `UniPCMultistepScheduler.__init__` defaults. */
export const UNIPC_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  solverOrder: 2,
  solverType: "bh2",
  lowerOrderFinal: true,
  timestepSpacing: "linspace",
  stepsOffset: 0,
};

/**
 * Solves the small linear system `a x = b` (n <= 4) by Gaussian elimination with partial
 * pivoting in float32, as LAPACK's sgesv behind torch.linalg.solve does (up to rounding order).
 */
export function solveFloat32(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row) => row.map(f));
  const v = b.map(f);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs(m[r]![col]!) > Math.abs(m[piv]![col]!)) piv = r;
    }
    if (m[piv]![col] === 0) {
      throw new RangeError("UniPC: singular coefficient matrix; the timesteps must be distinct");
    }
    [m[col], m[piv]] = [m[piv]!, m[col]!];
    [v[col], v[piv]] = [v[piv]!, v[col]!];
    const pivotRow = m[col]!;
    for (let r = col + 1; r < n; r++) {
      const row = m[r]!;
      const l = f(row[col]! / pivotRow[col]!);
      for (let k = col; k < n; k++) row[k] = f(row[k]! - f(l * pivotRow[k]!));
      v[r] = f(v[r]! - f(l * v[col]!));
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = v[r]!;
    for (let k = r + 1; k < n; k++) s = f(s - f(m[r]![k]! * x[k]!));
    x[r] = f(s / m[r]![r]!);
  }
  return x;
}

/** Coefficients shared by the UniP and UniC updates for one step. */
interface UniCoefficients {
  /** h phi_1(hh) = e^{hh} - 1 with hh = -h (data prediction) or h (noise prediction). */
  hPhi1: number;
  /** B(h). */
  bH: number;
  /** R rows: R[i][j] = r_j^i. */
  r: number[][];
  /** b vector. */
  b: number[];
}

function uniCoefficients(
  h: number,
  rks: number[],
  order: number,
  predictX0: boolean,
  solverType: "bh1" | "bh2",
): UniCoefficients {
  const hh = predictX0 ? -h : h;
  const hPhi1 = expm132(hh); // h phi_1(h) = e^h - 1
  let hPhiK = f(f(hPhi1 / hh) - 1);
  let factorial = 1;
  const bH = solverType === "bh1" ? hh : expm132(hh);
  const r: number[][] = [];
  const b: number[] = [];
  const ks = [...rks, 1];
  for (let i = 1; i <= order; i++) {
    // torch.pow(rks, i - 1): 1, r, r*r (exponents above 2 only for orders above 3)
    r.push(ks.map((x) => (i === 1 ? 1 : f(x ** (i - 1)))));
    b.push(f(f(hPhiK * factorial) / bH));
    factorial *= i + 1;
    hPhiK = f(f(hPhiK / hh) - f(1 / factorial));
  }
  return { hPhi1, bH, r, b };
}

/**
 * UniPC multistep scheduler, Diffusers `UniPCMultistepScheduler` (0.27): `predict_x0`,
 * `solver_type` bh1 / bh2, `disable_corrector` (step indices without the corrector),
 * `lower_order_final`. `solver_p` (an external predictor scheduler) is not supported.
 *
 * @example
 * ```ts
 * import { UniPCMultistepScheduler } from "./unipc.ts";
 * const s = new UniPCMultistepScheduler({});
 * s.setTimesteps(4);
 * console.log(Array.from(s.timesteps)); // [999, 749, 500, 250]
 * ```
 */
export class UniPCMultistepScheduler extends VpScheduler {
  /** The parsed config. */
  readonly config: SchedulerConfig;
  /** Data prediction (UniPC's x0 form) when true, noise prediction otherwise. */
  readonly predictX0: boolean;
  /** Step indices whose corrector is skipped. */
  readonly disableCorrector: readonly number[];
  readonly #solverOrder: number;
  readonly #solverType: "bh1" | "bh2";
  #tables: VpTables;
  #modelOutputs: (Float32Array | undefined)[] = [];
  #lowerOrderNums = 0;
  #lastSample: Float32Array | undefined;
  #thisOrder = 0;

  /** Builds the scheduler from a Diffusers `scheduler_config.json` object. */
  constructor(config: Record<string, unknown>) {
    super("UniPCMultistepScheduler");
    const name = "UniPCMultistepScheduler";
    // 0.27's UniPC has no rescale_betas_zero_snr key (Diffusers ignores it)
    this.config = { ...parseSchedulerConfig(config, UNIPC_DEFAULTS), rescaleBetasZeroSnr: false };
    const c = this.config;
    const raw = c.raw;
    const solverType = c.solverType;
    if (solverType === "bh1" || solverType === "bh2") {
      this.#solverType = solverType;
    } else if (["midpoint", "heun", "logrho"].includes(solverType)) {
      this.#solverType = "bh2";
    } else {
      throw new RangeError(
        `${name}: solver_type "${solverType}" is not supported; use "bh1" or "bh2"`,
      );
    }
    const order = c.solverOrder;
    if (!Number.isInteger(order) || order < 1) {
      throw new RangeError(`${name}: solver_order ${order} must be a positive integer`);
    }
    this.#solverOrder = order;
    const px = raw["predict_x0"];
    if (px !== undefined && px !== null && typeof px !== "boolean") {
      throw new TypeError(`${name}: "predict_x0" must be true or false`);
    }
    this.predictX0 = px ?? true;
    const dc = raw["disable_corrector"] ?? [];
    if (!Array.isArray(dc) || !dc.every((v) => Number.isInteger(v))) {
      throw new TypeError(`${name}: "disable_corrector" must be a list of step indices`);
    }
    this.disableCorrector = dc as number[];
    if (raw["solver_p"] !== undefined && raw["solver_p"] !== null) {
      throw new RangeError(
        `${name}: "solver_p" (an external predictor scheduler) is not supported; remove it`,
      );
    }
    this.#tables = vpTables(c, false);
  }

  /** Diffusers `set_timesteps`: the last sigma is the first training sigma (never zero). */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("UniPCMultistepScheduler", numInferenceSteps, c.numTrainTimesteps);
    const { timesteps, sigmas } = lastSigmaKeptSchedule(c, numInferenceSteps, this.#tables);
    this.setSchedule(timesteps, sigmas);
    this.#modelOutputs = new Array(this.#solverOrder).fill(undefined);
    this.#lowerOrderNums = 0;
    this.#lastSample = undefined;
    this.#thisOrder = 0;
  }

  #convert(modelOutput: Float32Array, sample: Float32Array, i: number): Float32Array {
    const c = this.config;
    const sigma = this.sigmas[i]!;
    if (this.predictX0) {
      const x0 = modelOutputToX0(modelOutput, sample, sigma, c.predictionType);
      if (!c.thresholding) return x0;
      const batch = this.noiseShape?.[0] ?? 1;
      return thresholdSample(x0, c.dynamicThresholdingRatio, c.sampleMaxValue, batch);
    }
    return modelOutputToEpsilon(modelOutput, sample, sigma, c.predictionType);
  }

  #lambda(index: number): [number, number, number] {
    const [alpha, sigma] = sigmaToAlphaSigmaT(this.sigmas[index]!);
    return [alpha, sigma, lambdaOf(alpha, sigma)];
  }

  /** UniP-p (Diffusers `multistep_uni_p_bh_update`) from step i to i + 1. */
  #predict(x: Float32Array, i: number, order: number): Float32Array {
    const outs = this.#modelOutputs;
    const k = this.#solverOrder;
    const m0 = outs[k - 1]!;
    const [alphaT, sigmaT] = sigmaToAlphaSigmaT(this.sigmas[i + 1]!);
    const lambdaT = lambdaOf(alphaT, sigmaT);
    const [alphaS0, sigmaS0, lambdaS0] = this.#lambda(i);
    const h = f(lambdaT - lambdaS0);
    const rks: number[] = [];
    const d1s: Float32Array[] = [];
    for (let j = 1; j < order; j++) {
      const mi = outs[k - 1 - j]!;
      const rk = f(f(this.#lambda(i - j)[2] - lambdaS0) / h);
      rks.push(rk);
      d1s.push(divided(mi, m0, rk));
    }
    const co = uniCoefficients(h, rks, order, this.predictX0, this.#solverType);
    let rhos: number[] = [];
    if (d1s.length > 0) {
      // order 2 uses the simplified rho = 0.5
      rhos = order === 2 ? [0.5] : solveFloat32(
        co.r.slice(0, -1).map((row) => row.slice(0, -1)),
        co.b.slice(0, -1),
      );
    }
    const base = this.predictX0
      ? combine([f(sigmaT / sigmaS0), -f(alphaT * co.hPhi1)], [x, m0])
      : combine([f(alphaT / alphaS0), -f(sigmaT * co.hPhi1)], [x, m0]);
    if (d1s.length === 0) return base;
    const res = weightedSum(rhos, d1s);
    const c = f((this.predictX0 ? alphaT : sigmaT) * co.bH);
    for (let j = 0; j < base.length; j++) base[j] = base[j]! - f(c * res[j]!);
    return base;
  }

  /** UniC-p (Diffusers `multistep_uni_c_bh_update`): corrects the sample at step i. */
  #correct(
    modelT: Float32Array,
    lastSample: Float32Array,
    i: number,
    order: number,
  ): Float32Array {
    const outs = this.#modelOutputs;
    const k = this.#solverOrder;
    const m0 = outs[k - 1]!;
    const [alphaT, sigmaT, lambdaT] = this.#lambda(i);
    const [alphaS0, sigmaS0, lambdaS0] = this.#lambda(i - 1);
    const h = f(lambdaT - lambdaS0);
    const rks: number[] = [];
    const d1s: Float32Array[] = [];
    for (let j = 1; j < order; j++) {
      const mi = outs[k - 1 - j]!;
      const rk = f(f(this.#lambda(i - (j + 1))[2] - lambdaS0) / h);
      rks.push(rk);
      d1s.push(divided(mi, m0, rk));
    }
    const co = uniCoefficients(h, rks, order, this.predictX0, this.#solverType);
    // order 1 uses the simplified rho = 0.5
    const rhos = order === 1 ? [0.5] : solveFloat32(co.r, co.b);
    const base = this.predictX0
      ? combine([f(sigmaT / sigmaS0), -f(alphaT * co.hPhi1)], [lastSample, m0])
      : combine([f(alphaT / alphaS0), -f(sigmaT * co.hPhi1)], [lastSample, m0]);
    const corr = d1s.length > 0 ? weightedSum(rhos.slice(0, -1), d1s) : undefined;
    const rLast = f(rhos[rhos.length - 1]!);
    const c = f((this.predictX0 ? alphaT : sigmaT) * co.bH);
    for (let j = 0; j < base.length; j++) {
      const d1t = f(modelT[j]! - m0[j]!);
      const inner = corr === undefined ? f(rLast * d1t) : f(corr[j]! + f(rLast * d1t));
      base[j] = base[j]! - f(c * inner);
    }
    return base;
  }

  /** One UniPC step at `timesteps[i]`: corrector for the previous prediction, then predictor. */
  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    _rng?: NoiseGenerator,
  ): Float32Array {
    const name = "UniPCMultistepScheduler.step";
    const n = this.timesteps.length;
    checkIndex(name, i, n);
    checkSameLength(name, modelOutput, sample);
    this.checkStepOrder(name, i);
    const k = this.#solverOrder;
    const useCorrector = i > 0 && !this.disableCorrector.includes(i - 1) &&
      this.#lastSample !== undefined;
    const m = this.#convert(modelOutput, sample, i);
    let x = sample;
    if (useCorrector) x = this.#correct(m, this.#lastSample!, i, this.#thisOrder);
    const outs = this.#modelOutputs;
    for (let j = 0; j < k - 1; j++) outs[j] = outs[j + 1];
    outs[k - 1] = m;
    const thisOrder = this.config.lowerOrderFinal ? Math.min(k, n - i) : k;
    this.#thisOrder = Math.min(thisOrder, this.#lowerOrderNums + 1); // warm-up
    this.#lastSample = x;
    const prev = this.#predict(x, i, this.#thisOrder);
    if (this.#lowerOrderNums < k) this.#lowerOrderNums++;
    this.stepDone(i);
    return prev;
  }
}

/** (mi - m0) / rk element-wise in float32. */
function divided(mi: Float32Array, m0: Float32Array, rk: number): Float32Array {
  const out = new Float32Array(m0.length);
  for (let j = 0; j < out.length; j++) out[j] = f(mi[j]! - m0[j]!) / rk;
  return out;
}

/** einsum("k,bkc...->bc...", w, D): sum_k w_k D_k in float32. */
function weightedSum(w: readonly number[], ds: readonly Float32Array[]): Float32Array {
  return combine(w.map(f), ds);
}
