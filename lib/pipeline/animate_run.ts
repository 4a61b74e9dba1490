/**
 * Running an `animate` Job: the one library call `denoise animate` makes. It resolves the model
 * (through the diffusion runner, so LoRAs and embeddings apply to the image model as in
 * `generate`) and the motion module (file, folder or alias), checks everything that can be
 * checked before any weights are read (the motion module against the UNet, the clip length
 * against the module's positions and the context windows, the prompt map against the frames),
 * registers the motion UNet, makes the clip and returns its frames with the Job and infotext
 * every written format records.
 *
 * @module
 */
import { basename } from "node:path";
import type { LoraLedger } from "../adapters/mod.ts";
import type { MotionLoraLedger } from "../adapters/motion_lora.ts";
import { UsageError } from "../errors.ts";
import type { RawImage } from "../image/codec.ts";
import type { ProgressCallback } from "../io/progress.ts";
import { AnimateJob } from "../job/animate.ts";
import { withFields } from "../job/define.ts";
import { infotextFor } from "../job/infotext.ts";
import { defaultSize } from "../model_io/diffusers_folder.ts";
import { assertMotionFits } from "../models/motion.ts";
import { type AnimateResult, animateVideo, type VideoConditioner } from "./animate.ts";
import { conditionerFor } from "./conditioning.ts";
import { checkContextOptions, type ContextOptions } from "./context_windows.ts";
import { openMotionModule, registerMotionUnet } from "./motion_unet.ts";
import { keyframes, sharedConditioning, travelConditioning } from "./prompt_travel.ts";
import { defaultCfg, modelName, resolveMotionModule, type RunEnvironment } from "./resolve.ts";
import { DiffusionRunner } from "./run.ts";
import { checkClipLength } from "./video_loop.ts";

/** Options of {@linkcode runAnimateJob}. */
export interface RunAnimateOptions {
  onProgress?: ProgressCallback | undefined;
  /** What each image-model LoRA file applied (for --debug). */
  onAdapters?: ((ledgers: readonly LoraLedger[]) => void) | undefined;
  /** What each motion LoRA applied, when the motion UNet is built (for --debug). */
  onMotionLoras?: ((ledgers: readonly MotionLoraLedger[]) => void) | undefined;
  /** Windows per UNet call with context windows (see video_loop.ts). */
  windowsPerCall?: number | undefined;
}

/** A made clip with what every output format records. */
export interface MadeAnimation {
  /** The Job that remakes the clip (sizes, guidance and precision filled in). */
  job: AnimateJob;
  /** The A1111-style infotext of the clip. */
  infotext: string;
  frames: RawImage[];
  width: number;
  height: number;
  fps: number;
  latents: AnimateResult["latents"];
}

/**
 * The context-window options of a Job (defaults filled in), or undefined without
 * `contextLength`; window flags without it are a UsageError.
 *
 * @example
 * ```ts
 * import { AnimateJob } from "../job/animate.ts";
 * import { contextOptionsOf } from "./animate_run.ts";
 * const job = AnimateJob.parse({ command: "animate", contextLength: 16 });
 * console.assert(contextOptionsOf(job)?.overlap === 4);
 * ```
 */
export function contextOptionsOf(job: AnimateJob): ContextOptions | undefined {
  if (job.contextLength === undefined) {
    const stray = (["contextOverlap", "contextStride", "contextSchedule", "closedLoop"] as const)
      .filter((k) => job[k] !== undefined);
    if (stray.length > 0) {
      throw new UsageError(`${stray.map(flagName).join(", ")} need --context-length`, {
        hint: "pass --context-length N (e.g. 16) to denoise in sliding windows",
      });
    }
    return undefined;
  }
  return {
    length: job.contextLength,
    overlap: job.contextOverlap ?? 4,
    stride: job.contextStride ?? 1,
    schedule: job.contextSchedule ?? "standard_uniform",
    closedLoop: job.closedLoop ?? false,
  };
}

