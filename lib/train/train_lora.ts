/**
 * `denoise lora-train` as a library call: a dataset folder in, a kohya-format LoRA out. The
 * loop follows Diffusers' train_text_to_image_lora.py (and the book's chapter 21):
 *
 * 1. Scan the dataset (dataset.ts), decode and preprocess every image once (resize the shorter
 *    side, centre or random crop, or kohya aspect buckets), encode it with the VAE (one seeded
 *    posterior sample times the scaling factor, and its mirror image when flips are on) and keep
 *    the latents; frozen text encoders keep each caption's states.
 * 2. Per step: the batch of the shuffled epoch order, noise `randn` (+ `noise_offset * randn` of
 *    `[B, C, 1, 1]`), uniform integer timesteps, DDPM noising from the model's scheduler config,
 *    the epsilon or v-prediction target, MSE (min-SNR weighted with `snrGamma`), forward and
 *    backward in one ORT session (lora_trainer.ts).
 * 3. Gradient clipping at norm 1 over every trained tensor, the learning-rate schedule, AdamW.
 * 4. Every `saveEvery` steps an atomic checkpoint (checkpoint.ts); at the end the LoRA in kohya
 *    format with `ss_*` metadata (kohya_file.ts).
 *
 * Every random draw of step k derives from the seed and k (seeds.ts), so a run resumed from a
 * checkpoint continues exactly as if it had not stopped.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, extname } from "node:path";
import { InputError } from "../errors.ts";
import type { ExecutionProvider } from "../onnx/session.ts";
import type { PredictionType } from "../schedulers/config.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { AdamW, type AdamWParameterState } from "./adamw.ts";
import { bucketResolutions, fitToBucket, selectBucket } from "./buckets.ts";
import { type Checkpoint, type CheckpointState, saveCheckpoint } from "./checkpoint.ts";
import { clipGradNorm } from "./clip_grad_norm.ts";
import { datasetFingerprint, type DatasetItem, scanDataset, tagFrequency } from "./dataset.ts";
import {
  type CropMode,
  decodeTrainingImage,
  flipHorizontal,
  pixelsToTensor,
  squareCrop,
  type TrainingImage,
} from "./image_transform.ts";
import { type KohyaHashes, pythonFloat, writeKohyaLora } from "./kohya_file.ts";
import { LatentEncoder } from "./latent_encoder.ts";
import {
  initLora,
  type LoraModuleSpec,
  savedModuleNames,
  textEncoderLoraModules,
  unetLoraModules,
} from "./lora_network.ts";
import { LoraTrainer } from "./lora_trainer.ts";
import { learningRateAt, type LrSchedulerName } from "./lr_schedule.ts";
import { deriveSeed, IntegerStream } from "./seeds.ts";
import { minSnrWeights } from "./snr.ts";

/** Options of {@linkcode trainLora}. */
export interface TrainLoraOptions {
  /** Diffusers folder of the base model. */
  model: string;
  /** The model's name for the metadata (`ss_sd_model_name`). */
  modelName: string;
  /** Dataset folder (kohya layout or imagefolder metadata.jsonl). */
  dataset: string;
  /** The .safetensors file to write. */
  output: string;
  rank: number;
  alpha: number;
  /** Learning rate (UNet). */
  lr: number;
  /** Learning rate of the text encoders (default `lr`). */
  textEncoderLr?: number;
  /** Optimiser steps in all; else `epochs` (default 100 epochs, Diffusers' default). */
  steps?: number;
  epochs?: number;
  batchSize: number;
  /** Square side (or bucket area side) in pixels. */
  resolution: number;
  seed: number | bigint;
  /** Train LoRA on the text encoder(s) too. */
  textEncoder: boolean;
  /** Diffusers' `noise_offset` (0: off). */
  noiseOffset: number;
  /** Min-SNR gamma (undefined: unweighted MSE). */
  snrGamma?: number;
  lrScheduler: LrSchedulerName;
  lrWarmupSteps: number;
  /** Save a checkpoint every this many steps (undefined: never). */
  saveEvery?: number;
  /** Where checkpoints go. */
  checkpointDir?: string;
  /** Checkpoints kept (default 2). */
  keepCheckpoints?: number;
  /** A checkpoint to continue from. */
  resume?: Checkpoint;
  /** Recompute activations in the backward pass (less memory, slower). */
  checkpointing: boolean;
  /** kohya aspect-ratio buckets instead of square crops. */
  buckets: boolean;
  crop: CropMode;
  /** Random horizontal flips. */
  flip: boolean;
  /** Override the scheduler config's prediction type. */
  predictionType?: PredictionType;
  /** Gradient clipping norm (default 1, Diffusers' max_grad_norm). */
  maxGradNorm?: number;
  /** Cache root for built graphs (default: temporary). */
  cacheDir?: string;
  threads?: number;
  executionProvider?: ExecutionProvider;
  /** The Job recorded in checkpoints. */
  job: Record<string, unknown>;
}

