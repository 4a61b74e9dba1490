/**
 * One model's LoRA training machinery: the opened Diffusers folder, its DDPM training schedule,
 * the text encoders (frozen, text_states.ts, or trained, text_encoder_lora_graph.ts) and one
 * training session per (trained module set, alpha, latent shape, options), built on first use
 * and kept, so repeated steps only run ORT. {@linkcode LoraTrainer.step} is one forward +
 * backward pass; the optimiser (adamw.ts) and the loop (train_lora.ts: datasets, schedules,
 * checkpoints) sit on top.
 *
 * SD 1.x / 2.x condition the UNet on the text encoder's last hidden state; SDXL (Diffusers'
 * train_text_to_image_lora_sdxl.py) on the penultimate hidden states of both encoders side by
 * side, plus the second encoder's pooled projection (`text_embeds`) and six `time_ids` per item
 * (original size, crop top-left, target size).
 *
 * With text-encoder modules in the LoRA (`lora_te_*`, SDXL `lora_te1_*` / `lora_te2_*`), the
 * UNet's graph also returns the gradient of its text inputs and the text encoders' own training
 * graphs carry it back to their LoRA (the chain rule across two sessions); their states are then
 * recomputed at every step instead of cached.
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
import type { ClipTextConfig } from "../models/clip_text.ts";
import {
  type ComponentFiles,
  type DiffusersModel,
  openDiffusersModel,
} from "../model_io/diffusers_folder.ts";
import type { PredictionType } from "../schedulers/config.ts";
import { ClipTokenizer } from "../tokenizer/clip_tokenizer.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import {
  type LoraParameterPair,
  loraParameterPairs,
  type LoraTarget,
  loraTargetOf,
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
import { buildTextEncoderLoraTrainingGraph } from "./text_encoder_lora_graph.ts";
import { buildUnetLoraTrainingGraph, unetTextEmbedsDim } from "./unet_lora_graph.ts";

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
  /**
   * Activation checkpointing: recompute each resnet's, transformer block's and text-encoder
   * layer's activations in the backward pass instead of keeping them (less memory, about one
   * more forward pass of time). Default false.
   */
  checkpointing?: boolean;
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
  /**
   * Per-item loss weights (min-SNR): the loss is `mean(w_b * (prediction - target)^2)`.
   * Default: unweighted.
   */
  lossWeights?: readonly number[];
  /**
   * SDXL: six `time_ids` per item (original height, width, crop top, left, target height,
   * width). Default: no crop, original = target = the latent size times 8.
   */
  timeIds?: ReadonlyArray<readonly number[]>;
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

/** A text encoder of the model, with what the UNet reads from it. */
interface TextEncoderSpec {
  target: LoraTarget;
  files: ComponentFiles<ClipTextConfig>;
  tokenizerDir: string;
  /** Outputs the UNet reads, in order (the first is the hidden states). */
  outputs: string[];
}

