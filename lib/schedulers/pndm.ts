/**
 * PNDM / PLMS (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"),
 * step-exact with Diffusers 0.27 `schedulers/scheduling_pndm.py`: Runge-Kutta warm-up steps
 * (unless `skip_prk_steps`) then the linear multistep method, with Diffusers' counter logic.
 *
 * @module
 */
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { combine, sqrt32 } from "./numpy.ts";
import { AlphaScheduler, integerTimesteps } from "./alpha_scheduler.ts";

const f32 = Math.fround;

/**
 * The PNDM transfer x_t -> x_prev (Liu et al. 2022, Eq. 11, Diffusers `_get_prev_sample`):
 * x_prev = sqrt(a_prev / a_t) x - (a_prev - a_t) eps / (a_t sqrt(1 - a_prev) + sqrt(a_t (1 - a_t) a_prev)).
 *
 * @example
 * ```ts
 * import { pndmTransfer } from "./pndm.ts";
 * pndmTransfer(new Float32Array([1]), new Float32Array([0.1]), 0.5, 0.6);
 * ```
 */
export function pndmTransfer(
  sample: Float32Array,
  eps: Float32Array,
  alphaProd: number,
  alphaProdPrev: number,
): Float32Array {
  checkSameLength("pndmTransfer", eps, sample);
  const bt = f32(1 - alphaProd);
  const bPrev = f32(1 - alphaProdPrev);
  const sampleCoeff = sqrt32(f32(alphaProdPrev / alphaProd));
  const denom = f32(
    f32(alphaProd * sqrt32(bPrev)) + sqrt32(f32(f32(alphaProd * bt) * alphaProdPrev)),
  );
  const diff = f32(alphaProdPrev - alphaProd);
  const out = new Float32Array(sample.length);
  for (let k = 0; k < out.length; k++) {
    out[k] = f32(sampleCoeff * sample[k]!) - f32(f32(diff * eps[k]!) / denom);
  }
  return out;
}

/** Diffusers PNDMScheduler `__init__` defaults. */
export const PNDM_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  skipPrkSteps: false,
  setAlphaToOne: false,
  timestepSpacing: "leading",
};

/** Diffusers `PNDMScheduler` (sampler `pndm`, A1111 "PLMS" with `skip_prk_steps`). */
export class PNDMScheduler extends AlphaScheduler {
  /** Diffusers' `pndm_order`. */
  readonly pndmOrder = 4;
  #numInferenceSteps = 0;
  #prkTimesteps: number[] = [];
  #ets: Float32Array[] = [];
  #counter = 0;
  #curModelOutput: Float32Array | undefined;
  #curSample: Float32Array | undefined;