/** One progress report (after each step). */
export interface TrainProgress {
  /** Steps done. */
  step: number;
  total: number;
  /** Epoch of the step (1-based). */
  epoch: number;
  loss: number;
  /** Mean loss of the last 10 steps. */
  averageLoss: number;
  /** Learning rate the step used. */
  lr: number;
  /** Steps per second since this process started training. */
  itPerSecond: number;
  /** Seconds left at that rate. */
  etaSeconds: number;
}

/** Callbacks of {@linkcode trainLora}. */
export interface TrainLoraHooks {
  onProgress?: (p: TrainProgress) => void;
  onWarning?: (message: string) => void;
  onInfo?: (message: string) => void;
  /** A checkpoint was written. */
  onCheckpoint?: (path: string, step: number) => void;
}

/** What a finished run produced. */
export interface TrainLoraResult {
  output: string;
  /** Steps done in all (including those before a resume). */
  steps: number;
  epochs: number;
  /** Loss of the last step. */
  loss: number;
  hashes: KohyaHashes;
  /** Modules trained. */
  modules: number;
  /** Images used (after skipping undecodable ones) and with repeats. */
  images: number;
  trainImages: number;
  /** Seconds spent in this process's steps. */
  seconds: number;
}

/** A training image with its cached latents. */
interface CachedImage {
  item: DatasetItem;
  /** `[1, 4, h, w]` latents; `flipped` for the mirror image. */
  latents: Float32Array;
  flipped?: Float32Array;
  /** Latent height and width. */
  size: [number, number];
  /** SDXL time ids of the image. */
  timeIds: number[];
}

/**
 * A fingerprint of a weight file that tells models apart cheaply: its size, header and the
 * first MiB of tensor data.
 *
 * @example
 * ```ts ignore
 * const id = await weightsFingerprint("sd15/unet/diffusion_pytorch_model.safetensors");
 * ```
 */
export async function weightsFingerprint(path: string): Promise<string> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const head = new Uint8Array(8);
    await file.read(head);
    const headerLength = Number(new DataView(head.buffer).getBigUint64(0, true));
    const chunk = new Uint8Array(Math.min(size, 8 + headerLength + (1 << 20)));
    await file.seek(0, Deno.SeekMode.Start);
    let at = 0;
    while (at < chunk.length) {
      const n = await file.read(chunk.subarray(at));
      if (n === null) break;
      at += n;
    }
    return createHash("sha256").update(String(size)).update(chunk.subarray(0, at)).digest("hex")
      .slice(0, 16);
  } finally {
    file.close();
  }
}

function baseModelVersion(family: string, vPrediction: boolean): string {
  // kohya model_util / sdxl_model_util version strings.
  if (family === "sdxl") return "sdxl_base_v1-0";
  if (family === "sd2") return vPrediction ? "sd_v2_768_v" : "sd_v2_512";
  return "sd_v1";
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
}

