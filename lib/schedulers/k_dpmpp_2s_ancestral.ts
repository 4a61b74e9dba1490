// registry: "dpm++2s-a"   -> KDpmpp2sAncestralSampler (A1111 "DPM++ 2S a")
/**
 * k-diffusion `sample_dpmpp_2s_ancestral` (A1111 "DPM++ 2S a"): the ancestral split of (s, s')
 * into (s_down, s_up), a DPM-Solver++(2S) step (Lu et al. 2022b, https://arxiv.org/abs/2211.01095)
 * to s_down through the log-midpoint, which costs a second model evaluation, then + s_up z.
 * A step whose s_down is 0 is one Euler step.
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
 * k-diffusion `sample_dpmpp_2s_ancestral` (A1111 "DPM++ 2S a"); two evaluations per step.
 *
 * @example
 * ```ts
 * import { KDpmpp2sAncestralSampler } from "./k_dpmpp_2s_ancestral.ts";
 * const s = new KDpmpp2sAncestralSampler({});
 * s.setTimesteps(5);
 * console.log(s.timesteps.length); // 9: two evaluations per step, one for the last
 * ```
 */
export class KDpmpp2sAncestralSampler extends KDiffusionSampler {
  /** Two model evaluations per step. */
  readonly order = 2;
  #pendingX: Float32Array | undefined;

  /** Builds the sampler from a scheduler config. */
  constructor(config: Record<string, unknown>) {
    super("dpmpp_2s_ancestral", config);
  }

  /** DPM-Solver++(2S) to sigma_down through s = t + h/2 (no midpoint when sigma_down is 0). */
  protected override midpointSigma(s: number, next: number): number | undefined {
    const [down] = ancestralStep(s, next, this.options.eta);
    if (down === 0) return undefined;
    return sigmaFn(f(tFn(s) + f(0.5 * f(tFn(down) - tFn(s)))));
  }

  /** Forgets a pending first stage. */
  protected resetHistory(): void {
    this.#pendingX = undefined;
  }

  /** Stage 0: the midpoint sample (or the Euler step); stage 1: the step to sigma_down. */
  protected advance({ x, denoised, entry, s, next, noise }: KStep): Float32Array {
    const { eta, sNoise } = this.options;
    const [down, up] = ancestralStep(s, next, eta);
    let out: Float32Array;
    if (entry.stage === 0) {
      if (down === 0) {
        // Euler step to sigma_down = 0: x + (x - D) / s * (0 - s)
        out = eulerMove(x, derivativeOf(x, denoised, s), down - s);
      } else {
        // x_2 = (sigma(s)/sigma(t)) x - expm1(-h r) D, evaluated next at sigma(s)
        const t = tFn(s);
        const h = f(tFn(down) - t);
        const mid = f(t + f(0.5 * h));
        this.#pendingX = x;
        return combine([f(sigmaFn(mid) / sigmaFn(t)), f(-expm132(f(-h * 0.5)))], [x, denoised]);
      }
    } else {
      // x = (sigma(t_next)/sigma(t)) x - expm1(-h) D_2
      const x0 = this.#pendingX!;
      const t = tFn(s);
      const tNext = tFn(down);
      const h = f(tNext - t);
      out = combine([f(sigmaFn(tNext) / sigmaFn(t)), f(-expm132(-h))], [x0, denoised]);
      this.#pendingX = undefined;
    }
    if (next > 0) addAncestralNoise(out, noise(), sNoise, up);
    return out;
  }
}
