/**
 * Running diffusion Jobs: {@linkcode runJobs} is the one library call an image-making command
 * makes. It plans batches (image k of a Job uses seed + k and has its own Job and file name),
 * keeps one shard of them, skips those already made (resume), opens each model once for the
 * whole run, makes every batch with the task the Job asks for (lib/pipeline/tasks.ts) and hands
 * every finished image, encoded with its metadata, to the caller.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import type { ImageFormat } from "../image/codec.ts";
import type { ProgressCallback } from "../io/progress.ts";
import { infotextFor } from "../job/infotext.ts";
import { ControlnetJob } from "../job/controlnet.ts";
import { GenerateJob, Img2ImgJob, type Precision } from "../job/diffusion.ts";
import { type JobSchema, withFields } from "../job/define.ts";
import { encodeWithMetadata } from "../meta/encode.ts";
import { type DiffusersModel, openDiffusersModel } from "../model_io/diffusers_folder.ts";
import {
  type AdapterJob,
  type AdapterModel,
  embeddingSpecs,
  type LoraLedger,
  loraSpecs,
  prepareAdapters,
  type PreparedAdapters,
} from "../adapters/mod.ts";
import { ClipTokenizer } from "../tokenizer/mod.ts";
import { type BatchTask, planBatches, type Shard, shardBatches } from "./batch.ts";
import { conditionerFor } from "./conditioning.ts";
import type { LoopHook } from "./denoise.ts";
import type { DiffusionParams } from "./generate.ts";
import type { ModelUpscaler, ModelUpscalerOpener } from "./hires.ts";
import {
  DEFAULT_MAX_PIXELS,
  defaultCfg,
  modelName,
  resolveModel,
  type RunEnvironment,
} from "./resolve.ts";
import { StableDiffusion } from "./stable_diffusion.ts";
import {
  DIFFUSION_TASKS,
  type DiffusionJob,
  type DiffusionTask,
  taskFor,
  type TaskInputs,
} from "./tasks.ts";

export type { RunEnvironment } from "./resolve.ts";
export type { DiffusionJob, TaskInputs } from "./tasks.ts";

/** An image made by a run, encoded with its metadata. */
export interface MadeImage {
  /** File name stem from the batch plan. */
  name: string;
  seed: bigint;
  /** The Job that remakes this image alone. */
  job: DiffusionJob;
  bytes: Uint8Array;
  width: number;
  height: number;
}

/**
 * A feature that applies to any task of a run (ControlNet, say): for each batch it may add loop
 * hooks, and infotext fields to record.
 */
export interface RunExtension {
  /** A short name for messages. */
  name: string;
  /** The hooks this extension adds to one batch's loops (none when the Job does not use it). */
  prepare: (request: { sd: StableDiffusion; job: DiffusionJob; inputs: TaskInputs }) => Promise<{
    hooks: LoopHook[];
    infotext?: Record<string, string>;
  }>;
}

/** Options of {@linkcode DiffusionRunner.prepare}. */
export interface PrepareOptions {
  /** The pixels the run starts from (extensions may look at them). */
  inputs?: TaskInputs;
  /** Free the text encoders once the conditioning is built (default false). */
  releaseTextEncoders?: boolean;
  /** Free the UNet before the final VAE decode (default false). */
  releaseUnet?: boolean;
  onProgress?: ProgressCallback;
}

/** What {@linkcode DiffusionRunner.prepare} returns. */
export interface PreparedBatch {
  /** The model, opened once per run, with the Job's LoRAs and embeddings. */
  sd: StableDiffusion;
  /** Parameters every task shares. */
  params: DiffusionParams;
  /** Guidance used: the Job's, else the model family's default. */
  cfg: number;
  precision: Precision;
  /** Infotext fields of the adapters (Lora hashes...) and extensions. */
  infotext: Record<string, string>;
}

/** Options for {@linkcode DiffusionRunner.run}. */
export interface RunBatchesOptions {
  format: ImageFormat;
  quality?: number;
  onProgress?: ProgressCallback;
  /** The pixels img2img-style tasks start from. */
  inputs?: TaskInputs;
  /** Called with each finished image, in order. */
  onImage: (image: MadeImage) => Promise<void>;
  /** Called once per distinct set of LoRAs with what each file applied (for --debug). */
  onAdapters?: (ledgers: readonly LoraLedger[]) => void;
}