/**
 * Trains a LoRA; see the module doc. Throws an {@linkcode InputError} for an unusable dataset or
 * a checkpoint of another run.
 *
 * @example
 * ```ts ignore
 * const result = await trainLora({ model: "sd15", modelName: "sd15", dataset: "data/",
 *   output: "out.safetensors", rank: 4, alpha: 4, lr: 1e-4, steps: 100, batchSize: 1,
 *   resolution: 512, seed: 0, textEncoder: false, noiseOffset: 0, lrScheduler: "constant",
 *   lrWarmupSteps: 0, checkpointing: false, buckets: false, crop: "center", flip: true, job: {} },
 *   { onProgress: (p) => console.log(p.step, p.loss) });
 * ```
 */
export async function trainLora(
  options: TrainLoraOptions,
  hooks: TrainLoraHooks = {},
): Promise<TrainLoraResult> {
  const info = hooks.onInfo ?? (() => {});
  const warn = hooks.onWarning ?? (() => {});
  const seed = BigInt(options.seed);

  // 1. Dataset and model.
  const dataset = await scanDataset(options.dataset);
  for (const w of dataset.warnings) warn(w);
  const trainer = await LoraTrainer.open(options.model, {
    ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.executionProvider !== undefined
      ? { executionProvider: options.executionProvider }
      : {}),
    checkpointing: options.checkpointing,
  });
  try {
    const model = trainer.model;
    const sdxl = model.family === "sdxl";
    // SD 2.x: 1024-wide cross-attention, or (tiny test models) the OpenCLIP text encoder's GELU.
    const v2 = model.family === "sd2" ||
      (model.family === "sd1" && model.textEncoder?.config.hiddenAct !== "quick_gelu");
    const predictionType = options.predictionType ?? trainer.schedule.predictionType;
    if (predictionType !== "epsilon" && predictionType !== "v_prediction") {
      throw new InputError(
        `Cannot train ${options.modelName}: its scheduler predicts "${predictionType}"; ` +
          `LoRA training supports epsilon and v_prediction`,
        { hint: "pass --prediction-type epsilon or v_prediction" },
      );
    }

    // 2. The network: modules, fingerprint, start (new or resumed).
    const modules: LoraModuleSpec[] = await unetLoraModules(model.unet.weights);
    if (options.textEncoder) {
      for (const t of trainer.textEncoders) {
        const prefix = !sdxl ? "lora_te_" : t.target === "text_encoder" ? "lora_te1_" : "lora_te2_";
        modules.push(
          ...await textEncoderLoraModules(
            t.files.weights,
            t.target as "text_encoder" | "text_encoder_2",
            prefix,
          ),
        );
      }
    }
    const shapes: Record<string, number[]> = {};
    for (const m of modules) {
      shapes[`${m.module}.lora_down.weight`] = [options.rank, m.inFeatures];
      shapes[`${m.module}.lora_up.weight`] = [m.outFeatures, options.rank];
    }
    const fingerprint: Record<string, unknown> = {
      model: await weightsFingerprint(model.unet.weights),
      modelName: options.modelName,
      modelPath: options.model,
      dataset: await datasetFingerprint(dataset),
      rank: options.rank,
      alpha: options.alpha,
      textEncoder: options.textEncoder,
      resolution: options.resolution,
      buckets: options.buckets,
      crop: options.crop,
      flip: options.flip,
      batchSize: options.batchSize,
      seed: String(seed),
      lr: options.lr,
      textEncoderLr: options.textEncoderLr ?? null,
      lrScheduler: options.lrScheduler,
      lrWarmupSteps: options.lrWarmupSteps,
      noiseOffset: options.noiseOffset,
      snrGamma: options.snrGamma ?? null,
      predictionType,
    };
    let lora: Record<string, Float32Array>;
    let startStep = 0;
    let startedAt = pythonFloat(Date.now() / 1000);
    let sessionId = String(Number(deriveSeed(seed, "session", 0) & 0x7fffffffn));
    const unetOptimizer = new AdamW({ lr: options.lr });
    const textOptimizer = new AdamW({ lr: options.textEncoderLr ?? options.lr });
    if (options.resume !== undefined) {
      const r = options.resume;
      checkResume(r, fingerprint, shapes);
      lora = r.lora;
      startStep = r.state.step;
      startedAt = r.state.startedAt;
      sessionId = r.state.sessionId;
      const unetState: Record<string, AdamWParameterState> = {};
      const textState: Record<string, AdamWParameterState> = {};
      for (const [name, s] of Object.entries(r.optimizer)) {
        (name.startsWith("lora_unet_") ? unetState : textState)[name] = s;
      }
      unetOptimizer.loadStateDict(unetState);
      textOptimizer.loadStateDict(textState);
      info(`resuming from ${r.path} at step ${startStep}`);
    } else {
      lora = initLora(modules, options.rank, deriveSeed(seed, "init", 0));
    }

    // 3. Images -> latents, once.
    const encoder = await LatentEncoder.open(model.vae, {
      cacheDir: options.cacheDir ?? await Deno.makeTempDir({ prefix: "denoise-train-vae-" }),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      ...(options.executionProvider !== undefined
        ? { executionProvider: options.executionProvider }
        : {}),
      cacheOptimized: options.cacheDir !== undefined,
    });
    const images: CachedImage[] = [];
    const buckets = options.buckets ? bucketResolutions(options.resolution) : undefined;
    try {
      for (let index = 0; index < dataset.items.length; index++) {
        const item = dataset.items[index]!;
        let decoded;
        try {
          decoded = await decodeTrainingImage(await Deno.readFile(item.image), item.image);
        } catch (error) {
          if (!(error instanceof InputError)) throw error;
          warn(`${item.image}: cannot be decoded (${error.message.split(": ").pop()}); skipped`);
          continue;
        }
        let prepared: TrainingImage;
        if (buckets !== undefined) {
          prepared = fitToBucket(decoded, selectBucket(buckets, decoded.width, decoded.height));
        } else {
          const crops = new IntegerStream(deriveSeed(seed, "crop", index));
          prepared = squareCrop(decoded, options.resolution, options.crop, (n) => crops.below(n));
        }
        const { width, height } = prepared.pixels;
        const latents = await encoder.encode(
          pixelsToTensor(prepared.pixels),
          width,
          height,
          deriveSeed(seed, "latent", 2 * index),
        );
        const flipped = options.flip
          ? await encoder.encode(
            pixelsToTensor(flipHorizontal(prepared.pixels)),
            width,
            height,
            deriveSeed(seed, "latent", 2 * index + 1),
          )
          : undefined;
        images.push({
          item,
          latents,
          ...(flipped !== undefined ? { flipped } : {}),
          size: [height / 8, width / 8],
          timeIds: [...prepared.originalSize, ...prepared.cropTopLeft, height, width],
        });
      }
    } finally {
      await encoder.release();
    }
    if (images.length === 0) {
      throw new InputError(`The dataset "${options.dataset}" has no image that can be decoded`, {
        hint: "add PNG, JPEG or WebP images",
      });
    }
    info(
      `cached the latents of ${images.length} image(s)${
        options.flip ? " (and their mirror images)" : ""
      }`,
    );

    // 4. The plan: instances (images x repeats), batches per epoch, total steps.
    const instances: number[] = [];
    images.forEach((im, i) => {
      for (let r = 0; r < im.item.repeats; r++) instances.push(i);
    });
    const groups = new Map<string, number[]>();
    for (const i of instances) {
      const key = images[i]!.size.join("x");
      const list = groups.get(key);
      if (list === undefined) groups.set(key, [i]);
      else list.push(i);
    }
    const groupKeys = [...groups.keys()].sort();
    const batchesPerEpoch = groupKeys.reduce(
      (s, k) => s + Math.ceil(groups.get(k)!.length / options.batchSize),
      0,
    );
    const total = options.steps ?? (options.epochs ?? 100) * batchesPerEpoch;
    const epochs = Math.ceil(total / batchesPerEpoch);
    if (startStep > total) {
      throw new InputError(
        `Cannot resume: the checkpoint is at step ${startStep}, past the ${total} steps asked for`,
        { hint: `pass --steps ${startStep} or more` },
      );
    }
    const epochBatches = new Map<number, number[][]>();
    const batchesOf = (epoch: number): number[][] => {
      let batches = epochBatches.get(epoch);
      if (batches !== undefined) return batches;
      const order = new IntegerStream(deriveSeed(seed, "order", epoch));
      batches = [];
      for (const key of groupKeys) {
        const members = groups.get(key)!;
        const perm = order.permutation(members.length).map((p) => members[p]!);
        for (let i = 0; i < perm.length; i += options.batchSize) {
          batches.push(perm.slice(i, i + options.batchSize));
        }
      }
      // Buckets: the batches of all sizes are shuffled together (kohya); one size: already random.
      if (groupKeys.length > 1) {
        batches = order.permutation(batches.length).map((p) => batches![p]!);
      }
      epochBatches.clear();
      epochBatches.set(epoch, batches);
      return batches;
    };
    info(
      `${images.length} image(s), ${instances.length} with repeats, ` +
        `${batchesPerEpoch} step(s) per epoch, ${total} step(s) (${epochs} epoch(s))`,
    );

    // 5. The loop.
    const schedule = {
      name: options.lrScheduler,
      lr: 1,
      warmupSteps: options.lrWarmupSteps,
      totalSteps: total,
    };
    const started = performance.now();
    const recent: number[] = [];
    let loss = NaN;
    const saveCheckpointAt = async (step: number) => {
      const state: CheckpointState = {
        format: "denoise-lora-train-checkpoint",
        version: 1,
        step,
        fingerprint,
        job: options.job,
        startedAt,
        sessionId,
      };
      const path = await saveCheckpoint(options.checkpointDir!, {
        state,
        lora,
        shapes,
        optimizer: { ...unetOptimizer.stateDict(), ...textOptimizer.stateDict() },
      }, options.keepCheckpoints ?? 2);
      hooks.onCheckpoint?.(path, step);
    };
    const T = trainer.schedule.alphasCumprod.length;
    for (let k = startStep; k < total; k++) {
      const epoch = Math.floor(k / batchesPerEpoch);
      const batch = batchesOf(epoch)[k % batchesPerEpoch]!;
      const b = batch.length;
      const [h, w] = images[batch[0]!]!.size;
      const per = 4 * h * w;
      // Flips, timesteps and noise of step k.
      const flips = new IntegerStream(deriveSeed(seed, "flip", k));
      const latents = new Float32Array(b * per);
      batch.forEach((i, j) => {
        const im = images[i]!;
        const flip = im.flipped !== undefined && flips.coin();
        latents.set(flip ? im.flipped! : im.latents, j * per);
      });
      const gen = new TorchCpuGenerator(deriveSeed(seed, "noise", k));
      const noise = gen.randn([b, 4, h, w]);
      if (options.noiseOffset !== 0) {
        // noise += noise_offset * randn((B, C, 1, 1))
        const offset = gen.randn([b, 4, 1, 1]);
        const f = Math.fround(options.noiseOffset);
        for (let j = 0; j < b * 4; j++) {
          const add = Math.fround(f * offset[j]!);
          for (let p = 0; p < h * w; p++) {
            noise[j * h * w + p] = Math.fround(noise[j * h * w + p]! + add);
          }
        }
      }
      const ts = new IntegerStream(deriveSeed(seed, "timesteps", k));
      const timesteps = batch.map(() => ts.below(T));
      const lossWeights = options.snrGamma === undefined ? undefined : minSnrWeights(
        trainer.schedule.alphasCumprod,
        timesteps,
        options.snrGamma,
        predictionType,
      );
      const result = await trainer.step({
        lora,
        alpha: options.alpha,
        shape: [b, 4, h, w],
        latents,
        noise,
        timesteps,
        prompt: batch.map((i) => images[i]!.item.caption),
        predictionType,
        ...(lossWeights !== undefined ? { lossWeights } : {}),
        ...(sdxl ? { timeIds: batch.map((i) => images[i]!.timeIds) } : {}),
      });
      loss = result.loss;
      if (!Number.isFinite(loss)) {
        throw new RangeError(
          `Training diverged at step ${k + 1} (loss ${loss}); lower --lr or check the dataset`,
        );
      }
      clipGradNorm(result.grads, options.maxGradNorm ?? 1);
      const factor = learningRateAt(schedule, k);
      unetOptimizer.lr = options.lr * factor;
      textOptimizer.lr = (options.textEncoderLr ?? options.lr) * factor;
      const unetGrads: Record<string, Float32Array> = {};
      const textGrads: Record<string, Float32Array> = {};
      for (const [name, g] of Object.entries(result.grads)) {
        (name.startsWith("lora_unet_") ? unetGrads : textGrads)[name] = g;
      }
      unetOptimizer.step(lora, unetGrads);
      if (Object.keys(textGrads).length > 0) textOptimizer.step(lora, textGrads);
      recent.push(loss);
      if (recent.length > 10) recent.shift();
      const done = k + 1;
      const rate = (done - startStep) / ((performance.now() - started) / 1000);
      hooks.onProgress?.({
        step: done,
        total,
        epoch: epoch + 1,
        loss,
        averageLoss: mean(recent),
        lr: unetOptimizer.lr,
        itPerSecond: rate,
        etaSeconds: rate > 0 ? (total - done) / rate : 0,
      });
      if (options.saveEvery !== undefined && done % options.saveEvery === 0 && done < total) {
        await saveCheckpointAt(done);
      }
    }
    if (options.saveEvery !== undefined) await saveCheckpointAt(total);

    // 6. The kohya file.
    const unetParameters = sdxl ? await parameterNames(model.unet.weights) : [];
    const rename = savedModuleNames(modules, {
      sdxl,
      unetConfig: model.unet.config,
      unetParameters,
    });
    const trainImages = instances.length;
    const metadata: Record<string, string> = {
      ss_session_id: sessionId,
      ss_training_started_at: startedAt,
      ss_output_name: basename(options.output, extname(options.output)),
      ss_learning_rate: pythonFloat(options.lr),
      ss_text_encoder_lr: pythonFloat(options.textEncoderLr ?? options.lr),
      ss_unet_lr: pythonFloat(options.lr),
      ss_num_train_images: String(trainImages),
      ss_num_reg_images: "0",
      ss_num_batches_per_epoch: String(batchesPerEpoch),
      ss_num_epochs: String(epochs),
      ss_epoch: String(epochs),
      ss_steps: String(total),
      ss_max_train_steps: String(total),
      ss_batch_size_per_device: String(options.batchSize),
      ss_total_batch_size: String(options.batchSize),
      ss_gradient_checkpointing: options.checkpointing ? "True" : "False",
      ss_gradient_accumulation_steps: "1",
      ss_lr_warmup_steps: String(options.lrWarmupSteps),
      ss_lr_scheduler: options.lrScheduler,
      ss_network_module: "networks.lora",
      ss_network_dim: String(options.rank),
      ss_network_alpha: pythonFloat(options.alpha),
      ss_network_train_unet_only: options.textEncoder ? "False" : "True",
      ss_mixed_precision: "no",
      ss_full_fp16: "False",
      ss_v2: v2 ? "True" : "False",
      ss_base_model_version: baseModelVersion(
        v2 ? "sd2" : model.family,
        predictionType === "v_prediction",
      ),
      ss_sd_model_name: options.modelName,
      ss_resolution: `(${options.resolution}, ${options.resolution})`,
      ss_clip_skip: "None",
      ss_max_token_length: "None",
      ss_cache_latents: "True",
      ss_seed: String(seed),
      ss_noise_offset: options.noiseOffset === 0 ? "None" : pythonFloat(options.noiseOffset),
      ss_min_snr_gamma: options.snrGamma === undefined ? "None" : pythonFloat(options.snrGamma),
      ss_max_grad_norm: pythonFloat(options.maxGradNorm ?? 1),
      ss_optimizer: "torch.optim.adamw.AdamW(weight_decay=0.01,betas=(0.9, 0.999),eps=1e-08)",
      ss_flip_aug: options.flip ? "True" : "False",
      ss_random_crop: options.crop === "random" ? "True" : "False",
      ss_enable_bucket: options.buckets ? "True" : "False",
      ss_dataset_dirs: JSON.stringify(
        Object.fromEntries(
          dataset.subsets.map((s) => [s.name, { n_repeats: s.repeats, img_count: s.images }]),
        ),
      ),
      ss_tag_frequency: JSON.stringify(tagFrequency(images.map((im) => im.item))),
      ss_training_finished_at: pythonFloat(Date.now() / 1000),
    };
    if (options.buckets) {
      const counts: Record<string, { resolution: number[]; count: number }> = {};
      groupKeys.forEach((key, i) => {
        const [lh, lw] = key.split("x").map(Number);
        counts[String(i)] = { resolution: [lw! * 8, lh! * 8], count: groups.get(key)!.length };
      });
      metadata.ss_bucket_info = JSON.stringify({ buckets: counts });
      metadata.ss_min_bucket_reso = "256";
      metadata.ss_max_bucket_reso = "1024";
    }
    const hashes = await writeKohyaLora(
      options.output,
      { weights: lora, shapes, alpha: options.alpha, rename },
      metadata,
    );
    return {
      output: options.output,
      steps: total,
      epochs,
      loss,
      hashes,
      modules: modules.length,
      images: images.length,
      trainImages,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await trainer.release();
  }
}

