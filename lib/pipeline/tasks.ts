/**
 * The diffusion tasks, as a table the runner looks up (like Diffusers' AutoPipeline maps tasks
 * to pipeline classes): each says which Jobs it makes and runs one batch of them. A new kind of
 * run is a new row, not a branch in the runner; features that apply to every task (ControlNet)
 * ride along as loop hooks in the shared parameters.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { imageToTensor, tensorToImage } from "../image/codec.ts";
import type { MaskImage } from "../image/mask.ts";
import { resizeWithMode } from "../image/resize_mode.ts";
import type { ControlnetJob } from "../job/controlnet.ts";
import type { GenerateJob, Img2ImgJob } from "../job/diffusion.ts";
import type { Nchw } from "../models/vae.ts";
import {
  type DiffusionParams,
  type DiffusionResult,
  img2img,
  refine,
  txt2img,
} from "./generate.ts";
import { hiresFix, type ModelUpscaler } from "./hires.ts";
import { inpaint } from "./inpaint.ts";
import { inpaintOnlyMasked } from "./inpaint_area.ts";
import { defaultCfg } from "./resolve.ts";
import { defaultSize } from "../model_io/diffusers_folder.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/**
 * A Job the diffusion runner makes images for. The table below makes generate and img2img Jobs;
 * a controlnet Job runs through the same rows, seen as one of them (lib/pipeline/controlnet.ts).
 */
export type DiffusionJob = GenerateJob | Img2ImgJob | ControlnetJob;

/** Pixels a run starts from (img2img): the input image, and the inpainting mask. */
export interface TaskInputs {
  /** `[1, 3, H, W]` in [-1, 1]. */
  image?: Nchw;
  /** The inpainting mask, the image's size: white repaints, black keeps. */
  mask?: MaskImage;
}

/** What a task gets for one batch. */
export interface TaskRequest<J extends DiffusionJob = DiffusionJob> {
  sd: StableDiffusion;
  job: J;
  /** Parameters every task shares: steps, guidance, seeds of the batch, conditioning, hooks. */
  params: DiffusionParams;
  inputs: TaskInputs;
  /** Opens another model through the run's cache (the SDXL refiner). */
  openModel: (spec: string) => Promise<StableDiffusion>;
  /**
   * Opens a pixel upscaling model (the hires fix's ESRGAN upscaler) through the run's cache;
   * absent when the run was given no opener.
   */
  openUpscaler?: ((spec: string) => Promise<ModelUpscaler>) | undefined;
}

/** What a task made: the batch and the facts recorded in each image's Job and infotext. */
export interface TaskOutput {
  result: DiffusionResult;
  /** The size the infotext records. */
  width: number;
  height: number;
  /** Fields set on each image's Job to record what ran (sizes that were defaults). */
  recorded: Record<string, unknown>;
}

/** One row of the task table. */
export interface DiffusionTask<J extends DiffusionJob = DiffusionJob> {
  /** A short name for messages and debug output. */
  name: string;
  /** True when this task makes `job` (the first matching row runs). */
  matches: (job: DiffusionJob, inputs: TaskInputs) => boolean;
  run: (request: TaskRequest<J>) => Promise<TaskOutput>;
}

function inputImage(job: DiffusionJob, inputs: TaskInputs): Nchw {
  if (inputs.image === undefined) throw new UsageError(`${job.command} needs an input image`);
  return inputs.image;
}

function imageSize(image: Nchw): { width: number; height: number } {
  return { width: image.dims[3], height: image.dims[2] };
}

/**
 * The img2img inputs brought to the Job's `width` x `height` with its resize mode (A1111's
 * "Resize to"): pixel modes resize the image and the mask; "latent-upscale" leaves the image
 * and asks img2img to resize its latents.
 */
function resizedInputs(job: Img2ImgJob, inputs: TaskInputs): {
  image: Nchw;
  mask?: MaskImage;
  latentResize?: { width: number; height: number };
} {
  const image = inputImage(job, inputs);
  const own = imageSize(image);
  const width = job.width ?? own.width;
  const height = job.height ?? own.height;
  const unchanged = { image, ...(inputs.mask !== undefined ? { mask: inputs.mask } : {}) };
  if (width === own.width && height === own.height) return unchanged;
  if (job.resizeMode === "latent-upscale") {
    if (inputs.mask !== undefined) {
      throw new UsageError('The resize mode "latent-upscale" cannot be used with --mask', {
        hint: "pick just-resize, crop-and-resize or resize-and-fill for inpainting",
      });
    }
    return { image, latentResize: { width, height } };
  }
  const pixels = resizeWithMode(
    tensorToImage(image.data, own.width, own.height),
    width,
    height,
    job.resizeMode,
  );
  const out = {
    image: { data: imageToTensor(pixels), dims: [1, 3, height, width] as Nchw["dims"] },
  };
  if (inputs.mask === undefined) return out;
  const m = inputs.mask;
  const resized = resizeWithMode(
    { width: m.width, height: m.height, channels: 1, data: m.data },
    width,
    height,
    job.resizeMode,
  );
  return { ...out, mask: { width, height, data: resized.data } };
}

/** The size a generate Job asks for, the model's default where it names none. */
function generateSize(sd: StableDiffusion, job: GenerateJob): { width: number; height: number } {
  const size = defaultSize(sd.model);
  return { width: job.width ?? size, height: job.height ?? size };
}