/** The schema each kind of diffusion Job is recorded with. */
const JOB_SCHEMAS: Readonly<Record<DiffusionJob["command"], JobSchema>> = {
  generate: GenerateJob,
  img2img: Img2ImgJob,
  controlnet: ControlnetJob,
};

/**
 * What opening a Job's model reads of it: the model, VAE and precision, and the adapter fields
 * (every diffusion Job has them, `animate`'s too).
 */
export type OpenableJob = AdapterJob & {
  model?: string | undefined;
  vae?: string | undefined;
  precision?: Precision | undefined;
};

/** The facts about a model that LoRAs and embeddings are matched against. */
async function adapterModel(m: DiffusersModel, job: AdapterJob): Promise<AdapterModel> {
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

/** Caches a promise by key, forgetting it when it fails (so a retry can succeed). */
function cached<T>(map: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
    value.catch(() => map.delete(key));
  }
  return value;
}

/** Options of a {@linkcode DiffusionRunner}. */
export interface DiffusionRunnerOptions {
  /** The task table (default {@linkcode DIFFUSION_TASKS}). */
  tasks?: readonly DiffusionTask[];
  /** Features applied to every task (ControlNet...). */
  extensions?: readonly RunExtension[];
  /**
   * Opens pixel upscaling models by file or alias (the hires fix's `hiresUpscaler`); each is
   * opened once per run and released with the run. lib/upscale's `upscalerOpener` makes one.
   */
  upscalers?: ModelUpscalerOpener | undefined;
}

/** An open run: each model is resolved, opened and loaded once and reused by every batch. */
export class DiffusionRunner {
  readonly env: RunEnvironment;
  readonly #tasks: readonly DiffusionTask[];
  readonly #extensions: readonly RunExtension[];
  #paths = new Map<string, Promise<string>>();
  #opened = new Map<string, Promise<DiffusersModel>>();
  #models = new Map<string, Promise<StableDiffusion>>();
  #adapters = new Map<string, Promise<PreparedAdapters>>();
  readonly #openUpscaler: ModelUpscalerOpener | undefined;
  #upscalers = new Map<string, Promise<ModelUpscaler>>();
  #onAdapters: ((ledgers: readonly LoraLedger[]) => void) | undefined;

  constructor(env: RunEnvironment, options: DiffusionRunnerOptions = {}) {
    this.env = env;
    this.#tasks = options.tasks ?? DIFFUSION_TASKS;
    this.#extensions = options.extensions ?? [];
    this.#openUpscaler = options.upscalers;
  }