  constructor(config: Record<string, unknown>) {
    // Diffusers' PNDM has no rescale_betas_zero_snr.
    super("PNDMScheduler", {
      ...parseSchedulerConfig(config, PNDM_DEFAULTS),
      rescaleBetasZeroSnr: false,
    });
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("PNDMScheduler", numInferenceSteps, c.numTrainTimesteps);
    this.#numInferenceSteps = numInferenceSteps;
    const n = numInferenceSteps;
    // ascending, Diffusers' self._timesteps
    const base = Array.from(
      integerTimesteps(c.timestepSpacing, c.numTrainTimesteps, n, c.stepsOffset),
    ).reverse();
    let prk: number[] = [];
    let plms: number[];
    if (c.skipPrkSteps) {
      // cat(t[:-1], t[-2:-1], t[-1:])[::-1]: the second-to-last timestep is visited twice.
      plms = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(c.numTrainTimesteps / n) / 2);
      const last = base.slice(-this.pndmOrder).flatMap((t) => [t, t]).map((t, k) =>
        t + (k % 2 === 0 ? 0 : half)
      );
      prk = last.slice(0, -1).flatMap((t) => [t, t]).slice(1, -1).reverse();
      plms = base.slice(0, -3).reverse();
    }
    this.#prkTimesteps = prk;
    this.timesteps = Float64Array.from([...prk, ...plms]);
    this.#ets = [];
    this.#counter = 0;
    this.#curModelOutput = undefined;
    this.#curSample = undefined;
  }

  #alphaAt(t: number): number {
    return t >= 0 ? this.alphasCumprod[t]! : this.finalAlphaCumprod;
  }

  #transfer(sample: Float32Array, t: number, prevT: number, modelOutput: Float32Array) {
    const c = this.config;
    const a = this.#alphaAt(t);
    let eps = modelOutput;
    if (c.predictionType === "v_prediction") {
      eps = combine([sqrt32(a), sqrt32(f32(1 - a))], [modelOutput, sample]);
    } else if (c.predictionType !== "epsilon") {
      throw new RangeError(
        `PNDMScheduler: prediction_type "${c.predictionType}" is not supported; use epsilon or v_prediction`,
      );
    }
    return pndmTransfer(sample, eps, a, this.#alphaAt(prevT));
  }

  step(modelOutput: Float32Array, i: number, sample: Float32Array): Float32Array {
    checkIndex("PNDMScheduler", i, this.timesteps.length);
    const t = this.timesteps[i]!;
    if (this.#counter < this.#prkTimesteps.length && !this.config.skipPrkSteps) {
      return this.#stepPrk(modelOutput, t, sample);
    }
    return this.#stepPlms(modelOutput, t, sample);
  }

  #stepPrk(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const ratio = Math.floor(this.config.numTrainTimesteps / this.#numInferenceSteps);
    const diffToPrev = this.#counter % 2 ? 0 : Math.floor(ratio / 2);
    const prevT = t - diffToPrev;
    const timestep = this.#prkTimesteps[Math.floor(this.#counter / 4) * 4]!;
    let eps = modelOutput;
    const phase = this.#counter % 4;
    // Runge-Kutta 4 weights 1/6, 1/3, 1/3, 1/6 (Liu et al. 2022, Eq. 13).
    const add = (w: number) => {
      const term = combine([w], [modelOutput]);
      this.#curModelOutput = this.#curModelOutput === undefined
        ? term
        : combine([1, 1], [this.#curModelOutput, term]);
    };
    if (phase === 0) {
      add(1 / 6);
      this.#ets.push(modelOutput);
      this.#curSample = sample;
    } else if (phase === 1 || phase === 2) {
      add(1 / 3);
    } else {
      eps = combine([1, 1 / 6], [this.#curModelOutput!, modelOutput]);
      this.#curModelOutput = undefined;
    }
    const cur = this.#curSample ?? sample;
    const out = this.#transfer(cur, timestep, prevT, eps);
    this.#counter++;
    return out;
  }

  #stepPlms(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const ratio = Math.floor(this.config.numTrainTimesteps / this.#numInferenceSteps);
    if (!this.config.skipPrkSteps && this.#ets.length < 3) {
      throw new RangeError("PNDMScheduler: PLMS steps need 3 Runge-Kutta warm-up steps first");
    }
    let prevT = t - ratio;
    let timestep = t;
    if (this.#counter !== 1) {
      this.#ets = this.#ets.slice(-3);
      this.#ets.push(modelOutput);
    } else {
      prevT = t;
      timestep = t + ratio;
    }
    const e = this.#ets;
    const n = e.length;
    let eps: Float32Array;
    let x = sample;
    if (n === 1 && this.#counter === 0) {
      eps = modelOutput;
      this.#curSample = sample;
    } else if (n === 1 && this.#counter === 1) {
      eps = combine([0.5], [combine([1, 1], [modelOutput, e[n - 1]!])]);
      x = this.#curSample!;
      this.#curSample = undefined;
    } else if (n === 2) {
      // Adams-Bashforth 2: (3 e1 - e2) / 2.
      eps = combine([0.5], [combine([3, -1], [e[n - 1]!, e[n - 2]!])]);
    } else if (n === 3) {
      // Adams-Bashforth 3: (23 e1 - 16 e2 + 5 e3) / 12.
      const s = combine([23, -16, 5], [e[n - 1]!, e[n - 2]!, e[n - 3]!]);
      eps = s.map((v) => f32(v / 12));
    } else {
      // Adams-Bashforth 4: (55 e1 - 59 e2 + 37 e3 - 9 e4) / 24 (Liu et al. 2022, Eq. 12).
      const s = combine([55, -59, 37, -9], [e[n - 1]!, e[n - 2]!, e[n - 3]!, e[n - 4]!]);
      eps = combine([1 / 24], [s]);
    }
    const out = this.#transfer(x, timestep, prevT, eps);
    this.#counter++;
    return out;
  }
}
