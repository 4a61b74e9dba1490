// registry: "dpm++3m-sde" -> KDpmpp3mSdeSampler   (A1111 "DPM++ 3M SDE")
/**
 * k-diffusion `sample_dpmpp_3m_sde` (A1111 "DPM++ 3M SDE"), Lu et al. 2022b
 * (https://arxiv.org/abs/2211.01095) in k-diffusion's notation (t = -log(sigma), h = t' - t):
 *   x' = e^(-h_eta) x - expm1(-h_eta) D + phi_2 D1 - phi_3 D2 + s' sqrt(-expm1(-2 eta h)) s_noise z
 * with h_eta = h (eta + 1), phi_2 = -expm1(-h_eta) / h_eta + 1, phi_3 = phi_2 / h_eta - 1/2 and
 * D1, D2 the divided differences of the last three denoised estimates; the last step (s' = 0)
 * returns the denoised estimate. Diffusers 0.27 cannot run this sampler (its multistep scheduler
 * rejects order 3 with sde-dpmsolver++), so "dpm++3m-sde" always uses this form.
 *
 * @module
 */
import { addSdeNoise, KDiffusionSampler, type KStep, tFn } from "./k_diffusion_sampler.ts";
import { combine, exp32, expm132 } from "./numpy.ts";

const f = Math.fround;

/**
 * k-diffusion `sample_dpmpp_3m_sde` (A1111 "DPM++ 3M SDE"); `eta`, `s_noise`. With eta 0 the
 * same solver as DPMSolverMultistepScheduler (dpmsolver++, order 3, Heun); kept separate because
 * k-diffusion rounds in its sigma / t form (k_diffusion_sampler_test.ts compares the two).
 *
 * @example
 * ```ts
 * import { KDpmpp3mSdeSampler } from "./k_dpmpp_3m_sde.ts";
 * const s = new KDpmpp3mSdeSampler({ eta: 0 });
 * s.setTimesteps(10);
 * console.log(s.timesteps.length); // 10
 * ```
 */
export class KDpmpp3mSdeSampler extends KDiffusionSampler {
  /** One model evaluation per step. */
  readonly order = 1;
  #denoised1: Float32Array | undefined;
  #denoised2: Float32Array | undefined;
  #h1: number | undefined;
  #h2: number | undefined;

  /** Builds the sampler from a scheduler config. */
  constructor(config: Record<string, unknown>) {
    super("dpmpp_3m_sde", config);
  }

  /** Forgets the previous two denoised estimates and step sizes. */
  protected resetHistory(): void {
    this.#denoised1 = undefined;
    this.#denoised2 = undefined;
    this.#h1 = undefined;
    this.#h2 = undefined;
  }

  /** One DPM-Solver++(3M) SDE step (lower order while the history is short). */
  protected advance({ x, denoised, s, next, noise }: KStep): Float32Array {
    const d1 = this.#denoised1;
    const d2 = this.#denoised2;
    this.#denoised2 = d1;
    this.#denoised1 = denoised;
    if (next === 0) return denoised.slice(); // denoising step
    const { eta, sNoise } = this.options;
    const t = tFn(s);
    const h = f(tFn(next) - t);
    const hEta = f(h * f(eta + 1));
    const out = combine([exp32(-hEta), f(-expm132(-hEta))], [x, denoised]);
    const h1 = this.#h1;
    const h2 = this.#h2;
    const phi2 = f(f(expm132(-hEta) / hEta) + 1); // phi_2 = expm1(-h_eta) / h_eta + 1
    if (h2 !== undefined && d1 !== undefined && d2 !== undefined) {
      const r0 = f(h1! / h);
      const r1 = f(h2 / h);
      const phi3 = f(f(phi2 / hEta) - 0.5);
      const rs = f(r0 + r1);
      for (let j = 0; j < out.length; j++) {
        const d10 = f(f(denoised[j]! - d1[j]!) / r0);
        const d11 = f(f(d1[j]! - d2[j]!) / r1);
        const dd1 = d10 + f(f(f(d10 - d11) * r0) / rs);
        const dd2 = f(f(d10 - d11) / rs);
        out[j] = f(out[j]! + f(phi2 * f(dd1))) - f(phi3 * dd2);
      }
    } else if (h1 !== undefined && d1 !== undefined) {
      const r = f(h1 / h);
      for (let j = 0; j < out.length; j++) {
        out[j] = out[j]! + f(phi2 * f(f(denoised[j]! - d1[j]!) / r));
      }
    }
    if (eta) {
      const z = noise();
      addSdeNoise(out, z, next, f(Math.sqrt(f(-expm132(f(f(-2 * h) * eta))))), sNoise);
    }
    this.#h2 = h1;
    this.#h1 = h;
    return out;
  }
}
