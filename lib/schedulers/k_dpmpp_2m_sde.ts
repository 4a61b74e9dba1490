// registry: "KDpmpp2mSdeSampler" -> KDpmpp2mSdeSampler (k-diffusion's "DPM++ 2M SDE"; "dpm++2m-sde"
// itself maps to DPMSolverMultistepScheduler with algorithm_type "sde-dpmsolver++")
/**
 * k-diffusion `sample_dpmpp_2m_sde` (A1111 "DPM++ 2M SDE"), Lu et al. 2022b
 * (https://arxiv.org/abs/2211.01095) in k-diffusion's notation (t = -log(sigma), h = t' - t):
 *   x' = (s'/s) e^(-eta h) x - expm1(-h - eta h) D
 *        + 0.5 (-expm1(-h - eta h)) (D - D_prev) / r        (midpoint; heun: (phi + 1) weight)
 *        + s' sqrt(-expm1(-2 eta h)) s_noise z
 * with r = h_prev / h; the last step (s' = 0) returns the denoised estimate.
 *
 * @module
 */
import { addSdeNoise, KDiffusionSampler, type KStep, tFn } from "./k_diffusion_sampler.ts";
import { combine, exp32, expm132 } from "./numpy.ts";

const f = Math.fround;

/**
 * k-diffusion `sample_dpmpp_2m_sde` (A1111 "DPM++ 2M SDE"); `eta`, `s_noise`, `solver_type`.
 * Same solver as DPMSolverMultistepScheduler with sde-dpmsolver++ (eta 1); kept separate because
 * k-diffusion has eta and rounds in its sigma / t form (k_diffusion_sampler_test.ts compares them).
 *
 * @example
 * ```ts
 * import { KDpmpp2mSdeSampler } from "./k_dpmpp_2m_sde.ts";
 * const s = new KDpmpp2mSdeSampler({ eta: 0 });
 * s.setTimesteps(10);
 * console.log(s.timesteps.length); // 10
 * ```
 */
export class KDpmpp2mSdeSampler extends KDiffusionSampler {
  /** One model evaluation per step. */
  readonly order = 1;
  #denoised1: Float32Array | undefined;
  #h1: number | undefined;

  /** Builds the sampler from a scheduler config. */
  constructor(config: Record<string, unknown>) {
    super("dpmpp_2m_sde", config);
  }

  /** Forgets the previous denoised estimate and step size. */
  protected resetHistory(): void {
    this.#denoised1 = undefined;
    this.#h1 = undefined;
  }

  /** One DPM-Solver++(2M) SDE step (midpoint or Heun weighting). */
  protected advance({ x, denoised, s, next, noise }: KStep): Float32Array {
    const old = this.#denoised1;
    this.#denoised1 = denoised;
    if (next === 0) return denoised.slice(); // denoising step
    const { eta, sNoise, solverType } = this.options;
    const t = tFn(s);
    const h = f(tFn(next) - t);
    const etaH = f(eta * h);
    const em = f(-expm132(f(-h - etaH))); // -expm1(-h - eta h)
    const out = combine([f(f(next / s) * exp32(-etaH)), em], [x, denoised]);
    if (old !== undefined) {
      const r = f(this.#h1! / h);
      const coef = solverType === "heun"
        ? f(f(f(em / f(-h - etaH)) + 1) * f(1 / r))
        : f(f(0.5 * em) * f(1 / r));
      for (let j = 0; j < out.length; j++) out[j] = out[j]! + f(coef * f(denoised[j]! - old[j]!));
    }
    if (eta) {
      // + noise * sigma_next * sqrt(-expm1(-2 eta h)) * s_noise
      const z = noise();
      addSdeNoise(out, z, next, f(Math.sqrt(f(-expm132(f(-2 * etaH))))), sNoise);
    }
    this.#h1 = h;
    return out;
  }
}
