/**
 * Running generate / img2img Jobs: resolve the model, keep its sessions for the whole run, make
 * each batch, and hand every finished image (encoded, with metadata) to the caller.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { ModelNotFoundError, UsageError } from "../errors.ts";
import type { ImageFormat } from "../image/codec.ts";
import type { MaskImage } from "../image/mask.ts";
import type { ProgressCallback } from "../io/progress.ts";
import { GenerateJob, Img2ImgJob } from "../job.ts";
import type { Nchw } from "../models/vae.ts";
import { lockedModel, modelDir, type ModelsLock, modelStatus } from "../hub/mod.ts";
import type { BatchTask } from "./batch.ts";
import { conditionerFor } from "./conditioning.ts";
import { type DiffusionResult, img2img, refine, txt2img } from "./generate.ts";
import { inpaint } from "./inpaint.ts";
import { encodeWithMetadata, infotextFor } from "./metadata.ts";
import { defaultSize, type ModelFamily } from "./model.ts";
import { StableDiffusion } from "./stable_diffusion.ts";
import type { ScheduleFlag } from "./sampling.ts";

/** Where models and built graphs live, and how sessions run. */
export interface RunEnvironment {
  /** Cache root: built graphs go to `<cacheDir>/graphs`, pulled models to `<cacheDir>/models`. */
  cacheDir: string;
  /** Model aliases. */
  lock?: ModelsLock;
  threads?: number | undefined;
  device?: "cpu" | "cuda";
  lowMemory?: boolean;
  /** denoise version, recorded in metadata. */
  version: string;
}

/** Resolves `--model` (a folder or an alias from the lock) to a Diffusers folder. */
export async function resolveModel(spec: string | undefined, env: RunEnvironment): Promise<string> {
  if (spec === undefined || spec === "") {
    throw new UsageError("No model given", {
      hint: "pass --model FOLDER (a Diffusers folder) or --model ALIAS (see denoise models list)",
    });
  }
  if (existsSync(spec)) {
    const stat = statSync(spec);
    if (stat.isDirectory()) return resolve(spec);
    if (/\.(safetensors|ckpt|pt|pth|bin)$/i.test(spec)) {
      throw new UsageError(`Single-file checkpoints cannot be run directly yet: "${spec}"`, {
        hint: "use a Diffusers folder for now",
      });
    }
    throw new UsageError(`"--model ${spec}" is a file, not a model folder`);
  }
  if (env.lock && env.lock.models[spec] !== undefined) {
    const model = lockedModel(env.lock, spec);
    const status = await modelStatus(env.cacheDir, spec, model);
    if (status.some((s) => !s.present)) {
      throw new ModelNotFoundError(`Model "${spec}" is not downloaded`, {
        hint: `run "denoise models pull ${spec}"`,
      });
    }
    return modelDir(env.cacheDir, spec, model);
  }
  throw new ModelNotFoundError(`Model "${spec}" is neither a folder nor a known alias`, {
    hint: "pass a Diffusers folder, or an alias from denoise models list",
  });
}

/** Default guidance scale per family (Diffusers' pipeline defaults). */
export function defaultCfg(family: ModelFamily): number {
  return family === "sdxl" || family === "sdxl-refiner" ? 5 : 7.5;
}

/** An image made by a run, encoded with its metadata. */
export interface MadeImage {
  /** File name stem from the batch plan. */
  name: string;
  seed: bigint;
  /** The Job that remakes this image alone. */
  job: GenerateJob | Img2ImgJob;
  bytes: Uint8Array;
  width: number;
  height: number;
}

/** Options for {@linkcode runBatches}. */
export interface RunBatchesOptions {
  format: ImageFormat;
  quality?: number;
  onProgress?: ProgressCallback;
  /** The input image for img2img, `[1, 3, H, W]` in [-1, 1]. */
  image?: Nchw;
  /** The inpainting mask for img2img (same size as `image`): white repaints, black keeps. */
  mask?: MaskImage;
  /** Called with each finished image, in order. */
  onImage: (image: MadeImage) => Promise<void>;
}

/** An open run: models are loaded once and reused by every batch. */
export class DiffusionRunner {
  readonly env: RunEnvironment;
  #models = new Map<string, Promise<StableDiffusion>>();

  constructor(env: RunEnvironment) {
    this.env = env;
  }

  /** Opens (once) the model a Job names. */
  async model(job: GenerateJob | Img2ImgJob): Promise<StableDiffusion> {
    return await this.open(job.model, job.vae);
  }

