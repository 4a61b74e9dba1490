/**
 * Euler sampler (Karras et al. 2022, Algorithm 2 with optional churn), step-exact with Diffusers
 * 0.27 `schedulers/scheduling_euler_discrete.py`.
 *
 * @module
 */
import { checkIndex, checkSameLength, checkSteps } from "./checks.ts";
import { parseSchedulerConfig, type SchedulerConfig } from "./config.ts";
import { convertSigmas, kDenoised, kInitNoiseSigma, kSigmaSchedule } from "./k_sigmas.ts";
import { drawNoise } from "./noise.ts";
import { sqrt32, torchLinspaceF32 } from "./numpy.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { sigmaToT } from "./training_sigmas.ts";
import { derivativeOf, eulerMove, SigmaScheduler } from "./sigma_scheduler.ts";

const f32 = Math.fround;

/**
 * One Euler step from `sigmaHat` to `sigmaNext` (Karras et al. 2022, Algorithm 2, lines 7-8):
 * d = (x - denoised) / sigmaHat; x' = x + d * (sigmaNext - sigmaHat). Float32 like torch.
 *
 * @example
 * ```ts
 * import { eulerStep } from "./euler.ts";
 * const x = eulerStep(new Float32Array([1]), new Float32Array([0]), 1, 0.5); // [0.5]
 * ```
 */
export function eulerStep(
  x: Float32Array,
  denoised: Float32Array,
  sigmaHat: number,
  sigmaNext: number,
): Float32Array {
  checkSameLength("eulerStep", x, denoised);
  return eulerMove(x, derivativeOf(x, denoised, sigmaHat), f32(sigmaNext) - f32(sigmaHat));
}

/** Diffusers EulerDiscreteScheduler `__init__` defaults. */
export const EULER_DEFAULTS: Partial<Omit<SchedulerConfig, "raw">> = {
  timestepSpacing: "linspace",
  stepsOffset: 0,
};

/** Diffusers `EulerDiscreteScheduler` (sampler name `euler`). */
export class EulerDiscreteScheduler extends SigmaScheduler {
  readonly order = 1;

  constructor(config: Record<string, unknown>) {
    super("EulerDiscreteScheduler", parseSchedulerConfig(config, EULER_DEFAULTS));
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    checkSteps("EulerDiscreteScheduler", numInferenceSteps, c.numTrainTimesteps);
    const sched = kSigmaSchedule(c, this.alphasCumprod, numInferenceSteps);
    let sigmas = sched.sigmas;
    let timesteps = sched.timesteps.map(f32);
    if (c.interpolationType === "log_linear") {
      // Diffusers replaces the interpolated sigmas by N + 1 log-uniform training sigmas (so
      // sigmas has one entry more than timesteps, as in Diffusers), then applies the schedule.
      const ts = sched.trainingSigmas;
      sigmas = Float64Array.from(
        torchLinspaceF32(Math.log(ts[ts.length - 1]!), Math.log(ts[0]!), numInferenceSteps + 1),
        (v) => f32(Math.exp(v)),
      );
      if (c.sigmaSchedule !== "default") {
        sigmas = convertSigmas(sigmas, numInferenceSteps, c, ts, sched.logSigmas);
        timesteps = sigmas.map((v) => f32(sigmaToT(v, sched.logSigmas)));
      }
    }
    const s32 = Float64Array.from(sigmas, f32);
    if (c.timestepType === "continuous" && c.predictionType === "v_prediction") {
      timesteps = s32.map((s) => f32(0.25 * f32(Math.log(s))));
    }
    this.timesteps = timesteps;
    this.sigmas = Float64Array.from([...s32, 0]);
    this.initNoiseSigma = kInitNoiseSigma(c.timestepSpacing, this.sigmas);
  }

  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    rng?: NoiseGenerator,
  ): Float32Array {
    const c = this.config;
    checkIndex("EulerDiscreteScheduler", i, this.timesteps.length);
    const sigma = this.sigmas[i]!;
    // Karras et al. 2022 Algorithm 2, line 4: gamma = min(S_churn / N, sqrt(2) - 1) in [S_tmin, S_tmax].
    const gamma = c.sTmin <= sigma && sigma <= c.sTmax
      ? Math.min(c.sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1)
      : 0;
    // Diffusers draws the churn noise on every step, used or not, so the stream advances.
    const noise = rng !== undefined || gamma > 0
      ? drawNoise(rng, sample.length, this.noiseShape, "EulerDiscreteScheduler with s_churn > 0")
      : undefined;
    const sigmaHat = f32(sigma * f32(gamma + 1));
    let x = sample;
    if (gamma > 0 && noise !== undefined) {
      // Algorithm 2, line 6: x_hat = x + sqrt(sigma_hat^2 - sigma^2) * eps, eps ~ N(0, S_noise^2).
      const amp = sqrt32(f32(f32(sigmaHat * sigmaHat) - f32(sigma * sigma)));
      x = new Float32Array(sample.length);
      for (let k = 0; k < x.length; k++) {
        x[k] = sample[k]! + f32(f32(noise[k]! * f32(c.sNoise)) * amp);
      }
    }
    const denoised = c.predictionType === "epsilon"
      ? kDenoised("epsilon", modelOutput, x, sigmaHat)
      : kDenoised(c.predictionType, modelOutput, x, sigma);
    return eulerStep(x, denoised, sigmaHat, this.sigmas[i + 1]!);
  }
}