async function parameterNames(weights: string): Promise<string[]> {
  using file = await SafetensorsFile.open(weights);
  return [...file.tensors.keys()];
}

/** Throws a one-line error when a checkpoint belongs to another run. */
function checkResume(
  checkpoint: Checkpoint,
  fingerprint: Record<string, unknown>,
  shapes: Record<string, number[]>,
): void {
  const saved = checkpoint.state.fingerprint;
  const where = `Cannot resume from "${checkpoint.path}"`;
  if (saved.model !== fingerprint.model) {
    const [a, b] = saved.modelName === fingerprint.modelName
      ? [saved.modelPath, fingerprint.modelPath]
      : [saved.modelName, fingerprint.modelName];
    throw new InputError(
      `${where}: it was made for the model "${a}", not "${b}"`,
      { hint: "resume with the --model the checkpoint was trained on, or start a new run" },
    );
  }
  if (saved.dataset !== fingerprint.dataset) {
    throw new InputError(`${where}: the dataset changed since it was made`, {
      hint: "resume on the same images and captions, or start a new run",
    });
  }
  for (const [key, value] of Object.entries(fingerprint)) {
    if (key === "modelName" || key === "modelPath") continue;
    if (JSON.stringify(saved[key] ?? null) !== JSON.stringify(value ?? null)) {
      throw new InputError(
        `${where}: it was trained with ${key} ${JSON.stringify(saved[key] ?? null)}, ` +
          `not ${JSON.stringify(value ?? null)}`,
        { hint: "resume with the options of the run, or start a new run" },
      );
    }
  }
  const names = Object.keys(shapes).sort();
  const got = Object.keys(checkpoint.shapes).sort();
  if (
    names.join() !== got.join() ||
    names.some((n) => shapes[n]!.join() !== checkpoint.shapes[n]!.join())
  ) {
    throw new InputError(`${where}: its LoRA modules do not fit this model`, {
      hint: "resume with the model and options of the run, or start a new run",
    });
  }
}