  /** Opens (once) a model by `--model` spec, optionally with another VAE. */
  async open(spec: string | undefined, vae?: string): Promise<StableDiffusion> {
    const path = await resolveModel(spec, this.env);
    const key = `${path}\0${vae ?? ""}`;
    let sd = this.#models.get(key);
    if (sd === undefined) {
      sd = StableDiffusion.open(path, {
        cacheDir: this.env.cacheDir,
        threads: this.env.threads,
        executionProvider: this.env.device ?? "cpu",
        lowMemory: this.env.lowMemory ?? false,
        ...(vae !== undefined ? { vaeDir: vae } : {}),
      });
      this.#models.set(key, sd);
      sd.catch(() => this.#models.delete(key));
    }
    return await sd;
  }

  /** Makes the images of some batches (all from Jobs with fixed seeds). */
  async run(
    batches: ReadonlyArray<BatchTask<GenerateJob> | BatchTask<Img2ImgJob>>,
    options: RunBatchesOptions,
  ): Promise<void> {
    for (const batch of batches) {
      const job = batch.job;
      const sd = await this.model(job);
      const size = defaultSize(sd.model);
      const cfg = job.cfg ?? defaultCfg(sd.model.family);
      const seeds = batch.images.map((i) => i.seed);
      const common = {
        steps: job.steps,
        cfg,
        sampler: job.sampler,
        schedule: job.schedule as ScheduleFlag | undefined,
        seeds,
        rng: job.rng,
        guidanceRescale: job.guidanceRescale,
        vaeTiling: job.vaeTiling,
        conditioner: conditionerFor(job),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      };
      let result: DiffusionResult;
      let width: number;
      let height: number;
      if (job.command === "img2img") {
        if (options.image === undefined) throw new UsageError("img2img needs an input image");
        [, , height, width] = options.image.dims;
        const img2imgJob = job as Img2ImgJob;
        result = options.mask === undefined
          ? await img2img(sd, { ...common, image: options.image, strength: img2imgJob.strength })
          : await inpaint(sd, {
            ...common,
            image: options.image,
            mask: options.mask,
            strength: img2imgJob.strength,
            ...(img2imgJob.maskBlur !== undefined ? { maskBlur: img2imgJob.maskBlur } : {}),
          });
      } else {
        width = job.width ?? size;
        height = job.height ?? size;
        const generateJob = job as GenerateJob;
        if (generateJob.refiner === undefined) {
          result = await txt2img(sd, { ...common, width, height });
        } else {
          // SDXL base + refiner: the base stops at the switch and hands its latents over.
          const base = await txt2img(sd, {
            ...common,
            width,
            height,
            denoisingEnd: generateJob.refinerSwitch,
          });
          const refiner = await this.open(generateJob.refiner, job.vae);
          result = await refine(refiner, {
            ...common,
            cfg: job.cfg ?? defaultCfg(refiner.model.family),
            latents: base.latents,
            denoisingStart: generateJob.refinerSwitch,
            ...(base.generator ? { generator: base.generator } : {}),
          });
        }
      }
      for (let k = 0; k < batch.images.length; k++) {
        const task = batch.images[k]!;
        const image = result.images[k]!;
        // Record what was used (guidance, size), in the schema's key order, so the stored Job
        // serialises the same way when it is replayed.
        const taskJob: GenerateJob | Img2ImgJob = job.command === "img2img"
          ? Img2ImgJob.parse({ ...task.job, cfg })
          : GenerateJob.parse({ ...task.job, cfg, width, height });
        const infotext = infotextFor(
          {
            ...taskJob,
            strength: job.command === "img2img" ? (job as Img2ImgJob).strength : undefined,
          } as Parameters<typeof infotextFor>[0],
          {
            width,
            height,
            cfg,
            schedulerClass: String(sd.model.schedulerConfig._class_name ?? ""),
            schedulerConfig: sd.model.schedulerConfig,
            modelName: basename(sd.model.dir),
            version: `denoise ${this.env.version}`,
          },
        );
        const bytes = await encodeWithMetadata(image, options.format, {
          infotext,
          job: taskJob,
        }, options.quality !== undefined ? { quality: options.quality } : {});
        await options.onImage({
          name: task.name,
          seed: task.seed,
          job: taskJob,
          bytes,
          width,
          height,
        });
      }
    }
  }

  /** Frees every model. */
  async release(): Promise<void> {
    for (const sd of this.#models.values()) await (await sd).release();
    this.#models.clear();
  }
}
