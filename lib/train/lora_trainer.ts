/**
 * One model's LoRA training machinery: the opened Diffusers folder, its DDPM training schedule,
 * the frozen text encoder (text_states.ts) and one training session per (trained module set,
 * alpha, latent shape), built on first use and kept, so repeated steps only run ORT.
 * {@linkcode LoraTrainer.step} is one forward + backward pass; the optimiser (adamw.ts) and
 * the loop (datasets, schedules, checkpoints) sit on top.
 *
 * Graphs are written to `<cacheDir>/train/` (reused by later runs, with ORT's optimised graph)
 * or, without a cache folder, to a temporary folder removed by {@linkcode LoraTrainer.release}
 * or at exit. Their frozen weights are hard links to the model's files, never copies, when both
 * are on one filesystem.
 *
 * @module
 */
import { join } from "node:path";
import { numel } from "../onnx/graph.ts";
import { cacheKey, createCachedSession, fileIdentity } from "../onnx/cache.ts";
import {
  type ExecutionProvider,
  type HostTensor,
  hostTensor,
  type OnnxSession,
} from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import type { AttentionKernel } from "../models/layers.ts";
import { type DiffusersModel, openDiffusersModel } from "../model_io/diffusers_folder.ts";
import type { PredictionType } from "../schedulers/config.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import {
  type LoraParameterPair,
  loraParameterPairs,
  unetLoraModuleName,
} from "./lora_parameters.ts";
import type { LoraInput } from "./lora_hook.ts";
import {
  addNoisePerItem,
  type TrainingSchedule,
  trainingSchedule,
  trainingTarget,
} from "./noising.ts";
import { TextStates } from "./text_states.ts";
import { buildUnetLoraTrainingGraph } from "./unet_lora_graph.ts";

/** Options of {@linkcode LoraTrainer.open}. */
export interface LoraTrainerOptions {
  /** Cache root; training graphs go to `<cacheDir>/train/` (default: a temporary folder). */
  cacheDir?: string;
  /** Attention kernel of the UNet (default `"fused"`). */
  attention?: AttentionKernel;
  /** ORT intra-op threads (default ORT's choice). */
  threads?: number;
  /** Execution provider (default cpu). */
  executionProvider?: ExecutionProvider;
}

/** One training batch. */
export interface LoraTrainingBatch {
  /** The LoRA (kohya names); the modules present are trained. */
  lora: Readonly<Record<string, Float32Array>>;
  /** kohya alpha: each module is scaled by alpha / its rank. */
  alpha: number;
  /** Latent shape `[B, 4, h, w]`. */
  shape: readonly number[];
  /** Latents, already multiplied by the VAE scaling factor. */
  latents: Float32Array;
  /** The noise added. */
  noise: Float32Array;
  /** One training timestep per batch item (integers in [0, num_train_timesteps)). */
  timesteps: readonly number[];
  /** One caption for all items, or one per item. */
  prompt: string | readonly string[];
  /** Default: the model's scheduler config. */
  predictionType?: "epsilon" | "v_prediction";
}

/** What one step computed. */
export interface LoraStepResult {
  /** MSE, mean over all elements. */
  loss: number;
  /** The gradient of the loss for every down/up tensor of the batch's LoRA. */
  grads: Record<string, Float32Array>;
  /** The UNet's prediction `[B, 4, h, w]`. */
  prediction: Float32Array;
}

interface TrainingSession {
  session: OnnxSession;
  parameters: LoraInput[];
}

let tempRoots: string[] = [];
let exitHook = false;

function removeAtExit(dir: string): void {
  tempRoots.push(dir);
  if (exitHook) return;
  exitHook = true;
  globalThis.addEventListener("unload", () => {
    for (const d of tempRoots) {
      try {
        Deno.removeSync(d, { recursive: true });
      } catch {
        // already gone
      }
    }
  });
}

/** LoRA training steps on one Diffusers model; see the module doc. */
export class LoraTrainer {
  readonly model: DiffusersModel;
  readonly schedule: TrainingSchedule;
  readonly options: Readonly<LoraTrainerOptions>;
  #graphDir: string;
  #temporary: boolean;
  #text: Promise<TextStates> | undefined;
  #sessions = new Map<string, Promise<TrainingSession>>();

  private constructor(
    model: DiffusersModel,
    options: LoraTrainerOptions,
    graphDir: string,
    temporary: boolean,
  ) {
    this.model = model;
    this.schedule = trainingSchedule(model.schedulerConfig);
    this.options = options;
    this.#graphDir = graphDir;
    this.#temporary = temporary;
  }

