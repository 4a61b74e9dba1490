/**
 * Schedulers (samplers) with Diffusers' calling convention, step-exact with Diffusers 0.27.
 *
 * `createScheduler(name, config)` takes a Diffusers class name (`"EulerDiscreteScheduler"`) or a
 * denoise sampler name (`"euler"`, `"dpm++2m"`, see names.ts) and a Diffusers
 * `scheduler_config.json` object (plus `step()` options such as `eta` or `s_churn`).
 *
 * @example
 * ```ts
 * import { createScheduler } from "./mod.ts";
 * const s = createScheduler("euler", { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 });
 * s.setTimesteps(20);
 * console.log(s.timesteps.length); // 20
 * ```
 *
 * @module
 */
import type { Scheduler } from "./scheduler.ts";
import { EulerDiscreteScheduler } from "./euler.ts";
import { DPMSolverMultistepScheduler } from "./dpm_solver_multistep.ts";
import { EulerAncestralDiscreteScheduler } from "./euler_ancestral.ts";
import { LMSDiscreteScheduler } from "./lms.ts";
import { HeunDiscreteScheduler } from "./heun.ts";
import { KDPM2DiscreteScheduler } from "./kdpm2.ts";
import { KDPM2AncestralDiscreteScheduler } from "./kdpm2_ancestral.ts";
import { DDIMScheduler } from "./ddim.ts";
import { DDPMScheduler } from "./ddpm.ts";
import { PNDMScheduler } from "./pndm.ts";
import { LCMScheduler } from "./lcm.ts";
import { TCDScheduler } from "./tcd.ts";
import { DPMSolverSinglestepScheduler } from "./dpm_solver_singlestep.ts";
import { DEISMultistepScheduler } from "./deis.ts";
import { UniPCMultistepScheduler } from "./unipc.ts";
import { KDpmpp2mSampler } from "./k_dpmpp_2m.ts";
import { KDpmpp2mSdeSampler } from "./k_dpmpp_2m_sde.ts";
import { KDpmpp3mSdeSampler } from "./k_dpmpp_3m_sde.ts";
import { KDpmpp2sAncestralSampler } from "./k_dpmpp_2s_ancestral.ts";
import { KDpmppSdeSampler } from "./k_dpmpp_sde.ts";
import { resolveSampler } from "./names.ts";

export * from "./scheduler.ts";
export * from "./config.ts";
export * from "./numpy.ts";
export * from "./betas.ts";
export * from "./training_sigmas.ts";
export * from "./beta_distribution.ts";
export * from "./sigma_schedules.ts";
export * from "./timesteps.ts";
export * from "./checks.ts";
export * from "./noise.ts";
export * from "./thresholding.ts";
export * from "./k_sigmas.ts";
export { EulerDiscreteScheduler, eulerStep } from "./euler.ts";
export { DPMSolverMultistepScheduler } from "./dpm_solver_multistep.ts";
export {
  ancestralSigmas,
  EulerAncestralDiscreteScheduler,
  eulerAncestralStep,
} from "./euler_ancestral.ts";
export { lmsCoefficient, LMSDiscreteScheduler, lmsStep } from "./lms.ts";
export { heunCorrect, HeunDiscreteScheduler } from "./heun.ts";
export { KDPM2DiscreteScheduler } from "./kdpm2.ts";
export { derivativeOf, eulerMove } from "./sigma_scheduler.ts";
export { KDPM2AncestralDiscreteScheduler } from "./kdpm2_ancestral.ts";
export {
  clipOriginal,
  DDIMScheduler,
  ddimStep,
  ddimVariance,
  integerTimesteps,
  predictOriginalAndNoise,
} from "./ddim.ts";
export { ddpmPosteriorMean, DDPMScheduler } from "./ddpm.ts";
export { PNDMScheduler, pndmTransfer } from "./pndm.ts";
export { lcmScalings, LCMScheduler, lcmStep, lcmTimesteps } from "./lcm.ts";
export { TCDScheduler, tcdStep } from "./tcd.ts";
export { DPMSolverSinglestepScheduler } from "./dpm_solver_singlestep.ts";
export { DEISMultistepScheduler } from "./deis.ts";
export { UniPCMultistepScheduler } from "./unipc.ts";
export { KDiffusionSampler } from "./k_diffusion_sampler.ts";
export { KDpmpp2mSampler } from "./k_dpmpp_2m.ts";
export { KDpmpp2mSdeSampler } from "./k_dpmpp_2m_sde.ts";
export { KDpmpp3mSdeSampler } from "./k_dpmpp_3m_sde.ts";
export { KDpmpp2sAncestralSampler } from "./k_dpmpp_2s_ancestral.ts";
export { KDpmppSdeSampler } from "./k_dpmpp_sde.ts";
export {
  a1111Label,
  a1111ScheduleType,
  type ResolvedSampler,
  resolveSampler,
  type SamplerName,
  type SamplerRow,
  samplerTable,
  scheduleFromA1111,
} from "./names.ts";

