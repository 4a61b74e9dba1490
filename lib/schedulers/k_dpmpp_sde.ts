// registry: "dpm++sde"    -> KDpmppSdeSampler     (A1111 "DPM++ SDE")
/**
 * k-diffusion `sample_dpmpp_sde` (A1111 "DPM++ SDE"): the stochastic DPM-Solver++ 2-stage step
 * (Lu et al. 2022b, https://arxiv.org/abs/2211.01095) through the log-midpoint (r = 1/2), each
 * stage an ancestral (s_down, s_up) pair with fresh noise (plain randn, not torchsde's Brownian
 * tree; see k_diffusion_sampler.ts). The last step (s' = 0) is one Euler step. Diffusers'
 * DPMSolverSDEScheduler needs torchsde, so "dpm++sde" always uses this form.
 *
 * @module
 */
import {
  addAncestralNoise,
  ancestralStep,
  KDiffusionSampler,
  type KStep,
  sigmaFn,
  tFn,
} from "./k_diffusion_sampler.ts";
import { combine, expm132 } from "./numpy.ts";
import { derivativeOf, eulerMove } from "./sigma_scheduler.ts";

const f = Math.fround;

/**
 * k-diffusion `sample_dpmpp_sde` (A1111 "DPM++ SDE"); two evaluations per step.
 *
 * @example
 * ```ts
 * import { KDpmppSdeSampler } from "./k_dpmpp_sde.ts";
 * const s = new KDpmppSdeSampler({});
 * s.setTimesteps(5);
 * console.log(s.timesteps.length); // 9: two evaluations per step, one for the last
 * ```
 */
export class KDpmppSdeSampler extends KDiffusionSampler {
  /** Two model evaluations per step. */
  readonly order = 2;
  #pendingX: Float32Array | undefined;
  #pendingDenoised: Float32Array | undefined;

  /** Builds the sampler from a scheduler config. */
  constructor(config: Record<string, unknown>) {
    super("dpmpp_sde", config);
  }

  /** The log-midpoint sigma_fn(t + h / 2) (no midpoint for the last step). */
  protected override midpointSigma(s: number, next: number): number | undefined {
    if (next === 0) return undefined;
    return sigmaFn(f(tFn(s) + f(f(tFn(next) - tFn(s)) * 0.5)));
  }

  /** Forgets a pending first stage. */
  protected resetHistory(): void {
    this.#pendingX = undefined;
    this.#pendingDenoised = undefined;
  }

  /** Stage 0: the step to the midpoint; stage 1: the step from the stage-0 sample to s'. */
  protected advance({ x, denoised, entry, s, next, noise }: KStep): Float32Array {
    const { eta, sNoise } = this.options;
    const r = 0.5;
    if (next === 0) {
      // Euler step to 0: x + (x - D) / s * (0 - s)
      return eulerMove(x, derivativeOf(x, denoised, s), next - s);
    }
    const t = tFn(s);
    const tNext = tFn(next);
    const h = f(tNext - t);
    const sMid = f(t + f(h * r));
    if (entry.stage === 0) {
      // Step 1: ancestral split of (sigma(t), sigma(s)), x_2 at sigma_fn(s)
      const [sd, su] = ancestralStep(sigmaFn(t), sigmaFn(sMid), eta);
      const s_ = tFn(sd);
      const out = combine([f(sigmaFn(s_) / sigmaFn(t)), f(-expm132(f(t - s_)))], [x, denoised]);
      addAncestralNoise(out, noise(), sNoise, su);
      this.#pendingX = x;
      this.#pendingDenoised = denoised;
      return out;
    }
    // Step 2: D_d = (1 - fac) D + fac D_2 with fac = 1 / (2r), then to sigma_down of (t, t_next)
    const x0 = this.#pendingX!;
    const d0 = this.#pendingDenoised!;
    const fac = f(1 / (2 * r));
    const [sd, su] = ancestralStep(sigmaFn(t), sigmaFn(tNext), eta);
    const tNext_ = tFn(sd);
    const dd = new Float32Array(x.length);
    const w0 = f(1 - fac);
    for (let j = 0; j < dd.length; j++) dd[j] = f(w0 * d0[j]!) + f(fac * denoised[j]!);
    const out = combine([f(sigmaFn(tNext_) / sigmaFn(t)), f(-expm132(f(t - tNext_)))], [x0, dd]);
    addAncestralNoise(out, noise(), sNoise, su);
    this.#pendingX = undefined;
    this.#pendingDenoised = undefined;
    return out;
  }
}