  /** Opens (once per run) the pixel upscaling model a spec names. */
  upscaler(spec: string): Promise<ModelUpscaler> {
    const open = this.#openUpscaler;
    if (open === undefined) {
      throw new UsageError(`This run cannot open the upscaler model "${spec}"`);
    }
    return cached(this.#upscalers, spec, () => open(spec));
  }

  /** The opened (not loaded) model a `--model` spec names; resolved and read once per run. */
  async diffusersModel(spec: string | undefined): Promise<DiffusersModel> {
    const path = await cached(this.#paths, spec ?? "", () => resolveModel(spec, this.env));
    return await cached(this.#opened, path, () => openDiffusersModel(path));
  }

  /** The precision a Job runs at: its own, else fp16 on CUDA and fp32 on the CPU. */
  precision(job: Pick<DiffusionJob, "precision">): Precision {
    if (job.precision === "int8" && this.env.device === "cuda") {
      throw new UsageError("Cannot run --precision int8 on --device cuda: int8 is for the CPU", {
        hint: "use --precision fp16 on cuda, or --device cpu",
      });
    }
    return job.precision ?? (this.env.device === "cuda" ? "fp16" : "fp32");
  }

  /** Opens (once) the model a Job names, with the LoRAs and embeddings it asks for. */
  async model(job: OpenableJob): Promise<StableDiffusion> {
    return await this.open(job.model, job.vae, await this.adapters(job), this.precision(job));
  }

  /** Loads and matches (once per model and request) the LoRAs and embeddings of a Job. */
  async adapters(job: OpenableJob): Promise<PreparedAdapters> {
    const model = await this.diffusersModel(job.model);
    const request = [job.lora, job.loraDir, job.embedding, job.embeddingsDir];
    const key = JSON.stringify([model.dir, request, job.prompt, job.negative, job.promptSyntax]);
    return await cached(
      this.#adapters,
      key,
      async () => prepareAdapters(job, await adapterModel(model, job)),
    );
  }

  /** Opens (once) a model by `--model` spec, optionally with another VAE, adapters, precision. */
  async open(
    spec: string | undefined,
    vae?: string,
    adapters?: PreparedAdapters,
    precision: Precision = this.env.device === "cuda" ? "fp16" : "fp32",
  ): Promise<StableDiffusion> {
    const model = await this.diffusersModel(spec);
    const base = `${model.dir}\0${vae ?? ""}\0${precision}\0`;
    const key = base + (adapters?.key ?? "");
    if (!this.#models.has(key)) {
      // Another set of adapters on the same model: free the old sessions (graphs stay cached).
      for (const [other, open] of this.#models) {
        if (!other.startsWith(base)) continue;
        this.#models.delete(other);
        await (await open).release();
      }
      if (adapters !== undefined && adapters.ledgers.length > 0) {
        this.#onAdapters?.(adapters.ledgers);
      }
    }
    return await cached(this.#models, key, () =>
      StableDiffusion.fromModel(model, {
        cacheDir: this.env.cacheDir,
        threads: this.env.threads,
        executionProvider: this.env.device ?? "cpu",
        lowMemory: this.env.lowMemory ?? false,
        floatType: precision === "fp16" ? "float16" : "float32",
        ...(precision === "int8" ? { quantize: "int8" as const } : {}),
        ...(vae !== undefined ? { vaeDir: vae } : {}),
        ...(adapters !== undefined ? { transforms: adapters.transforms } : {}),
      }));
  }

  /**
   * Everything a task needs for one batch of a Job: the opened model (with the Job's LoRAs and
   * embeddings), the guidance it runs at, and the shared parameters (steps, seeds, conditioning,
   * the hooks of every extension). Commands that make images outside {@linkcode runJobs} (an
   * upscale's img2img pass) prepare their diffusion the same way.
   */
  async prepare(
    job: DiffusionJob,
    seeds: bigint[],
    options: PrepareOptions = {},
  ): Promise<PreparedBatch> {
    const adapters = await this.adapters(job);
    const precision = this.precision(job);
    const sd = await this.open(job.model, job.vae, adapters, precision);
    const cfg = job.cfg ?? defaultCfg(sd.model);
    const hooks: LoopHook[] = [];
    const infotext: Record<string, string> = { ...adapters.infotext };
    for (const extension of this.#extensions) {
      const prepared = await extension.prepare({ sd, job, inputs: options.inputs ?? {} });
      hooks.push(...prepared.hooks);
      Object.assign(infotext, prepared.infotext ?? {});
    }
    const params: DiffusionParams = {
      steps: job.steps,
      cfg,
      sampler: job.sampler,
      schedule: job.schedule,
      seeds,
      rng: job.rng,
      guidanceRescale: job.guidanceRescale,
      vaeTiling: job.vaeTiling,
      conditioner: conditionerFor({ ...job, embeddings: adapters.tokens }),
      maxPixels: this.env.maxPixels ?? DEFAULT_MAX_PIXELS,
      releaseTextEncoders: options.releaseTextEncoders ?? false,
      releaseUnet: options.releaseUnet ?? false,
      ...(hooks.length > 0 ? { hooks } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    };
    return { sd, params, cfg, precision, infotext };
  }

  /** Makes the images of some batches (all from Jobs with fixed seeds). */
  async run(
    batches: ReadonlyArray<BatchTask<DiffusionJob>>,
    options: RunBatchesOptions,
  ): Promise<void> {
    const inputs = options.inputs ?? {};
    this.#onAdapters = options.onAdapters;
    for (const [index, batch] of batches.entries()) {
      const job = batch.job;
      // The text encoders are not needed after the last batch's conditioning, nor the UNet after
      // its loop (a hires pass conditions and denoises again, so it keeps them).
      const last = index === batches.length - 1 &&
        (job.command === "img2img" || job.hiresScale === undefined);
      const { sd, params, cfg, precision, infotext: extraInfotext } = await this.prepare(
        job,
        batch.images.map((i) => i.seed),
        {
          inputs,
          releaseTextEncoders: last,
          releaseUnet: last,
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        },
      );
      const task = taskFor(job, inputs, this.#tasks);
      const made = await task.run({
        sd,
        job,
        params,
        inputs,
        openModel: (spec) => this.open(spec, job.vae, undefined, precision),
        ...(this.#openUpscaler !== undefined
          ? { openUpscaler: (spec: string) => this.upscaler(spec) }
          : {}),
      });
      const schema = JOB_SCHEMAS[job.command];
      for (const [k, image] of batch.images.entries()) {
        const picture = made.result.images[k]!;
        // Record what was used (guidance, sizes that were defaults, precision), in the
        // schema's key order, so the stored Job serialises the same way when it is replayed.
        const taskJob = withFields(schema, image.job, { ...made.recorded, cfg, precision });
        const infotext = infotextFor(taskJob, {
          width: made.width,
          height: made.height,
          cfg,
          schedulerClass: String(sd.model.schedulerConfig._class_name ?? ""),
          schedulerConfig: sd.model.schedulerConfig,
          modelName: modelName(job.model, sd.model.dir),
          version: `denoise ${this.env.version}`,
          extra: extraInfotext,
        });
        const bytes = await encodeWithMetadata(
          picture,
          options.format,
          { infotext, job: taskJob },
          options.quality !== undefined ? { quality: options.quality } : {},
        );
        await options.onImage({
          name: image.name,
          seed: image.seed,
          job: taskJob,
          bytes,
          width: picture.width,
          height: picture.height,
        });
      }
    }
  }

  /** Frees every model. */
  async release(): Promise<void> {
    for (const sd of this.#models.values()) await (await sd).release();
    this.#models.clear();
    for (const upscaler of this.#upscalers.values()) {
      const opened = await upscaler.catch(() => undefined);
      await opened?.release?.();
    }
    this.#upscalers.clear();
  }
}

/** Options for {@linkcode runJobs}. */
export interface RunJobsOptions extends RunBatchesOptions, DiffusionRunnerOptions {
  /** Keep only this shard of the batches (`--shard i/n`). */
  shard?: Shard | undefined;
  /**
   * True when the image with this file name stem is already made: a batch whose every image
   * is made is skipped (resume). Absent: nothing is skipped.
   */
  isMade?: ((name: string) => boolean) | undefined;
  /** Called once the work is planned, before any model is opened. */
  onPlan?: ((plan: Omit<RunSummary, "made">) => void) | undefined;
}

/** What {@linkcode runJobs} did. */
export interface RunSummary {
  /** Images in the shard. */
  planned: number;
  /** Images made now. */
  made: number;
  /** Batches skipped because their images were made before. */
  skippedBatches: number;
}

/**
 * Makes the images of some Jobs (seeds fixed): plans their batches, keeps one shard, skips the
 * batches already made, and runs the rest with one runner, releasing every model at the end.
 * `onImage` gets each image as it is made.
 */
export async function runJobs(
  env: RunEnvironment,
  jobs: readonly DiffusionJob[],
  options: RunJobsOptions,
): Promise<RunSummary> {
  const all = jobs.flatMap((job, i) => planBatches(job, i));
  const batches = shardBatches(all, options.shard);
  const planned = batches.reduce((n, b) => n + b.images.length, 0);
  const isMade = options.isMade;
  const todo = isMade === undefined
    ? batches
    : batches.filter((b) => b.images.some((image) => !isMade(image.name)));
  const skippedBatches = batches.length - todo.length;
  options.onPlan?.({ planned, skippedBatches });
  const runner = new DiffusionRunner(env, options);
  let made = 0;
  try {
    await runner.run(todo, {
      ...options,
      onImage: async (image) => {
        await options.onImage(image);
        made++;
      },
    });
  } finally {
    await runner.release();
  }
  return { planned, made, skippedBatches };
}

/** How many images the batches of some Jobs make (before sharding). */
export function countImages(jobs: readonly DiffusionJob[], shard?: Shard): number {
  const batches = shardBatches(jobs.flatMap((job, i) => planBatches(job, i)), shard);
  return batches.reduce((n, b) => n + b.images.length, 0);
}
