/**
 * The DPM-Solver math that the VP solvers (DPM-Solver multistep and singlestep, DEIS, UniPC) and
 * the k-diffusion DPM-Solver++ samplers share: log-SNR, float32 linear combinations of tensors in
 * torch's operation order, model output conversion to x0 / eps, the first-order update and the
 * second-order combination (Lu et al. 2022, https://arxiv.org/abs/2206.00927, and 2022b,
 * https://arxiv.org/abs/2211.01095), and the parsing of the solver options.
 *
 * Torch evaluates every scalar and every tensor operation in float32; the helpers here round after
 * each operation (`Math.fround`) in the same order.
 *
 * @module
 */
import type { PredictionType } from "./config.ts";
import { combine, exp32, log32 } from "./numpy.ts";
import { sigmaToAlphaSigmaT } from "./vp_scheduler.ts";

const f = Math.fround;

/**
 * Log-SNR lambda = log(alpha_t) - log(sigma_t), in float32 (+Infinity for sigma 0).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lambdaOf } from "./dpm_solver_math.ts";
 * const a = Math.fround(Math.SQRT1_2);
 * assert.equal(lambdaOf(a, a), 0); // sigma 1: signal and noise are equal
 * ```
 */
export function lambdaOf(alpha: number, sigma: number): number {
  return f(log32(alpha) - log32(sigma));
}

/**
 * Element-wise `(c * (a - b))` in float32: a DPM-Solver divided difference such as D1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { scaledDifference } from "./dpm_solver_math.ts";
 * const d = scaledDifference(2, new Float32Array([3]), new Float32Array([1]));
 * assert.deepEqual(Array.from(d), [4]);
 * ```
 */
export function scaledDifference(c: number, a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const c32 = f(c);
  for (let j = 0; j < a.length; j++) out[j] = c32 * f(a[j]! - b[j]!);
  return out;
}

/**
 * Converts a raw model output to the data prediction x0 (DPM-Solver++ form), element-wise in
 * float32. epsilon: x0 = (x - sigma_t eps) / alpha_t; v: x0 = alpha_t x - sigma_t v; sample: as is.
 * Same conversion as `predictOriginalAndNoise` in alpha_scheduler.ts and `kDenoised` in
 * k_sigmas.ts; kept separate because each Diffusers family rounds it in its own parametrisation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelOutputToX0 } from "./dpm_solver_math.ts";
 * // at sigma 0 the sample is clean whatever eps says
 * const x0 = modelOutputToX0(new Float32Array([1]), new Float32Array([0.5]), 0, "epsilon");
 * assert.deepEqual(Array.from(x0), [0.5]);
 * ```
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
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelOutputToEpsilon } from "./dpm_solver_math.ts";
 * const eps = modelOutputToEpsilon(new Float32Array([0.3]), new Float32Array([1]), 2, "epsilon");
 * assert.deepEqual(Array.from(eps), [Math.fround(0.3)]);
 * ```
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

/** Algorithm types of the DPM-Solver schedulers. */
export type DpmAlgorithmType = "dpmsolver" | "dpmsolver++" | "sde-dpmsolver" | "sde-dpmsolver++";
/** Second-order solver flavours. */
export type DpmSolverType = "midpoint" | "heun";

/**
 * Reads `solver_order`, which the DPM-Solver family (and DEIS) accept as 1, 2 or 3.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSolverOrder } from "./dpm_solver_math.ts";
 * assert.equal(parseSolverOrder("DEISMultistepScheduler", 3), 3);
 * assert.throws(() => parseSolverOrder("DEISMultistepScheduler", 4), RangeError);
 * ```
 */
export function parseSolverOrder(name: string, order: number): 1 | 2 | 3 {
  if (order !== 1 && order !== 2 && order !== 3) {
    throw new RangeError(`${name}: solver_order ${order} is not supported; use 1, 2 or 3`);
  }
  return order;
}

/**
 * Reads `solver_type` with Diffusers' aliases (logrho / bh1 / bh2 mean midpoint for DPM-Solver).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDpmSolverType } from "./dpm_solver_math.ts";
 * assert.equal(parseDpmSolverType("DPMSolverMultistepScheduler", "bh2"), "midpoint");
 * ```
 */
export function parseDpmSolverType(name: string, solverType: string): DpmSolverType {
  if (solverType === "midpoint" || solverType === "heun") return solverType;
  if (solverType === "logrho" || solverType === "bh1" || solverType === "bh2") return "midpoint";
  throw new RangeError(
    `${name}: solver_type "${solverType}" is not supported; use "midpoint" or "heun"`,
  );
}