interface TextEncoderRun {
  spec: TextEncoderSpec;
  /** Present when the encoder is trained this step. */
  trained?: {
    session: TrainingSession;
    ids: BigInt64Array;
    pairs: LoraParameterPair[];
  };
  /** The outputs, `[B, ...]` each. */
  values: Record<string, Float32Array>;
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
  /** The text encoders the UNet is conditioned on, in concatenation order. */
  readonly textEncoders: ReadonlyArray<Readonly<TextEncoderSpec>>;
  #graphDir: string;
  #temporary: boolean;
  #text = new Map<LoraTarget, Promise<TextStates>>();
  #tokenizers = new Map<LoraTarget, Promise<ClipTokenizer>>();
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
    const penultimate = (c: ClipTextConfig) => `hidden_states.${c.numHiddenLayers - 1}`;
    if (model.family === "sdxl") {
      const te1 = model.textEncoder!;
      const te2 = model.textEncoder2!;
      this.textEncoders = [
        {
          target: "text_encoder",
          files: te1,
          tokenizerDir: model.tokenizerDir!,
          outputs: [penultimate(te1.config)],
        },
        {
          target: "text_encoder_2",
          files: te2,
          tokenizerDir: model.tokenizer2Dir!,
          outputs: [penultimate(te2.config), "text_embeds"],
        },
      ];
    } else {
      this.textEncoders = [{
        target: "text_encoder",
        files: model.textEncoder!,
        tokenizerDir: model.tokenizerDir!,
        outputs: ["last_hidden_state"],
      }];
    }
  }

  /**
   * Opens a Diffusers folder for training (SD 1.x / 2.x and SDXL base UNets).
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
    const sdxl = model.family === "sdxl" && model.textEncoder2 !== undefined &&
      model.tokenizer2Dir !== undefined;
    const plain = model.unet.config.additionEmbedType === null;
    if (
      model.textEncoder === undefined || model.tokenizerDir === undefined || model.inpainting ||
      !(plain || sdxl) || model.unet.config.timeCondProjDim !== null
    ) {
      throw new RangeError(
        `Cannot train on ${model.dir}: LoRA training supports SD 1.x, 2.x and SDXL base models, ` +
          `not ${model.inpainting ? "inpainting models" : model.family}`,
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

  /** The frozen (first) text encoder, opened on first use. */
  textStates(target: LoraTarget = "text_encoder"): Promise<TextStates> {
    let text = this.#text.get(target);
    if (text === undefined) {
      const spec = this.textEncoders.find((t) => t.target === target);
      if (spec === undefined) throw new RangeError(`The model has no ${target}`);
      text = TextStates.open(spec.files.config, spec.files.weights, spec.tokenizerDir, {
        graphDir: this.#graphDir,
        cacheOptimized: !this.#temporary,
        ...this.#sessionOptions(),
      });
      this.#text.set(target, text);
      text.catch(() => this.#text.delete(target));
    }
    return text;
  }

  #tokenizer(spec: TextEncoderSpec): Promise<ClipTokenizer> {
    let t = this.#tokenizers.get(spec.target);
    if (t === undefined) {
      t = ClipTokenizer.fromDirectory(spec.tokenizerDir);
      this.#tokenizers.set(spec.target, t);
    }
    return t;
  }

  #sessionOptions(): { threads?: number; executionProvider?: ExecutionProvider } {
    return {
      ...(this.options.threads === undefined ? {} : { threads: this.options.threads }),
      ...(this.options.executionProvider === undefined
        ? {}
        : { executionProvider: this.options.executionProvider }),
    };
  }

  /** A cached session, built once per id. */
  #cached(id: unknown, open: () => Promise<TrainingSession>): Promise<TrainingSession> {
    const key = JSON.stringify(id);
    let entry = this.#sessions.get(key);
    if (entry === undefined) {
      entry = open();
      this.#sessions.set(key, entry);
      entry.catch(() => this.#sessions.delete(key));
    }
    return entry;
  }

  /** The LoRA inputs of `pairs` with shapes from a weight file's linear layers. */
  async #parameters(
    weights: string,
    pairs: readonly LoraParameterPair[],
    moduleName: (path: string) => string,
    what: string,
  ): Promise<LoraInput[]> {
    // From the safetensors header: a cache hit builds nothing, so shapes cannot come from the build.
    using file = await SafetensorsFile.open(weights);
    const linear = new Map<string, readonly number[]>();
    for (const [name, info] of file.tensors) {
      if (name.endsWith(".weight") && info.shape.length === 2) {
        linear.set(moduleName(name.slice(0, -".weight".length)), info.shape);
      }
    }
    const parameters: LoraInput[] = [];
    for (const p of pairs) {
      const dims = linear.get(p.module) ?? [0, 0];
      const out = dims[0]!;
      const inF = dims[1]!;
      const rank = inF === 0 ? 0 : p.downSize / inF;
      if (!Number.isInteger(rank) || rank < 1 || p.upSize !== out * rank) {
        throw new RangeError(
          `LoRA module "${p.module}" matches no linear layer of the ${what} with its sizes ` +
            `(lora_down ${p.downSize} values, lora_up ${p.upSize})`,
        );
      }
      parameters.push({ name: p.down, shape: [rank, inF] }, { name: p.up, shape: [out, rank] });
    }
    return parameters;
  }

  /** The UNet training session for these modules, alpha, shape and options (built once). */
  #unetSession(
    pairs: readonly LoraParameterPair[],
    alpha: number,
    shape: readonly [number, number, number, number],
    sequenceLength: number,
    lossWeights: boolean,
    textGradients: boolean,
  ): Promise<TrainingSession> {
    const attention = this.options.attention ?? "fused";
    const recompute = this.options.checkpointing ?? false;
    const modules = pairs.map((p) => [p.module, p.downSize, p.upSize]);
    // Options at their defaults stay out of the id and key, so earlier cache entries stay valid.
    const extra = {
      ...(lossWeights ? { lossWeights } : {}),
      ...(textGradients ? { textGradients } : {}),
      ...(recompute ? { recompute } : {}),
    };
    const id = { unet: modules, alpha, shape, sequenceLength, attention, ...extra };
    return this.#cached(id, async () => {
      const unet = this.model.unet;
      const key = cacheKey({
        builder: "unet-lora-train@2",
        weights: await fileIdentity(unet.weights),
        config: unet.rawConfig,
        modules,
        alpha,
        shape,
        sequenceLength,
        attention,
        ...extra,
      });
      const parameters = await this.#parameters(unet.weights, pairs, unetLoraModuleName, "UNet");
      const build = async () => {
        using file = await SafetensorsFile.open(unet.weights);
        return buildUnetLoraTrainingGraph(unet.config, tensorSources(file), {
          modules: pairs,
          alpha,
          shape,
          sequenceLength,
          attention,
          lossWeights,
          textGradients,
          recompute,
        }).model;
      };
      const { session } = await createCachedSession(this.#graphDir, key, build, {
        cacheOptimized: !this.#temporary,
        ...this.#sessionOptions(),
      });
      return { session, parameters };
    });
  }

  /** A text encoder's training session (built once per module set and batch). */
  #textSession(
    spec: TextEncoderSpec,
    pairs: readonly LoraParameterPair[],
    alpha: number,
    batch: number,
    sequenceLength: number,
  ): Promise<TrainingSession> {
    const prefix = loraTargetOf(pairs[0]!.module)!.prefix;
    const recompute = this.options.checkpointing ?? false;
    const modules = pairs.map((p) => [p.module, p.downSize, p.upSize]);
    const id = {
      text: spec.target,
      modules,
      alpha,
      batch,
      sequenceLength,
      outputs: spec.outputs,
      ...(recompute ? { recompute } : {}),
    };
    return this.#cached(id, async () => {
      const files = spec.files;
      const key = cacheKey({
        builder: "clip-lora-train@1",
        weights: await fileIdentity(files.weights),
        config: files.rawConfig,
        ...id,
      });
      const parameters = await this.#parameters(
        files.weights,
        pairs,
        (path) => prefix + path.replaceAll(".", "_"),
        `text encoder (${prefix}*)`,
      );
      const build = async () => {
        using file = await SafetensorsFile.open(files.weights);
        const sources = tensorSources(file);
        const vocab = sources.get("text_model.embeddings.token_embedding.weight")?.shape[0];
        return buildTextEncoderLoraTrainingGraph(
          { ...files.config, vocabSize: vocab ?? files.config.vocabSize },
          sources,
          {
            modules: pairs,
            alpha,
            prefix,
            batch,
            sequenceLength,
            outputs: spec.outputs,
            recompute,
          },
        ).model;
      };
      const { session } = await createCachedSession(this.#graphDir, key, build, {
        cacheOptimized: !this.#temporary,
        ...this.#sessionOptions(),
      });
      return { session, parameters };
    });
  }

  /** Runs every text encoder on the prompts: frozen ones from their cache, trained ones afresh. */
  async #encodeText(
    prompts: readonly string[],
    byTarget: ReadonlyMap<LoraTarget, LoraParameterPair[]>,
    lora: Readonly<Record<string, Float32Array>>,
    alpha: number,
  ): Promise<TextEncoderRun[]> {
    const runs: TextEncoderRun[] = [];
    for (const spec of this.textEncoders) {
      const pairs = byTarget.get(spec.target) ?? [];
      if (pairs.length === 0) {
        const text = await this.textStates(spec.target);
        runs.push({ spec, values: await text.encodeOutputs(prompts, spec.outputs) });
        continue;
      }
      const tokenizer = await this.#tokenizer(spec);
      const s = tokenizer.modelMaxLength;
      const ids = new BigInt64Array(prompts.length * s);
      prompts.forEach((p, b) =>
        tokenizer.encodePadded(p).forEach((id, i) => (ids[b * s + i] = BigInt(id)))
      );
      const session = await this.#textSession(spec, pairs, alpha, prompts.length, s);
      // Forward with zero upstream gradients: the outputs (the gradients are unused).
      const out = await session.session.run(
        this.#textFeeds(spec, session, ids, lora, prompts.length, s, undefined),
        spec.outputs,
      );
      const values: Record<string, Float32Array> = {};
      for (const name of spec.outputs) values[name] = out[name]!.data as Float32Array;
      runs.push({ spec, trained: { session, ids, pairs }, values });
    }
    return runs;
  }

  #textFeeds(
    spec: TextEncoderSpec,
    session: TrainingSession,
    ids: BigInt64Array,
    lora: Readonly<Record<string, Float32Array>>,
    batch: number,
    sequenceLength: number,
    upstream: Record<string, Float32Array> | undefined,
  ): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = {
      input_ids: hostTensor("int64", ids, [batch, sequenceLength]),
    };
    for (const name of spec.outputs) {
      const config = spec.files.config;
      const dims = name === "text_embeds"
        ? [batch, config.projectionDim]
        : [batch, sequenceLength, config.hiddenSize];
      feeds[`upstream.${name}`] = hostTensor(
        "float32",
        upstream?.[name] ?? new Float32Array(numel(dims)),
        dims,
      );
    }
    for (const p of session.parameters) {
      feeds[p.name] = hostTensor("float32", lora[p.name]!, p.shape);
    }
    return feeds;
  }

  /**
   * One forward and backward pass: DDPM-noised latents through the UNet with the LoRA, MSE
   * against the noise (epsilon) or the velocity (v-prediction), gradients of every LoRA tensor.
   */
  async step(batch: LoraTrainingBatch): Promise<LoraStepResult> {
    // 1. Check the batch.
    const shape = checkShape(batch.shape, this.model.unet.config.inChannels);
    const [b, , h, w] = shape;
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
    if (batch.lossWeights !== undefined && batch.lossWeights.length !== b) {
      throw new RangeError(
        `Cannot train: ${batch.lossWeights.length} loss weights for a batch of ${b}`,
      );
    }
    const pairs = loraParameterPairs(batch.lora);
    const byTarget = new Map<LoraTarget, LoraParameterPair[]>();
    for (const p of pairs) {
      const target = loraTargetOf(p.module)!.target;
      if (!this.textEncoders.some((t) => t.target === target) && target !== "unet") {
        throw new RangeError(`Cannot train "${p.module}": the model has no ${target}`);
      }
      const list = byTarget.get(target);
      if (list === undefined) byTarget.set(target, [p]);
      else list.push(p);
    }
    const unetPairs = byTarget.get("unet") ?? [];
    const trainText = pairs.length > unetPairs.length;

    // 2. Text conditioning, noised latents and the target.
    const text = await this.#encodeText(prompts, byTarget, batch.lora, batch.alpha);
    const seq = text[0]!.values[text[0]!.spec.outputs[0]!]!.length /
      (b * text[0]!.spec.files.config.hiddenSize);
    const states = concatLastAxis(
      text.map((t) => ({
        data: t.values[t.spec.outputs[0]!]!,
        width: t.spec.files.config.hiddenSize,
      })),
      b * seq,
    );
    const crossDim = states.length / (b * seq);
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

    // 3. Forward + backward through the UNet.
    const { session, parameters } = await this.#unetSession(
      unetPairs,
      batch.alpha,
      shape,
      seq,
      batch.lossWeights !== undefined,
      trainText,
    );
    const feeds: Record<string, HostTensor> = {
      sample: hostTensor("float32", noisy, shape),
      timestep: hostTensor("float32", Float32Array.from(batch.timesteps), [b]),
      encoder_hidden_states: hostTensor("float32", states, [b, seq, crossDim]),
      target: hostTensor("float32", target, shape),
    };
    if (batch.lossWeights !== undefined) {
      feeds.loss_weights = hostTensor("float32", Float32Array.from(batch.lossWeights), [
        b,
        1,
        1,
        1,
      ]);
    }
    const embedsDim = unetTextEmbedsDim(this.model.unet.config);
    if (embedsDim !== undefined) {
      const pooled = text[1]!.values.text_embeds!;
      feeds.text_embeds = hostTensor("float32", pooled, [b, embedsDim]);
      const ids = new Float32Array(b * 6);
      for (let i = 0; i < b; i++) {
        const t = batch.timeIds?.[i] ?? [h * 8, w * 8, 0, 0, h * 8, w * 8];
        if (t.length !== 6) throw new RangeError(`Cannot train: time_ids must have 6 values`);
        ids.set(t, i * 6);
      }
      feeds.time_ids = hostTensor("float32", ids, [b, 6]);
    }
    for (const p of parameters) feeds[p.name] = hostTensor("float32", batch.lora[p.name]!, p.shape);
    const out = await session.run(feeds);
    const grads: Record<string, Float32Array> = {};
    for (const p of unetPairs) {
      grads[p.down] = out[`${p.down}.grad`]!.data as Float32Array;
      grads[p.up] = out[`${p.up}.grad`]!.data as Float32Array;
    }

    // 4. The text encoders' backward passes, from the UNet's gradients of its text inputs.
    if (trainText) {
      const statesGrad = out["encoder_hidden_states.grad"]!.data as Float32Array;
      let offset = 0;
      for (const t of text) {
        const width = t.spec.files.config.hiddenSize;
        const slice = sliceLastAxis(statesGrad, crossDim, offset, width);
        offset += width;
        if (t.trained === undefined) continue;
        const upstream: Record<string, Float32Array> = { [t.spec.outputs[0]!]: slice };
        if (t.spec.outputs.includes("text_embeds")) {
          upstream.text_embeds = out["text_embeds.grad"]!.data as Float32Array;
        }
        const r = await t.trained.session.session.run(
          this.#textFeeds(t.spec, t.trained.session, t.trained.ids, batch.lora, b, seq, upstream),
        );
        for (const p of t.trained.pairs) {
          grads[p.down] = r[`${p.down}.grad`]!.data as Float32Array;
          grads[p.up] = r[`${p.up}.grad`]!.data as Float32Array;
        }
      }
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
    const texts = [...this.#text.values()];
    this.#text.clear();
    for (const t of texts) {
      try {
        await (await t).release();
      } catch {
        // as above
      }
    }
    if (this.#temporary) {
      await Deno.remove(this.#graphDir, { recursive: true }).catch(() => {});
      tempRoots = tempRoots.filter((d) => d !== this.#graphDir);
    }
  }
}

/** Rows of several `[rows, width_k]` tensors side by side: `[rows, sum(width_k)]`. */
function concatLastAxis(
  parts: ReadonlyArray<{ data: Float32Array; width: number }>,
  rows: number,
): Float32Array {
  if (parts.length === 1) return parts[0]!.data;
  const total = parts.reduce((s, p) => s + p.width, 0);
  const out = new Float32Array(rows * total);
  let offset = 0;
  for (const p of parts) {
    for (let r = 0; r < rows; r++) {
      out.set(p.data.subarray(r * p.width, (r + 1) * p.width), r * total + offset);
    }
    offset += p.width;
  }
  return out;
}

/** Columns `[offset, offset + width)` of a `[rows, total]` tensor. */
function sliceLastAxis(
  data: Float32Array,
  total: number,
  offset: number,
  width: number,
): Float32Array {
  if (offset === 0 && width === total) return data;
  const rows = data.length / total;
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    out.set(data.subarray(r * total + offset, r * total + offset + width), r * width);
  }
  return out;
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