const onlyMaskedInpaint: DiffusionTask<Img2ImgJob> = {
  name: "inpaint (only masked)",
  matches: (job, inputs) =>
    job.command === "img2img" && inputs.mask !== undefined && job.inpaintFullRes,
  run: async ({ sd, job, params, inputs }) => {
    const image = inputImage(job, inputs);
    // A1111 "Only masked": the crop is processed at the Job's size (default the image's).
    const result = await inpaintOnlyMasked(sd, {
      ...params,
      image,
      mask: inputs.mask!,
      strength: job.strength,
      ...(job.maskBlur !== undefined ? { maskBlur: job.maskBlur } : {}),
      padding: job.inpaintFullResPadding,
      width: job.width,
      height: job.height,
    });
    return { result, ...imageSize(image), recorded: {} };
  },
};

const inpaintTask: DiffusionTask<Img2ImgJob> = {
  name: "inpaint",
  matches: (job, inputs) => job.command === "img2img" && inputs.mask !== undefined,
  run: async ({ sd, job, params, inputs }) => {
    const { image, mask } = resizedInputs(job, inputs);
    const result = await inpaint(sd, {
      ...params,
      image,
      mask: mask!,
      strength: job.strength,
      ...(job.maskBlur !== undefined ? { maskBlur: job.maskBlur } : {}),
    });
    return { result, ...imageSize(image), recorded: {} };
  },
};

const img2imgTask: DiffusionTask<Img2ImgJob> = {
  name: "img2img",
  matches: (job) => job.command === "img2img",
  run: async ({ sd, job, params, inputs }) => {
    const { image, latentResize } = resizedInputs(job, inputs);
    const result = await img2img(sd, {
      ...params,
      image,
      strength: job.strength,
      ...(latentResize !== undefined ? { latentResize } : {}),
    });
    return { result, ...(latentResize ?? imageSize(image)), recorded: {} };
  },
};

const hiresTask: DiffusionTask<GenerateJob> = {
  name: "hires fix",
  matches: (job) => job.command === "generate" && job.hiresScale !== undefined,
  run: async ({ sd, job, params, openUpscaler }) => {
    if (job.refiner !== undefined) {
      throw new UsageError("--hires-scale and --refiner cannot be combined", {
        hint: "drop one of them",
      });
    }
    const { width, height } = generateSize(sd, job);
    const name = job.hiresUpscaler;
    let upscaler: "latent" | "lanczos" | ModelUpscaler;
    if (name === "latent" || name === "lanczos") {
      upscaler = name;
    } else if (openUpscaler === undefined) {
      throw new UsageError(`This run cannot open the hires upscaler model "${name}"`, {
        hint: 'use --hires-upscaler latent or lanczos, or run it with "denoise generate"',
      });
    } else {
      upscaler = await openUpscaler(name);
    }
    // A1111 hires fix: the Job keeps the base size; the images come out scaled.
    const result = await hiresFix(sd, {
      ...params,
      width,
      height,
      hiresScale: job.hiresScale!,
      hiresSteps: job.hiresSteps,
      hiresStrength: job.hiresStrength,
      hiresUpscaler: upscaler,
    });
    return { result, width, height, recorded: { width, height } };
  },
};

const refineTask: DiffusionTask<GenerateJob> = {
  name: "txt2img + refiner",
  matches: (job) => job.command === "generate" && job.refiner !== undefined,
  run: async ({ sd, job, params, openModel }) => {
    const { width, height } = generateSize(sd, job);
    // SDXL base + refiner: the base stops at the switch and hands its latents over.
    const base = await txt2img(sd, { ...params, width, height, denoisingEnd: job.refinerSwitch });
    const refiner = await openModel(job.refiner!);
    const result = await refine(refiner, {
      ...params,
      cfg: job.cfg ?? defaultCfg(refiner.model),
      latents: base.latents,
      denoisingStart: job.refinerSwitch,
      ...(base.generator ? { generator: base.generator } : {}),
    });
    return { result, width, height, recorded: { width, height } };
  },
};

const txt2imgTask: DiffusionTask<GenerateJob> = {
  name: "txt2img",
  matches: (job) => job.command === "generate",
  run: async ({ sd, job, params }) => {
    const { width, height } = generateSize(sd, job);
    const result = await txt2img(sd, { ...params, width, height });
    return { result, width, height, recorded: { width, height } };
  },
};

/** The task table, most specific first: the first row whose `matches` holds runs. */
export const DIFFUSION_TASKS: readonly DiffusionTask[] = [
  onlyMaskedInpaint,
  inpaintTask,
  img2imgTask,
  hiresTask,
  refineTask,
  txt2imgTask,
] as readonly DiffusionTask[];

/**
 * The task that makes a Job.
 *
 * @example
 * ```ts
 * import { taskFor } from "./tasks.ts";
 * import { GenerateJob } from "../job/diffusion.ts";
 * const job = GenerateJob.parse({ command: "generate", hiresScale: 2 });
 * console.assert(taskFor(job, {}).name === "hires fix");
 * ```
 */
export function taskFor(
  job: DiffusionJob,
  inputs: TaskInputs,
  tasks: readonly DiffusionTask[] = DIFFUSION_TASKS,
): DiffusionTask {
  const task = tasks.find((t) => t.matches(job, inputs));
  if (task === undefined) {
    throw new UsageError(`No task makes a "${job.command}" job with these inputs`);
  }
  return task;
}
