/**
 * The one table of sampler names: denoise names, A1111 labels and Diffusers class names, and the
 * config keys each needs. A1111 names are from its `modules/sd_samplers_kdiffusion.py` and
 * `modules/sd_schedulers.py`; the Diffusers equivalents from Diffusers' scheduler overview
 * (docs/source/en/api/schedulers/overview.md).
 *
 * @module
 */
import { configSigmaSchedule, type ScheduleName, SIGMA_SCHEDULES } from "./sigma_schedules.ts";

/** denoise sampler names. */
export type SamplerName =
  | "ddim"
  | "ddpm"
  | "pndm"
  | "lms"
  | "euler"
  | "euler-a"
  | "heun"
  | "dpm2"
  | "dpm2-a"
  | "dpm++2m"
  | "dpm++2m-sde"
  | "dpm++3m-sde"
  | "dpm++sde"
  | "dpm++2s-a"
  | "unipc"
  | "deis"
  | "lcm"
  | "tcd";

/** One row of the sampler table (what `denoise samplers` prints). */
export interface SamplerRow {
  sampler: SamplerName;
  /** A1111 sampler label without a schedule suffix. */
  a1111: string;
  /** Diffusers scheduler class (for metadata); a denoise class where Diffusers has none. */
  diffusersClass: string;
  /** The registry class `createScheduler` builds (differs where Diffusers lacks the sampler). */
  implementation: string;
  /** Config keys the sampler sets on top of the model's scheduler_config.json. */
  configOverrides: Readonly<Record<string, unknown>>;
  /** Schedules the sampler accepts (sigma-free samplers take only "default"). */
  schedules: readonly ScheduleName[];
  /** Whether steps draw noise from the generator. */
  stochastic: boolean;
}

/** What a label resolves to. */
export interface ResolvedSampler {
  sampler: SamplerName;
  schedule: ScheduleName;
  diffusersClass: string;
  /** The registry class `createScheduler` builds for it. */
  implementation: string;
  /** Sampler keys plus the schedule's keys, to merge over the model's scheduler config. */
  configOverrides: Record<string, unknown>;
}

const ALL_SCHEDULES: readonly ScheduleName[] = SIGMA_SCHEDULES;
const ONLY_DEFAULT: readonly ScheduleName[] = ["default"];

// Samplers that Diffusers 0.27 cannot run (3M SDE needs order 3 with sde-dpmsolver++, which its
// multistep scheduler rejects; DPMSolverSDEScheduler needs torchsde) use the k-diffusion forms.
const IMPLEMENTATION: Partial<Record<SamplerName, string>> = {
  "dpm++3m-sde": "KDpmpp3mSdeSampler",
  "dpm++sde": "KDpmppSdeSampler",
  "dpm++2s-a": "KDpmpp2sAncestralSampler",
};

