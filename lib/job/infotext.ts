/**
 * Jobs and A1111 infotext (the `parameters` text every image denoise writes carries): the
 * infotext of a Job, and a Job rebuilt from the infotext of an image made by A1111 or its forks.
 *
 * @module
 */
import { formatInfotext, type InfotextSummary } from "../meta/a1111.ts";
import {
  a1111ScheduleType,
  resolveSampler,
  samplerTable,
  scheduleFromA1111,
  type ScheduleName,
} from "../schedulers/mod.ts";

/** The Job fields the infotext reads. */
export interface InfotextJob {
  command: string;
  prompt: string;
  negative?: string | undefined;
  steps: number;
  cfg?: number | undefined;
  sampler?: string | undefined;
  schedule?: ScheduleName | undefined;
  seed?: number | string | undefined;
  clipSkip: number;
  strength?: number | undefined;
  mask?: string | undefined;
  maskBlur?: number | undefined;
  inpaintFullRes?: boolean | undefined;
  inpaintFullResPadding?: number | undefined;
  hiresScale?: number | undefined;
  hiresSteps?: number | undefined;
  hiresStrength?: number | undefined;
  hiresUpscaler?: string | undefined;
  rng: string;
  emphasis?: string | undefined;
}

/** Facts known only at run time. */
export interface InfotextContext {
  width: number;
  height: number;
  /** Guidance actually used (the family default when the job has none). */
  cfg: number;
  /** The model's scheduler class (used when the job names no sampler). */
  schedulerClass: string;
  schedulerConfig: Record<string, unknown>;
  /** Model name (folder or file stem). */
  modelName: string;
  version: string;
  /** Extra `Key: value` pairs (Lora hashes, TI hashes...). */
  extra?: Record<string, string>;
}

function samplerLabels(
  job: InfotextJob,
  ctx: InfotextContext,
): { sampler: string; schedule?: string } {
  try {
    const resolved = job.sampler !== undefined
      ? resolveSampler(job.sampler)
      : resolveSampler(ctx.schedulerClass, undefined, ctx.schedulerConfig);
    const schedule = job.schedule ?? resolved.schedule;
    const label = labelOf(resolved.sampler);
    const out: { sampler: string; schedule?: string } = { sampler: label };
    if (schedule !== "default") out.schedule = a1111ScheduleType(schedule);
    return out;
  } catch {
    return { sampler: job.sampler ?? ctx.schedulerClass };
  }
}

/** The A1111 label of a denoise sampler name, without a schedule suffix. */
function labelOf(sampler: string): string {
  return samplerTable().find((r) => r.sampler === sampler)?.a1111 ?? sampler;
}

/**
 * A1111's names of the Real-ESRGAN upscalers (modules/realesrgan_model.py) and the
 * models.lock.json aliases of the same files.
 */
export const A1111_UPSCALER_ALIASES: Readonly<Record<string, string>> = {
  "R-ESRGAN 4x+": "realesrgan-x4plus",
  "R-ESRGAN 4x+ Anime6B": "realesrgan-x4plus-anime-6b",
  "R-ESRGAN 2x+": "realesrgan-x2plus",
  "R-ESRGAN General 4xV3": "realesr-general-x4v3",
  "R-ESRGAN AnimeVideo": "realesr-animevideov3",
};

/**
 * The name an upscaler model is shown by: a file's name without its folder and extension, an
 * alias as it is.
 *
 * @example
 * ```ts
 * import { upscalerModelName } from "./infotext.ts";
 * console.assert(upscalerModelName("/m/4x-UltraSharp.pth") === "4x-UltraSharp");
 * console.assert(upscalerModelName("realesrgan-x4plus") === "realesrgan-x4plus");
 * ```
 */
export function upscalerModelName(spec: string): string {
  const base = spec.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? spec;
  return base.replace(/\.(pth|pt|safetensors|ckpt|bin)$/i, "") || spec;
}

/**
 * The infotext's "Hires upscaler" value for a Job's `hiresUpscaler`: "Latent", "Lanczos", or the
 * model's name ({@linkcode upscalerModelName}).
 *
 * @example
 * ```ts
 * import { hiresUpscalerLabel } from "./infotext.ts";
 * console.assert(hiresUpscalerLabel("latent") === "Latent");
 * console.assert(hiresUpscalerLabel("models/RealESRGAN_x4plus.pth") === "RealESRGAN_x4plus");
 * ```
 */
export function hiresUpscalerLabel(value: string): string {
  if (value === "latent") return "Latent";
  if (value === "lanczos") return "Lanczos";
  return upscalerModelName(value);
}

/**
 * A Job's `hiresUpscaler` from an infotext's "Hires upscaler": A1111's latent modes are
 * "latent"; Lanczos, Nearest and None (a plain resize) are "lanczos"; A1111's Real-ESRGAN names
 * are the aliases of the same files ({@linkcode A1111_UPSCALER_ALIASES}); any other name is kept
 * (an ESRGAN-family model of that name, which a replay must be able to find).
 *
 * @example
 * ```ts
 * import { hiresUpscalerFromLabel } from "./infotext.ts";
 * console.assert(hiresUpscalerFromLabel("Latent (antialiased)") === "latent");
 * console.assert(hiresUpscalerFromLabel("R-ESRGAN 4x+") === "realesrgan-x4plus");
 * console.assert(hiresUpscalerFromLabel("4x-UltraSharp") === "4x-UltraSharp");
 * ```
 */