function flagName(field: string): string {
  return "--" + field.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** A keyframe's prompt: the Job's prompt (when set) before the keyframe's own text. */
function keyframePrompt(base: string, prompt: string): string {
  return base.trim() === "" ? prompt : `${base}, ${prompt}`;
}

/** Every prompt of a Job (for LoRA tags and embedding names found in any keyframe). */
function allPrompts(job: AnimateJob): string {
  return [job.prompt, ...Object.values(job.promptMap ?? {})].join("\n");
}

/**
 * Checks a Job's values that need no model: the clip against the context windows and the
 * prompt map against the frames. Throws UsageError / RangeError naming the flag.
 *
 * @example
 * ```ts
 * import { AnimateJob } from "../job/animate.ts";
 * import { checkAnimateJob } from "./animate_run.ts";
 * let refused = false;
 * try {
 *   checkAnimateJob(AnimateJob.parse({ command: "animate", frames: 8, promptMap: { "9": "x" } }));
 * } catch { refused = true; }
 * console.assert(refused);
 * ```
 */
export function checkAnimateJob(job: AnimateJob): void {
  const context = contextOptionsOf(job);
  if (context !== undefined) checkContextOptions(context);
  if (job.promptMap !== undefined) keyframes(job.promptMap, job.frames);
}

/**
 * Makes the clip of an animate Job (its seed fixed). Throws before loading weights when the
 * motion module does not fit the model, the clip is longer than the module's positions without
 * context windows, or the prompt map names a frame past the clip.
 *
 * @example
 * ```ts ignore
 * const made = await runAnimateJob(env, AnimateJob.parse({ command: "animate",
 *   prompt: "a fox", model: "sd15", motionModule: "mm_sd_v15_v2", seed: 7 }));
 * await Deno.writeFile("fox.webp", await encodeAnimationWithMetadata(made.frames, "webp",
 *   { infotext: made.infotext, job: made.job }, { fps: made.fps }));
 * ```
 */
export async function runAnimateJob(
  env: RunEnvironment,
  job: AnimateJob,
  options: RunAnimateOptions = {},
): Promise<MadeAnimation> {
  if (job.seed === undefined) throw new TypeError("runAnimateJob() needs a Job with a seed");
  checkAnimateJob(job);
  const context = contextOptionsOf(job);
  const runner = new DiffusionRunner(env);
  const motionPath = await resolveMotionModule(job.motionModule, env);
  const model = await runner.diffusersModel(job.model);
  if (model.unet.config.timeCondProjDim !== null) {
    throw new UsageError(
      `The model in ${model.dir} is a latent consistency model (time_cond_proj_dim); animate ` +
        `runs AnimateDiff on ordinary SD UNets`,
      { hint: "pass a base model such as sd15" },
    );
  }
  using motion = await openMotionModule(motionPath, model.unet.config);
  checkClipLength(job.frames, motion.config.maxSeqLength, context);
  if (context !== undefined) checkContextOptions(context, motion.config.maxSeqLength);
  try {
    // The image model with the Job's LoRAs and embeddings (from every keyframe prompt too).
    const adapterJob = { ...job, prompt: allPrompts(job) };
    const adapters = await runner.adapters(adapterJob);
    if (adapters.ledgers.length > 0) options.onAdapters?.(adapters.ledgers);
    const precision = runner.precision(job);
    const sd = await runner.open(job.model, job.vae, adapters, precision);
    assertMotionFits(sd.model.unet.config, motion.config);
    await registerMotionUnet(sd, motion, {
      motionLoras: (job.motionLora ?? []).map((l) => ({ path: l.path, scale: l.scale })),
      ...(options.onMotionLoras ? { onMotionLoras: options.onMotionLoras } : {}),
    });
    const size = defaultSize(sd.model);
    const width = job.width ?? size;
    const height = job.height ?? size;
    const cfg = job.cfg ?? defaultCfg(sd.model);
    const embeddings = adapters.tokens;
    let conditioner: VideoConditioner;
    if (job.promptMap === undefined) {
      const plain = conditionerFor({ ...job, embeddings });
      conditioner = async (s, scheduler, sz) => sharedConditioning(await plain(s, scheduler, sz));
    } else {
      const keys = keyframes(job.promptMap, job.frames);
      conditioner = async (s, scheduler, sz) => {
        const perKeyframe = [];
        for (const k of keys) {
          const one = conditionerFor({
            ...job,
            prompt: keyframePrompt(job.prompt, k.prompt),
            embeddings,
          });
          perKeyframe.push(await one(s, scheduler, sz));
        }
        return travelConditioning(keys.map((k) => k.frame), perKeyframe, job.frames);
      };
    }
    const result = await animateVideo(sd, {
      steps: job.steps,
      cfg,
      sampler: job.sampler,
      schedule: job.schedule,
      seed: BigInt(job.seed),
      rng: job.rng,
      width,
      height,
      frames: job.frames,
      motion: motion.config,
      conditioner,
      context,
      windowsPerCall: options.windowsPerCall,
      vaeTiling: job.vaeTiling,
      releaseTextEncoders: true,
      onProgress: options.onProgress,
    });
    // Record what ran (sizes and guidance that were defaults, the context defaults used).
    const recorded = withFields(AnimateJob, job, {
      width,
      height,
      cfg,
      precision,
      ...(context !== undefined
        ? {
          contextOverlap: context.overlap,
          contextStride: context.stride,
          contextSchedule: context.schedule,
          ...(context.schedule === "looped_uniform" ? { closedLoop: context.closedLoop } : {}),
        }
        : {}),
    });
    const extra: Record<string, string> = {
      ...adapters.infotext,
      "Motion module": basename(motionPath),
      Frames: String(job.frames),
      FPS: String(job.fps),
    };
    if (context !== undefined) {
      extra["Context"] =
        `${context.length}/${context.overlap}/${context.stride} ${context.schedule}`;
    }
    if ((job.motionLora ?? []).length > 0) {
      extra["Motion LoRAs"] = job.motionLora!.map((l) => `${basename(l.path)}: ${l.scale}`)
        .join(", ");
    }
    if (job.promptMap !== undefined) extra["Prompt map"] = JSON.stringify(job.promptMap);
    const infotext = infotextFor(recorded, {
      width,
      height,
      cfg,
      schedulerClass: String(sd.model.schedulerConfig._class_name ?? ""),
      schedulerConfig: sd.model.schedulerConfig,
      modelName: modelName(job.model, sd.model.dir),
      version: `denoise ${env.version}`,
      extra,
    });
    return {
      job: recorded,
      infotext,
      frames: result.frames,
      width,
      height,
      fps: job.fps,
      latents: result.latents,
    };
  } finally {
    await runner.release();
  }
}