const TABLE: readonly SamplerRow[] = [
  row("ddim", "DDIM", "DDIMScheduler", {}, ONLY_DEFAULT, false),
  row("ddpm", "DDPM", "DDPMScheduler", {}, ONLY_DEFAULT, true),
  row("pndm", "PLMS", "PNDMScheduler", { skip_prk_steps: true }, ONLY_DEFAULT, false),
  row("lms", "LMS", "LMSDiscreteScheduler", {}, ALL_SCHEDULES, false),
  row("euler", "Euler", "EulerDiscreteScheduler", {}, ALL_SCHEDULES, false),
  row("euler-a", "Euler a", "EulerAncestralDiscreteScheduler", {}, ALL_SCHEDULES, true),
  row("heun", "Heun", "HeunDiscreteScheduler", {}, ALL_SCHEDULES, false),
  row("dpm2", "DPM2", "KDPM2DiscreteScheduler", {}, ALL_SCHEDULES, false),
  row("dpm2-a", "DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, ALL_SCHEDULES, true),
  row("dpm++2m", "DPM++ 2M", "DPMSolverMultistepScheduler", {}, ALL_SCHEDULES, false),
  row(
    "dpm++2m-sde",
    "DPM++ 2M SDE",
    "DPMSolverMultistepScheduler",
    {
      algorithm_type: "sde-dpmsolver++",
    },
    ALL_SCHEDULES,
    true,
  ),
  row(
    "dpm++3m-sde",
    "DPM++ 3M SDE",
    "DPMSolverMultistepScheduler",
    {
      algorithm_type: "sde-dpmsolver++",
      solver_order: 3,
    },
    ALL_SCHEDULES,
    true,
  ),
  row("dpm++sde", "DPM++ SDE", "DPMSolverSDEScheduler", {}, ALL_SCHEDULES, true),
  row("dpm++2s-a", "DPM++ 2S a", "KDpmpp2sAncestralSampler", {}, ALL_SCHEDULES, true),
  row("unipc", "UniPC", "UniPCMultistepScheduler", {}, ALL_SCHEDULES, false),
  row("deis", "DEIS", "DEISMultistepScheduler", {}, ALL_SCHEDULES, false),
  row("lcm", "LCM", "LCMScheduler", {}, ONLY_DEFAULT, true),
  row("tcd", "TCD", "TCDScheduler", {}, ONLY_DEFAULT, true),
];

function row(
  sampler: SamplerName,
  a1111: string,
  diffusersClass: string,
  configOverrides: Record<string, unknown>,
  schedules: readonly ScheduleName[],
  stochastic: boolean,
): SamplerRow {
  const implementation = IMPLEMENTATION[sampler] ?? diffusersClass;
  return { sampler, a1111, diffusersClass, implementation, configOverrides, schedules, stochastic };
}

/** A1111 "Schedule type" labels (sd_schedulers.py) for the schedules denoise implements. */
const A1111_SCHEDULES: readonly [string, ScheduleName][] = [
  ["Automatic", "default"],
  ["Uniform", "default"],
  ["Karras", "karras"],
  ["Exponential", "exponential"],
  ["Beta", "beta"],
  ["SGM Uniform", "sgm-uniform"],
  ["Simple", "simple"],
];

/** Every sampler with its labels, for `denoise samplers` (copies; safe to modify). */
export function samplerTable(): SamplerRow[] {
  return TABLE.map((r) => ({ ...r, configOverrides: { ...r.configOverrides } }));
}

function normalise(s: string): string {
  return s.trim().toLowerCase().replace(/[\s_]+/g, " ");
}

function parseSchedule(label: string): ScheduleName {
  const n = normalise(label).replace(/ /g, "-");
  for (const s of ALL_SCHEDULES) if (s === n || configSigmaSchedule(s) === n) return s;
  for (const [a, s] of A1111_SCHEDULES) if (normalise(a).replace(/ /g, "-") === n) return s;
  throw new RangeError(
    `Unknown schedule "${label}"; use one of ${ALL_SCHEDULES.join(", ")} ` +
      `(or an A1111 schedule type: ${A1111_SCHEDULES.map(([a]) => a).join(", ")})`,
  );
}

function scheduleKeys(schedule: ScheduleName): Record<string, unknown> {
  if (schedule === "default") return {};
  const keys: Record<string, unknown> = { sigma_schedule: configSigmaSchedule(schedule) };
  // Diffusers' own key, so the config also means Karras to Diffusers itself.
  if (schedule === "karras") keys["use_karras_sigmas"] = true;
  return keys;
}

function scheduleFromConfig(config: Record<string, unknown>): ScheduleName {
  const s = config["sigma_schedule"];
  if (typeof s === "string") return parseSchedule(s);
  if (config["use_karras_sigmas"] === true) return "karras";
  if (config["use_exponential_sigmas"] === true) return "exponential";
  if (config["use_beta_sigmas"] === true) return "beta";
  return "default";
}

/**
 * Resolves a denoise sampler name, an A1111 label ("DPM++ 2M Karras", "Euler a") or a Diffusers
 * class name to the sampler, schedule, Diffusers class and config keys. `scheduleType` is a
 * separate schedule (denoise name or A1111 "Schedule type"); it overrides a suffix in the label.
 * `config` (a scheduler config) refines a bare Diffusers class name, e.g. its
 * `algorithm_type` or `use_karras_sigmas`.
 *
 * @example
 * ```ts
 * import { resolveSampler } from "./names.ts";
 * resolveSampler("DPM++ 2M Karras");
 * // { sampler: "dpm++2m", schedule: "karras", diffusersClass: "DPMSolverMultistepScheduler", ... }
 * ```
 */
export function resolveSampler(
  label: string,
  scheduleType?: string,
  config: Record<string, unknown> = {},
): ResolvedSampler {
  const n = normalise(label);
  let found: SamplerRow | undefined = TABLE.find((r) => r.sampler === n);
  let schedule: ScheduleName = "default";
  if (found === undefined) {
    // A1111 label, possibly with a legacy schedule suffix ("DPM2 a Karras").
    for (const r of TABLE) {
      const base = normalise(r.a1111);
      if (n === base) {
        found = r;
        break;
      }
      for (const [suffix, s] of [[" karras", "karras"], [" exponential", "exponential"]] as const) {
        if (n === base + suffix) {
          found = r;
          schedule = s;
        }
      }
      if (found !== undefined) break;
    }
  }
  if (found === undefined) {
    // A Diffusers class: the row whose overrides the config agrees with, preferring the most specific.
    const rows = TABLE.filter((r) => r.diffusersClass === label.trim());
    let best = -1;
    for (const r of rows) {
      const keys = Object.entries(r.configOverrides);
      const agrees = keys.every(([k, v]) => config[k] === v);
      if (agrees && keys.length > best) {
        best = keys.length;
        found = r;
      }
    }
    if (found !== undefined) schedule = scheduleFromConfig(config);
  }
  if (found === undefined) {
    throw new RangeError(
      `Unknown sampler "${label}"; use a denoise name (${
        TABLE.map((r) => r.sampler).join(", ")
      }), ` +
        `an A1111 label such as "DPM++ 2M Karras", or a Diffusers class name`,
    );
  }
  if (scheduleType !== undefined && scheduleType !== "") schedule = parseSchedule(scheduleType);
  if (!found.schedules.includes(schedule)) {
    throw new RangeError(
      `Sampler "${found.sampler}" has no sigma schedule "${schedule}"; use --schedule default`,
    );
  }
  return {
    sampler: found.sampler,
    schedule,
    diffusersClass: found.diffusersClass,
    implementation: found.implementation,
    configOverrides: { ...found.configOverrides, ...scheduleKeys(schedule) },
  };
}

/**
 * The A1111 label of a sampler and schedule: the legacy one-string form ("DPM++ 2M Karras") for
 * default / karras / exponential, else the bare sampler label, whose schedule then belongs in
 * A1111's separate "Schedule type" field (see `a1111ScheduleType`).
 *
 * @example
 * ```ts
 * import { a1111Label } from "./names.ts";
 * a1111Label("euler-a", "default"); // "Euler a"
 * ```
 */
export function a1111Label(sampler: SamplerName, schedule: ScheduleName): string {
  const r = TABLE.find((x) => x.sampler === sampler);
  if (r === undefined) throw new RangeError(`Unknown sampler "${sampler}"`);
  if (schedule === "karras") return `${r.a1111} Karras`;
  if (schedule === "exponential") return `${r.a1111} Exponential`;
  return r.a1111;
}

/** A1111's "Schedule type" label for a schedule ("Automatic" for the sampler's default). */
export function a1111ScheduleType(schedule: ScheduleName): string {
  const hit = A1111_SCHEDULES.find(([, s]) => s === schedule);
  return hit === undefined ? "Automatic" : hit[0];
}

/**
 * The schedule an A1111 "Schedule type" label names (any case), or undefined for "Automatic"
 * and labels denoise does not know.
 *
 * @example
 * ```ts
 * import { scheduleFromA1111 } from "./names.ts";
 * console.assert(scheduleFromA1111("SGM Uniform") === "sgm-uniform");
 * console.assert(scheduleFromA1111("Automatic") === undefined);
 * ```
 */
export function scheduleFromA1111(label: string): ScheduleName | undefined {
  const wanted = label.trim().toLowerCase();
  return A1111_SCHEDULES.find(([l]) => l.toLowerCase() === wanted)?.[1];
}
