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
import { convertedModelDir } from "../convert/cached_model.ts";
import {
  type AdapterModel,
  embeddingSpecs,
  type LoraLedger,
  loraSpecs,
  prepareAdapters,
  type PreparedAdapters,
} from "../adapters/mod.ts";
import { ClipTokenizer } from "../tokenizer/mod.ts";
import type { BatchTask } from "./batch.ts";
import { conditionerFor } from "./conditioning.ts";
import { type DiffusionResult, img2img, refine, txt2img } from "./generate.ts";
import { hiresFix } from "./hires.ts";
import { inpaint } from "./inpaint.ts";
import { inpaintOnlyMasked } from "./inpaint_area.ts";
import { encodeWithMetadata, infotextFor } from "./metadata.ts";
import { defaultSize, type DiffusersModel, openDiffusersModel } from "../model_io/diffusers_folder.ts";
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
  /** CLIP tokenizer folder for single-file checkpoints (`DENOISE_TOKENIZER`). */
  tokenizerDir?: string | undefined;
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
      // Converted once into <cacheDir>/converted/<file key>/ and reused (lib/convert).
      return await convertedModelDir(spec, {
        cacheDir: env.cacheDir,
        ...(env.tokenizerDir ? { tokenizerDir: env.tokenizerDir } : {}),
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

/**
 * The model name A1111's "Model" field shows: an alias as given, a single file's stem, or the
 * folder's name (never the cache folder a single file was converted into).
 */
export function modelName(spec: string | undefined, dir: string): string {
  if (spec === undefined || spec === "") return basename(dir);
  const base = basename(spec.replace(/[\\/]+$/, ""));
  return base.replace(/\.(safetensors|ckpt|pt|pth|bin)$/i, "") || basename(dir);
}

/**
 * Default guidance scale of a model (Diffusers' pipeline defaults): 8.5 for an LCM with a
 * guidance embedding (LatentConsistencyModelPipeline), 5 for SDXL, else 7.5.
 */
export function defaultCfg(model: Pick<DiffusersModel, "family" | "unet">): number {
  if (model.unet.config.timeCondProjDim !== null) return 8.5;
  return model.family === "sdxl" || model.family === "sdxl-refiner" ? 5 : 7.5;
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
  /** Called once per distinct set of LoRAs with what each file applied (for --debug). */
  onAdapters?: (ledgers: readonly LoraLedger[]) => void;
}

/** The facts about a model that LoRAs and embeddings are matched against. */
async function adapterModel(
  path: string,
  job: GenerateJob | Img2ImgJob,
): Promise<AdapterModel> {
  const m = await openDiffusersModel(path);
  if (m.onnx !== undefined && (loraSpecs(job).length > 0 || embeddingSpecs(job).length > 0)) {
    throw new UsageError(
      `Cannot apply LoRAs or embeddings to the ONNX export in ${m.dir}: its weights are baked ` +
        `into the graphs; use the Diffusers folder or single file it was exported from`,
    );
  }
  const out: AdapterModel = {
    components: { unet: m.unet.weights },
    tables: {},
    unetConfig: m.unet.config,
  };
  const encoders = [
    ["text_encoder", m.textEncoder, m.tokenizerDir],
    ["text_encoder_2", m.textEncoder2, m.tokenizer2Dir],
  ] as const;
  for (const [kind, files, tokenizerDir] of encoders) {
    if (files === undefined) continue;
    out.components[kind] = files.weights;
    if (tokenizerDir === undefined) continue;
    const tokenizer = await ClipTokenizer.fromDirectory(tokenizerDir);
    out.tables[kind] = { firstId: tokenizer.vocabSize, width: files.config.hiddenSize };
  }
  return out;
}

/** An open run: models are loaded once and reused by every batch. */
export class DiffusionRunner {
  readonly env: RunEnvironment;
  #models = new Map<string, Promise<StableDiffusion>>();
  #adapters = new Map<string, Promise<PreparedAdapters>>();
  #onAdapters: ((ledgers: readonly LoraLedger[]) => void) | undefined;

  constructor(env: RunEnvironment) {
    this.env = env;
  }

  /** Opens (once) the model a Job names, with the LoRAs and embeddings it asks for. */
  async model(job: GenerateJob | Img2ImgJob): Promise<StableDiffusion> {
    return await this.open(job.model, job.vae, await this.adapters(job), job.precision);
  }

  /** Loads and matches (once per model and request) the LoRAs and embeddings of a Job. */
  async adapters(job: GenerateJob | Img2ImgJob): Promise<PreparedAdapters> {
    const path = await resolveModel(job.model, this.env);
    const request = [job.lora, job.loraDir, job.embedding, job.embeddingsDir];
    const key = JSON.stringify([path, request, job.prompt, job.negative, job.promptSyntax]);
    let prepared = this.#adapters.get(key);
    if (prepared === undefined) {
      prepared = adapterModel(path, job).then((model) => prepareAdapters(job, model));
      this.#adapters.set(key, prepared);
      prepared.catch(() => this.#adapters.delete(key));
    }
    return await prepared;
  }

  /** Opens (once) a model by `--model` spec, optionally with another VAE, adapters, precision. */
  async open(
    spec: string | undefined,
    vae?: string,
    adapters?: PreparedAdapters,
    precision?: "fp32" | "fp16",
  ): Promise<StableDiffusion> {
    const path = await resolveModel(spec, this.env);
    // No precision in the Job: fp16 graphs on CUDA, fp32 on the CPU.
    const fp16 = (precision ?? (this.env.device === "cuda" ? "fp16" : "fp32")) === "fp16";
    const base = `${path}\0${vae ?? ""}\0${fp16 ? "fp16" : "fp32"}\0`;
    const key = base + (adapters?.key ?? "");
    let sd = this.#models.get(key);
    if (sd === undefined) {
      // Another set of adapters on the same model: free the old sessions (graphs stay cached).
      for (const [other, open] of this.#models) {
        if (!other.startsWith(base)) continue;
        this.#models.delete(other);
        await (await open).release();
      }
      sd = StableDiffusion.open(path, {
        cacheDir: this.env.cacheDir,
        threads: this.env.threads,
        executionProvider: this.env.device ?? "cpu",
        lowMemory: this.env.lowMemory ?? false,
        floatType: fp16 ? "float16" : "float32",
        ...(vae !== undefined ? { vaeDir: vae } : {}),
        ...(adapters !== undefined ? { transforms: adapters.transforms } : {}),
      });
      if (adapters !== undefined && adapters.ledgers.length > 0) {
        this.#onAdapters?.(adapters.ledgers);
      }
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
    for (const [index, batch] of batches.entries()) {
      const job = batch.job;
      this.#onAdapters = options.onAdapters;
      const adapters = await this.adapters(job);
      const sd = await this.open(job.model, job.vae, adapters, job.precision);
      const size = defaultSize(sd.model);
      const cfg = job.cfg ?? defaultCfg(sd.model);
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
        conditioner: conditionerFor({ ...job, embeddings: adapters.tokens }),
        // The text encoders are not needed after the last batch's conditioning (a hires pass
        // conditions again, so it keeps them).
        releaseTextEncoders: index === batches.length - 1 &&
          (job as GenerateJob).hiresScale === undefined,
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      };
      let result: DiffusionResult;
      let width: number;
      let height: number;
      if (job.command === "img2img") {
        if (options.image === undefined) throw new UsageError("img2img needs an input image");
        [, , height, width] = options.image.dims;
        const img2imgJob = job as Img2ImgJob;
        const inpaintParams = options.mask === undefined ? undefined : {
          ...common,
          image: options.image,
          mask: options.mask,
          strength: img2imgJob.strength,
          ...(img2imgJob.maskBlur !== undefined ? { maskBlur: img2imgJob.maskBlur } : {}),
        };
        if (inpaintParams === undefined) {
          result = await img2img(sd, {
            ...common,
            image: options.image,
            strength: img2imgJob.strength,
          });
        } else if (img2imgJob.inpaintFullRes) {
          // A1111 "Only masked": the crop is processed at the Job's size (default the image's).
          result = await inpaintOnlyMasked(sd, {
            ...inpaintParams,
            padding: img2imgJob.inpaintFullResPadding,
            width: job.width,
            height: job.height,
          });
        } else {
          result = await inpaint(sd, inpaintParams);
        }
      } else {
        width = job.width ?? size;
        height = job.height ?? size;
        const generateJob = job as GenerateJob;
        if (generateJob.hiresScale !== undefined) {
          if (generateJob.refiner !== undefined) {
            throw new UsageError("--hires-scale and --refiner cannot be combined", {
              hint: "drop one of them",
            });
          }
          // A1111 hires fix: the Job keeps the base size; the images come out scaled.
          result = await hiresFix(sd, {
            ...common,
            width,
            height,
            hiresScale: generateJob.hiresScale,
            hiresSteps: generateJob.hiresSteps,
            hiresStrength: generateJob.hiresStrength,
            hiresUpscaler: generateJob.hiresUpscaler,
          });
        } else if (generateJob.refiner === undefined) {
          result = await txt2img(sd, { ...common, width, height });
        } else {
          // SDXL base + refiner: the base stops at the switch and hands its latents over.
          const base = await txt2img(sd, {
            ...common,
            width,
            height,
            denoisingEnd: generateJob.refinerSwitch,
          });
          const refiner = await this.open(generateJob.refiner, job.vae, undefined, job.precision);
          result = await refine(refiner, {
            ...common,
            cfg: job.cfg ?? defaultCfg(refiner.model),
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
        const precision = job.precision ?? (this.env.device === "cuda" ? "fp16" : "fp32");
        const taskJob: GenerateJob | Img2ImgJob = job.command === "img2img"
          ? Img2ImgJob.parse({ ...task.job, cfg, precision })
          : GenerateJob.parse({ ...task.job, cfg, width, height, precision });
        const infotext = infotextFor(taskJob, {
          width,
          height,
          cfg,
          schedulerClass: String(sd.model.schedulerConfig._class_name ?? ""),
          schedulerConfig: sd.model.schedulerConfig,
          modelName: modelName(job.model, sd.model.dir),
          version: `denoise ${this.env.version}`,
          extra: adapters.infotext,
        });
        const bytes = await encodeWithMetadata(image, options.format, {
          infotext,
          job: taskJob,
        }, options.quality !== undefined ? { quality: options.quality } : {});
        await options.onImage({
          name: task.name,
          seed: task.seed,
          job: taskJob,
          bytes,
          width: image.width,
          height: image.height,
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
