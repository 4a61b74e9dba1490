// registry: "KDpmpp2mSampler" -> KDpmpp2mSampler (k-diffusion's "DPM++ 2M"; "dpm++2m" itself maps to
// DPMSolverMultistepScheduler, Diffusers' equivalent of it)
/**
 * k-diffusion `sample_dpmpp_2m` (A1111 "DPM++ 2M"): DPM-Solver++(2M), Lu et al. 2022b
 * (https://arxiv.org/abs/2211.01095) Algorithm 2 in sigma form, deterministic:
 *   x' = (s'/s) x - expm1(-h) D_d,  D_d = (1 + 1/(2r)) D - 1/(2r) D_prev,  r = h_prev / h
 * with t = -log(sigma) and h = t' - t; the last step (s' = 0) returns the denoised estimate.
 *
 * @module
 */
import { KDiffusionSampler, type KStep, sigmaFn, tFn } from "./k_diffusion_sampler.ts";
import { combine, expm132 } from "./numpy.ts";

const f = Math.fround;

/**
 * k-diffusion `sample_dpmpp_2m` (A1111 "DPM++ 2M"; deterministic). Same solver as
 * DPMSolverMultistepScheduler (dpmsolver++, order 2); kept separate because k-diffusion rounds in
 * its sigma / t form, not Diffusers' lambda form (k_diffusion_sampler_test.ts compares the two).
 *
 * @example
 * ```ts
 * import { KDpmpp2mSampler } from "./k_dpmpp_2m.ts";
 * const s = new KDpmpp2mSampler({ use_karras_sigmas: true });
 * s.setTimesteps(10);
 * console.log(s.timesteps.length); // 10
 * ```
 */
export class KDpmpp2mSampler extends KDiffusionSampler {
  /** One model evaluation per step. */
  readonly order = 1;
  #denoised1: Float32Array | undefined;

  /** Builds the sampler from a scheduler config. */
  constructor(config: Record<string, unknown>) {
    super("dpmpp_2m", config);
  }

  /** Forgets the previous denoised estimate. */
  protected resetHistory(): void {
    this.#denoised1 = undefined;
  }

  /** One DPM-Solver++(2M) step (first order while there is no previous estimate). */
  protected advance({ x, denoised, entry, s, next }: KStep): Float32Array {
    const old = this.#denoised1;
    this.#denoised1 = denoised;
    if (next === 0) return denoised.slice(); // (0 / s) x - expm1(-inf) D = D
    const t = tFn(s);
    const tNext = tFn(next);
    const h = f(tNext - t);
    const ratio = f(sigmaFn(tNext) / sigmaFn(t));
    const c = -expm132(-h);
    if (old === undefined) return combine([ratio, c], [x, denoised]);
    const hLast = f(t - tFn(this.stepSigmas[entry.step - 1]!));
    const r = f(hLast / h);
    const w = f(1 / f(2 * r));
    // denoised_d = (1 + 1/(2r)) D - (1/(2r)) D_prev
    const dd = new Float32Array(x.length);
    const a = f(1 + w);
    for (let j = 0; j < dd.length; j++) dd[j] = f(a * denoised[j]!) - f(w * old[j]!);
    return combine([ratio, c], [x, dd]);
  }
}