  /**
   * Opens a Diffusers folder for training (SD 1.x / 2.x UNets).
   *
   * @example
   * ```ts ignore
   * const trainer = await LoraTrainer.open("models/sd15", { cacheDir });
   * const { loss, grads } = await trainer.step(batch);
   * ```
   */
  static async open(path: string, options: LoraTrainerOptions = {}): Promise<LoraTrainer> {
    const model = await openDiffusersModel(path);
    if (model.onnx !== undefined) {
      throw new RangeError(
        `Cannot train on ${model.dir}: it is an ONNX export; use the Diffusers folder with .safetensors weights`,
      );
    }
    if (model.unet.config.additionEmbedType !== null || model.textEncoder === undefined) {
      throw new RangeError(
        `Cannot train on ${model.dir}: LoRA training supports SD 1.x and 2.x UNets, not ${model.family}`,
      );
    }
    let graphDir: string;
    let temporary = false;
    if (options.cacheDir !== undefined) graphDir = join(options.cacheDir, "train");
    else {
      graphDir = await Deno.makeTempDir({ prefix: "denoise-train-" });
      temporary = true;
      removeAtExit(graphDir);
    }
    return new LoraTrainer(model, options, graphDir, temporary);
  }

  /** The frozen text encoder (opened on first use). */
  textStates(): Promise<TextStates> {
    const te = this.model.textEncoder!;
    this.#text ??= TextStates.open(te.config, te.weights, this.model.tokenizerDir!, {
      graphDir: this.#graphDir,
      cacheOptimized: !this.#temporary,
      ...this.#sessionOptions(),
    });
    return this.#text;
  }

  #sessionOptions(): { threads?: number; executionProvider?: ExecutionProvider } {
    return {
      ...(this.options.threads === undefined ? {} : { threads: this.options.threads }),
      ...(this.options.executionProvider === undefined
        ? {}
        : { executionProvider: this.options.executionProvider }),
    };
  }

  /** The training session for these modules, alpha and shape (built once). */
  #session(
    pairs: readonly LoraParameterPair[],
    alpha: number,
    shape: readonly [number, number, number, number],
    sequenceLength: number,
  ): Promise<TrainingSession> {
    const attention = this.options.attention ?? "fused";
    const modules = pairs.map((p) => [p.module, p.downSize, p.upSize]);
    const id = JSON.stringify({ modules, alpha, shape, sequenceLength, attention });
    let entry = this.#sessions.get(id);
    if (entry === undefined) {
      entry = this.#openSession(pairs, alpha, shape, sequenceLength, attention);
      this.#sessions.set(id, entry);
      entry.catch(() => this.#sessions.delete(id));
    }
    return entry;
  }

  async #openSession(
    pairs: readonly LoraParameterPair[],
    alpha: number,
    shape: readonly [number, number, number, number],
    sequenceLength: number,
    attention: AttentionKernel,
  ): Promise<TrainingSession> {
    const unet = this.model.unet;
    const key = cacheKey({
      builder: "unet-lora-train@1",
      weights: await fileIdentity(unet.weights),
      config: unet.rawConfig,
      modules: pairs.map((p) => [p.module, p.downSize, p.upSize]),
      alpha,
      shape,
      sequenceLength,
      attention,
    });
    // The LoRA inputs' shapes, from the linear weights' shapes in the safetensors header (a
    // cache hit builds nothing, so they cannot come from the build).
    const parameters: LoraInput[] = [];
    {
      using file = await SafetensorsFile.open(unet.weights);
      const linear = new Map<string, readonly number[]>();
      for (const [name, info] of file.tensors) {
        if (name.endsWith(".weight") && info.shape.length === 2) {
          linear.set(unetLoraModuleName(name.slice(0, -".weight".length)), info.shape);
        }
      }
      for (const p of pairs) {
        const dims = linear.get(p.module) ?? [0, 0];
        const out = dims[0]!;
        const inF = dims[1]!;
        const rank = inF === 0 ? 0 : p.downSize / inF;
        if (!Number.isInteger(rank) || rank < 1 || p.upSize !== out * rank) {
          throw new RangeError(
            `LoRA module "${p.module}" matches no linear layer of the UNet with its sizes ` +
              `(lora_down ${p.downSize} values, lora_up ${p.upSize})`,
          );
        }
        parameters.push({ name: p.down, shape: [rank, inF] }, { name: p.up, shape: [out, rank] });
      }
    }
    const build = async () => {
      using file = await SafetensorsFile.open(unet.weights);
      return buildUnetLoraTrainingGraph(unet.config, tensorSources(file), {
        modules: pairs,
        alpha,
        shape,
        sequenceLength,
        attention,
      }).model;
    };
    const { session } = await createCachedSession(this.#graphDir, key, build, {
      cacheOptimized: !this.#temporary,
      ...this.#sessionOptions(),
    });
    return { session, parameters };
  }

  /**
   * One forward and backward pass: DDPM-noised latents through the UNet with the LoRA, MSE
   * against the noise (epsilon) or the velocity (v-prediction), gradients of every LoRA tensor.
   */
  async step(batch: LoraTrainingBatch): Promise<LoraStepResult> {
    // 1. Check the batch.
    const shape = checkShape(batch.shape, this.model.unet.config.inChannels);
    const [b] = shape;
    const n = numel(shape);
    for (const [name, data] of [["latents", batch.latents], ["noise", batch.noise]] as const) {
      if (!(data instanceof Float32Array) || data.length !== n) {
        throw new RangeError(
          `Cannot train: ${name} must be a Float32Array of ${n} values (shape [${shape}])`,
        );
      }
    }
    if (batch.timesteps.length !== b) {
      throw new RangeError(
        `Cannot train: ${batch.timesteps.length} timesteps for a batch of ${b}; pass one per item`,
      );
    }
    const prompts = typeof batch.prompt === "string"
      ? new Array<string>(b).fill(batch.prompt)
      : [...batch.prompt];
    if (prompts.length !== b) {
      throw new RangeError(`Cannot train: ${prompts.length} prompts for a batch of ${b}`);
    }
    if (!(batch.alpha > 0) || !Number.isFinite(batch.alpha)) {
      throw new RangeError(`Cannot train: alpha must be a number > 0, got ${batch.alpha}`);
    }
    const pairs = loraParameterPairs(batch.lora);

    // 2. Text states, noised latents and the target.
    const text = await this.textStates();
    const states = await text.encode(prompts);
    const { alphasCumprod } = this.schedule;
    const predictionType: PredictionType = batch.predictionType ?? this.schedule.predictionType;
    const noisy = addNoisePerItem(alphasCumprod, batch.latents, batch.noise, batch.timesteps);
    const target = trainingTarget(
      predictionType,
      alphasCumprod,
      batch.latents,
      batch.noise,
      batch.timesteps,
    );

    // 3. Forward + backward.
    const { session, parameters } = await this.#session(
      pairs,
      batch.alpha,
      shape,
      text.sequenceLength,
    );
    const feeds: Record<string, HostTensor> = {
      sample: hostTensor("float32", noisy, shape),
      timestep: hostTensor("float32", Float32Array.from(batch.timesteps), [b]),
      encoder_hidden_states: hostTensor("float32", states, [b, text.sequenceLength, text.width]),
      target: hostTensor("float32", target, shape),
    };
    for (const p of parameters) feeds[p.name] = hostTensor("float32", batch.lora[p.name]!, p.shape);
    const out = await session.run(feeds);
    const grads: Record<string, Float32Array> = {};
    for (const p of pairs) {
      grads[p.down] = out[`${p.down}.grad`]!.data as Float32Array;
      grads[p.up] = out[`${p.up}.grad`]!.data as Float32Array;
    }
    return {
      loss: (out.loss!.data as Float32Array)[0]!,
      grads,
      prediction: out.out_sample!.data as Float32Array,
    };
  }

  /** Frees every session (and the temporary graph folder). */
  async release(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of sessions) {
      try {
        await (await s).session.release();
      } catch {
        // a session that failed to open has nothing to free
      }
    }
    if (this.#text !== undefined) {
      const text = this.#text;
      this.#text = undefined;
      await (await text).release();
    }
    if (this.#temporary) {
      await Deno.remove(this.#graphDir, { recursive: true }).catch(() => {});
      tempRoots = tempRoots.filter((d) => d !== this.#graphDir);
    }
  }
}

function checkShape(shape: readonly number[], channels: number): [number, number, number, number] {
  if (
    shape.length !== 4 || !shape.every((d) => Number.isInteger(d) && d > 0) || shape[1] !== channels
  ) {
    throw new RangeError(
      `Cannot train on latents of shape [${shape}]; pass [batch, ${channels}, height/8, width/8]`,
    );
  }
  return [shape[0]!, shape[1]!, shape[2]!, shape[3]!];
}