type SchedulerFactory = (config: Record<string, unknown>) => Scheduler;

const REGISTRY: ReadonlyMap<string, SchedulerFactory> = new Map<string, SchedulerFactory>([
  ["EulerDiscreteScheduler", (c) => new EulerDiscreteScheduler(c)],
  ["DPMSolverMultistepScheduler", (c) => new DPMSolverMultistepScheduler(c)],
  ["EulerAncestralDiscreteScheduler", (c) => new EulerAncestralDiscreteScheduler(c)],
  ["LMSDiscreteScheduler", (c) => new LMSDiscreteScheduler(c)],
  ["HeunDiscreteScheduler", (c) => new HeunDiscreteScheduler(c)],
  ["KDPM2DiscreteScheduler", (c) => new KDPM2DiscreteScheduler(c)],
  ["KDPM2AncestralDiscreteScheduler", (c) => new KDPM2AncestralDiscreteScheduler(c)],
  ["DDIMScheduler", (c) => new DDIMScheduler(c)],
  ["DDPMScheduler", (c) => new DDPMScheduler(c)],
  ["PNDMScheduler", (c) => new PNDMScheduler(c)],
  ["LCMScheduler", (c) => new LCMScheduler(c)],
  ["TCDScheduler", (c) => new TCDScheduler(c)],
  ["DPMSolverSinglestepScheduler", (c) => new DPMSolverSinglestepScheduler(c)],
  ["DEISMultistepScheduler", (c) => new DEISMultistepScheduler(c)],
  ["UniPCMultistepScheduler", (c) => new UniPCMultistepScheduler(c)],
  // k-diffusion forms (lib/schedulers/k_dpmpp_*.ts); not Diffusers classes.
  ["KDpmpp2mSampler", (c) => new KDpmpp2mSampler(c)],
  ["KDpmpp2mSdeSampler", (c) => new KDpmpp2mSdeSampler(c)],
  ["KDpmpp3mSdeSampler", (c) => new KDpmpp3mSdeSampler(c)],
  ["KDpmpp2sAncestralSampler", (c) => new KDpmpp2sAncestralSampler(c)],
  ["KDpmppSdeSampler", (c) => new KDpmppSdeSampler(c)],
]);

/** Diffusers class names that `createScheduler` can build. */
export function schedulerClassNames(): string[] {
  return [...REGISTRY.keys()];
}

/**
 * Builds a scheduler from a Diffusers class name or a denoise sampler name / A1111 label and a
 * Diffusers scheduler config. A sampler name adds its own config keys (e.g. `"dpm++2m-sde"` sets
 * `algorithm_type`); keys in `config` win. Throws a RangeError listing the known names.
 */
export function createScheduler(name: string, config: Record<string, unknown>): Scheduler {
  const direct = REGISTRY.get(name);
  if (direct !== undefined) return direct(config);
  let resolved;
  try {
    resolved = resolveSampler(name, undefined, config);
  } catch {
    resolved = undefined;
  }
  const factory = resolved === undefined ? undefined : REGISTRY.get(resolved.implementation);
  if (resolved === undefined || factory === undefined) {
    const why = resolved === undefined
      ? ""
      : ` (its class ${resolved.diffusersClass} is not implemented)`;
    throw new RangeError(
      `Unknown scheduler "${name}"${why}; use one of ${schedulerClassNames().join(", ")} ` +
        `or a sampler name from samplerTable()`,
    );
  }
  return factory({ ...resolved.configOverrides, ...config });
}