/**
 * Diffusers' `model_output[:, :3]` for models that also predict a variance (`variance_type`
 * "learned" / "learned_range"): keeps, per batch item, the leading channels that match the sample
 * (NCHW, so they are the first values of each item's block). Returns `modelOutput` itself when it
 * already has the sample's size.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dropVarianceChannels } from "./dpm_solver_math.ts";
 * // 2 batch items of 4 values each, of which the sample keeps the first 2
 * const out = dropVarianceChannels(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]), 4, 2);
 * assert.deepEqual(Array.from(out), [1, 2, 5, 6]);
 * ```
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
 * Same ODE update as `ddimStep` (eta 0) in ddim.ts; kept separate because DPM-Solver computes it
 * from float32 log-SNRs, as Diffusers does, which rounds differently from DDIM's alpha_bar form.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dpmSolverFirstOrderUpdate } from "./dpm_solver_math.ts";
 * // DPM-Solver++ to sigma 0 lands on the data prediction
 * const x = dpmSolverFirstOrderUpdate(new Float32Array([1]), new Float32Array([0.5]), 1, 0, "dpmsolver++");
 * assert.deepEqual(Array.from(x), [0.5]);
 * ```
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
 * The float32 scalars of one DPM-Solver step from x at sigma_s to sigma_t: the VP coefficients
 * of both ends and the log-SNR step h = lambda_t - lambda_s.
 */
export interface DpmStepScalars {
  alphaT: number;
  sigmaT: number;
  alphaS: number;
  sigmaS: number;
  h: number;
}

/**
 * The second-order combination shared by the multistep and singlestep solvers:
 * x_t from x (at sigma_s), D0 and D1 (Lu et al. 2022b Algorithm 2 / Eq. (8)).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dpmSolverFirstOrderUpdate, lambdaOf, secondOrderCombination } from "./dpm_solver_math.ts";
 * import { sigmaToAlphaSigmaT } from "./vp_scheduler.ts";
 * const [alphaT, sigmaT] = sigmaToAlphaSigmaT(0.5);
 * const [alphaS, sigmaS] = sigmaToAlphaSigmaT(1);
 * const h = Math.fround(lambdaOf(alphaT, sigmaT) - lambdaOf(alphaS, sigmaS));
 * const k = { alphaT, sigmaT, alphaS, sigmaS, h };
 * const x = new Float32Array([1]);
 * const d0 = new Float32Array([0.5]);
 * const d1 = new Float32Array([0]);
 * // with D1 = 0 the second-order step is the first-order one
 * const first = dpmSolverFirstOrderUpdate(x, d0, 1, 0.5, "dpmsolver++");
 * assert.deepEqual(secondOrderCombination(x, d0, d1, k, "dpmsolver++", "midpoint"), first);
 * ```
 */
export function secondOrderCombination(
  x: Float32Array,
  d0: Float32Array,
  d1: Float32Array,
  k: DpmStepScalars,
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
 * The third-order combination shared by the multistep and singlestep solvers (ODE types only):
 * x_t from x (at sigma_s), D0, D1 and D2 (Lu et al. 2022b Algorithm 3 / Lu et al. 2022 Eq. (3.9)).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dpmSolverFirstOrderUpdate, lambdaOf, thirdOrderCombination } from "./dpm_solver_math.ts";
 * import { sigmaToAlphaSigmaT } from "./vp_scheduler.ts";
 * const [alphaT, sigmaT] = sigmaToAlphaSigmaT(0.5);
 * const [alphaS, sigmaS] = sigmaToAlphaSigmaT(1);
 * const h = Math.fround(lambdaOf(alphaT, sigmaT) - lambdaOf(alphaS, sigmaS));
 * const k = { alphaT, sigmaT, alphaS, sigmaS, h };
 * const x = new Float32Array([1]);
 * const d0 = new Float32Array([0.5]);
 * const zero = new Float32Array([0]);
 * // with D1 = D2 = 0 the third-order step is the first-order one
 * const first = dpmSolverFirstOrderUpdate(x, d0, 1, 0.5, "dpmsolver++");
 * assert.deepEqual(thirdOrderCombination(x, d0, zero, zero, k, "dpmsolver++"), first);
 * ```
 */
export function thirdOrderCombination(
  x: Float32Array,
  d0: Float32Array,
  d1: Float32Array,
  d2: Float32Array,
  k: DpmStepScalars,
  algorithmType: DpmAlgorithmType,
): Float32Array {
  const { alphaT, sigmaT, alphaS, sigmaS, h } = k;
  const hh = f(h * h);
  if (algorithmType === "dpmsolver++") {
    const em = f(exp32(-h) - 1); // e^{-h} - 1
    // - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1)/h + 1) D1 - alpha_t ((e^-h - 1 + h)/h^2 - 1/2) D2
    return combine([
      f(sigmaT / sigmaS),
      -f(alphaT * em),
      f(alphaT * f(f(em / h) + 1)),
      -f(alphaT * f(f(f(em + h) / hh) - 0.5)),
    ], [x, d0, d1, d2]);
  }
  if (algorithmType === "dpmsolver") {
    const ep = f(exp32(h) - 1); // e^{h} - 1
    return combine([
      f(alphaT / alphaS),
      -f(sigmaT * ep),
      -f(sigmaT * f(f(ep / h) - 1)),
      -f(sigmaT * f(f(f(ep - h) / hh) - 0.5)),
    ], [x, d0, d1, d2]);
  }
  throw new RangeError(`third-order DPM-Solver has no "${algorithmType}" form`);
}