export function hiresUpscalerFromLabel(label: string): string {
  const name = label.trim();
  if (/^latent/i.test(name)) return "latent";
  if (/^(lanczos|nearest|none)$/i.test(name)) return "lanczos";
  return A1111_UPSCALER_ALIASES[name] ?? name;
}

/** Formats the A1111 `parameters` text of one image. */
export function infotextFor(job: InfotextJob, ctx: InfotextContext): string {
  const labels = samplerLabels(job, ctx);
  const params: Record<string, string> = {
    Steps: String(job.steps),
    Sampler: labels.sampler,
  };
  if (labels.schedule) params["Schedule type"] = labels.schedule;
  params["CFG scale"] = String(ctx.cfg);
  params["Seed"] = String(job.seed ?? "");
  params["Size"] = `${ctx.width}x${ctx.height}`;
  params["Model"] = ctx.modelName;
  if (job.clipSkip > 1) params["Clip skip"] = String(job.clipSkip);
  if (job.strength !== undefined) params["Denoising strength"] = String(job.strength);
  if (job.mask !== undefined) params["Mask blur"] = String(job.maskBlur ?? 0);
  if (job.mask !== undefined && job.inpaintFullRes === true) {
    params["Inpaint area"] = "Only masked";
    params["Masked area padding"] = String(job.inpaintFullResPadding ?? 32);
  }
  if (job.hiresScale !== undefined) {
    params["Hires upscale"] = String(job.hiresScale);
    params["Hires steps"] = String(job.hiresSteps ?? job.steps);
    params["Hires upscaler"] = hiresUpscalerLabel(job.hiresUpscaler ?? "latent");
    params["Denoising strength"] = String(job.hiresStrength ?? 0.7);
  }
  if (job.rng === "nv") params["RNG"] = "NV";
  else params["RNG"] = "CPU";
  if (job.emphasis !== undefined && job.emphasis !== "original") {
    params["Emphasis"] = { none: "None", ignore: "Ignore", "no-norm": "No norm" }[job.emphasis] ??
      job.emphasis;
  }
  Object.assign(params, ctx.extra ?? {});
  params["Version"] = ctx.version;
  return formatInfotext({
    prompt: job.prompt,
    negativePrompt: job.negative ?? "",
    params,
    extraLines: [],
  });
}

/**
 * A generate/img2img Job document from an A1111 infotext (the inverse of {@linkcode infotextFor}),
 * so `--job image.png` replays images made by A1111 and its forks: prompt, negative, steps,
 * sampler (A1111 label) and schedule type, CFG scale, seed, size, clip skip, RNG, hires fix.
 * The model is not mapped (an A1111 model name is not a path): pass `-m`.
 */
export function jobFromInfotext(info: {
  prompt: string;
  negativePrompt: string;
  params: Record<string, string>;
  summary: InfotextSummary;
}): Record<string, unknown> {
  const s = info.summary;
  const img2img = s.denoisingStrength !== undefined && s.hires === undefined;
  const job: Record<string, unknown> = {
    command: img2img ? "img2img" : "generate",
    prompt: info.prompt,
    negative: info.negativePrompt,
  };
  if (s.steps !== undefined) job.steps = s.steps;
  if (s.cfgScale !== undefined) job.cfg = s.cfgScale;
  if (s.seed !== undefined) job.seed = s.seed;
  if (s.clipSkip !== undefined) job.clipSkip = s.clipSkip;
  if (s.sampler !== undefined) job.sampler = s.sampler;
  const schedule = scheduleFromA1111(s.scheduleType ?? "");
  if (schedule !== undefined) job.schedule = schedule;
  // A1111's Size is the output size for both (img2img resizes its input to it).
  if (s.width !== undefined && s.height !== undefined) {
    job.width = s.width;
    job.height = s.height;
  }
  if (img2img) job.strength = s.denoisingStrength;
  const maskBlur = Number(info.params["Mask blur"]);
  if (img2img && info.params["Mask blur"] !== undefined && Number.isFinite(maskBlur)) {
    job.maskBlur = maskBlur;
  }
  if (img2img && info.params["Inpaint area"]?.toLowerCase() === "only masked") {
    job.inpaintFullRes = true;
    const padding = Number(info.params["Masked area padding"]);
    if (Number.isInteger(padding) && padding >= 0) job.inpaintFullResPadding = padding;
  }
  if (info.params["RNG"]?.toUpperCase() === "NV") job.rng = "nv";
  if (s.hires !== undefined) {
    const scale = Number(s.hires.upscale);
    if (Number.isFinite(scale) && scale >= 1) job.hiresScale = scale;
    const steps = Number(s.hires.steps);
    if (Number.isInteger(steps) && steps > 0) job.hiresSteps = steps;
    if (s.denoisingStrength !== undefined) job.hiresStrength = s.denoisingStrength;
    job.hiresUpscaler = hiresUpscalerFromLabel(String(s.hires.upscaler ?? "Latent"));
  }
  return job;
}
