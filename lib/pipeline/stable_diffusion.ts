/**
 * A loaded Stable Diffusion model: its components as ONNX sessions (built from the weights on
 * first use and cached), and the typed calls the pipelines make on them.
 *
 * @module
 */
import type { ClipTextConfig } from "../models/clip_text.ts";
import { buildClipTextModel } from "../models/clip_text.ts";
import type { GraphFloatType } from "../models/layers.ts";
import type { QuantizeMode } from "../models/quantize.ts";
import { buildUnet } from "../models/unet.ts";
import {
  buildVaeDecoder,
  buildVaeEncoder,
  type LatentDistribution,
  latentDistribution,
  type Nchw,
  tiledDecode,
  tiledEncode,
  unscaleLatents,
  vaeFloatType,
} from "../models/vae.ts";
import { createSession, type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { f16ToF32, f32ToF16 } from "../tensor/dtype.ts";
import type { TensorSource } from "../onnx/graph.ts";
import type { UnetCall } from "./denoise.ts";
import { ComponentRegistry } from "../model_io/components.ts";
import {
  type ComponentFiles,
  type DiffusersModel,
  openDiffusersModel,
  openVaeFolder,
} from "../model_io/diffusers_folder.ts";
import { type EngineOptions, openComponent } from "../model_io/engine.ts";

/** Options for {@linkcode StableDiffusion.open}. */
export interface StableDiffusionOptions extends EngineOptions {
  /** Release each session as soon as its stage is done (one model in memory at a time). */
  lowMemory?: boolean;
  /** Edits applied to component weights before building (LoRA), by component kind. */
  transforms?: Partial<
    Record<
      "unet" | "text_encoder" | "text_encoder_2",
      {
        key: string;
        apply: (sources: Map<string, TensorSource>) => Promise<Map<string, TensorSource>>;
      }
    >
  >;
  /** Use this VAE folder (config.json + weights) instead of the model's. */
  vaeDir?: string;
  /**
   * Float type of the graphs (default `"float32"`; `"float16"` for CUDA). The VAE stays float32
   * when its config has `force_upcast` (Diffusers' default) unless `vaeFloatType` says otherwise.
   */
  floatType?: GraphFloatType;
  /** Float type of the VAE, overriding `force_upcast` (e.g. `"float16"` for an fp16-fixed VAE). */
  vaeFloatType?: GraphFloatType;
  /**
   * Quantise the UNet's and text encoders' weights (lib/models/quantize.ts; float32 graphs
   * only). The VAE and ControlNets stay float.
   */
  quantize?: QuantizeMode | undefined;
}

/** The components every Stable Diffusion model has (pipelines may register more). */
export type BaseComponent =
  | "unet"
  | "text_encoder"
  | "text_encoder_2"
  | "vae_decoder"
  | "vae_encoder";

const BASE_COMPONENTS: readonly BaseComponent[] = [
  "unet",
  "text_encoder",
  "text_encoder_2",
  "vae_decoder",
  "vae_encoder",
];

/** Text encoder outputs for one batch of token ids. */
export interface TextEncoderOutput {
  /** `[B, S, D]` last hidden state (after the final layer norm). */
  lastHiddenState: Float32Array;
  /** `[B, S, D]` hidden state `layers - skip` with the final layer norm applied (clip skip). */
  hiddenStates: (skip: number) => Float32Array;
  /** Raw penultimate hidden state (no final norm), as SDXL uses it. */
  penultimate: Float32Array;
  /** Raw hidden state `hidden_states[index]` (0 = embeddings, L = last layer), no final norm. */
  rawHiddenStates: (index: number) => Float32Array;
  /** `[B, D]` pooled output (or `text_embeds` for a model with projection). */
  pooled: Float32Array;
  tokens: number;
  dim: number;
}

/** A model ready to run. Call {@linkcode StableDiffusion.release} when done. */
export class StableDiffusion {
  readonly model: DiffusersModel;
  readonly options: StableDiffusionOptions;
  /**
   * The model's sessions by component name: the base components, plus whatever a pipeline
   * registers (a ControlNet, say), all released together.
   */
  readonly components: ComponentRegistry;

  private constructor(model: DiffusersModel, options: StableDiffusionOptions) {
    this.model = model;
    this.options = options;
    this.components = new ComponentRegistry((name) => `${name} of the model in ${model.dir}`);
    for (const name of BASE_COMPONENTS) {
      void this.components.register(name, () => this.#open(name));
    }
  }

  /** Opens a Diffusers folder (sessions are created lazily, on first use). */
  static async open(path: string, options: StableDiffusionOptions): Promise<StableDiffusion> {
    return await StableDiffusion.fromModel(await openDiffusersModel(path), options);
  }

  /**
   * A model already opened with `openDiffusersModel` (the object is copied, not changed), with
   * another VAE when `options.vaeDir` names one.
   */
  static async fromModel(
    opened: DiffusersModel,
    options: StableDiffusionOptions,
  ): Promise<StableDiffusion> {
    const model: DiffusersModel = {
      ...opened,
      ...(opened.onnx !== undefined ? { onnx: { ...opened.onnx } } : {}),
    };
    if (model.onnx !== undefined && Object.keys(options.transforms ?? {}).length > 0) {
      throw new RangeError(
        `Cannot apply LoRAs or embeddings to the ONNX export in ${model.dir}: its weights are ` +
          `baked into the graphs; use the Diffusers folder or single file it was exported from`,
      );
    }
    if (options.vaeDir !== undefined) {
      model.vae = await openVaeFolder(options.vaeDir);
      // The replacement VAE is built from its weights like any other.
      if (model.onnx !== undefined) {
        delete model.onnx.vaeDecoder;
        delete model.onnx.vaeEncoder;
      }
    }
    return new StableDiffusion(model, options);
  }

  /** The engine options every component of this model is built and run with. */
  get engineOptions(): EngineOptions {
    return this.options;
  }

  #open(name: BaseComponent): Promise<OnnxSession> {
    const m = this.model;
    const graph = onnxGraph(m, name);
    if (graph !== undefined) {
      // An ONNX export runs as it is: no build, no cache (its graphs are the cache).
      return createSession(graph, {
        ...(this.options.threads !== undefined ? { threads: this.options.threads } : {}),
        executionProvider: this.options.executionProvider ?? "cpu",
      });
    }
    const floatType = this.options.floatType ?? "float32";
    const quantize = this.options.quantize;
    const vaeType = vaeFloatType(m.vae.rawConfig, floatType, this.options.vaeFloatType);
    const text = (files: ComponentFiles<ClipTextConfig>, kind: "text_encoder" | "text_encoder_2") =>
      openComponent({
        kind,
        weights: files.weights,
        config: files.rawConfig,
        // Textual-inversion rows (lib/adapters) make the token table longer than vocab_size.
        build: (sources) =>
          buildClipTextModel(
            {
              ...files.config,
              vocabSize: sources.get("text_model.embeddings.token_embedding.weight")?.shape[0] ??
                files.config.vocabSize,
            },
            sources,
            { source: files.weights, floatType, quantize },
          ),
        floatType,
        quantize,
        ...(this.options.transforms?.[kind] ? { transform: this.options.transforms[kind] } : {}),
      }, this.options);
    switch (name) {
      case "unet":
        return openComponent({
          kind: "unet",
          weights: m.unet.weights,
          config: m.unet.rawConfig,
          build: (sources) => buildUnet(m.unet.config, sources, { floatType, quantize }),
          floatType,
          quantize,
          ...(this.options.transforms?.unet ? { transform: this.options.transforms.unet } : {}),
        }, this.options);
      case "text_encoder":
        if (!m.textEncoder) throw new RangeError(`The model in ${m.dir} has no text_encoder`);
        return text(m.textEncoder, "text_encoder");
      case "text_encoder_2":
        if (!m.textEncoder2) throw new RangeError(`The model in ${m.dir} has no text_encoder_2`);
        return text(m.textEncoder2, "text_encoder_2");
      case "vae_decoder":
        return openComponent({
          kind: "vae_decoder",
          weights: m.vae.weights,
          config: m.vae.rawConfig,
          build: (sources) => buildVaeDecoder(m.vae.config, sources, { floatType: vaeType }),
          floatType: vaeType,
        }, this.options);
      case "vae_encoder":
        return openComponent({
          kind: "vae_encoder",
          weights: m.vae.weights,
          config: m.vae.rawConfig,
          build: (sources) => buildVaeEncoder(m.vae.config, sources, { floatType: vaeType }),
          floatType: vaeType,
        }, this.options);
    }
  }

  /** Names of the sessions opened (or opening) now. */
  openSessions(): string[] {
    return this.components.openNames();
  }

  /** Frees one session (low-memory mode calls this between stages). */
  async releaseSession(name: string): Promise<void> {
    await this.components.release(name);
  }

  /** Frees every session. */
  async release(): Promise<void> {
    await this.components.releaseAll();
  }

  /** Runs a text encoder on `[B, S]` token ids. */
  async encodeTokens(
    ids: readonly number[],
    batch: number,
    which: "text_encoder" | "text_encoder_2" = "text_encoder",
  ): Promise<TextEncoderOutput> {
    const session = await this.components.session(which);
    const seq = ids.length / batch;
    // Built graphs take int64 ids; ONNX exports int32 or int64, as their metadata says.
    const out = await session.run({
      input_ids: session.inputType("input_ids") === "int32"
        ? hostTensor("int32", Int32Array.from(ids), [batch, seq])
        : hostTensor("int64", BigInt64Array.from(ids, (v) => BigInt(v)), [batch, seq]),
    });
    const onnx = this.model.onnx !== undefined;
    // What an ONNX export lacks is named in one line; built graphs have every output.
    const output = (name: string, why: string): Float32Array => {
      const t = out[name];
      if (t === undefined) {
        throw new RangeError(
          `Cannot ${why}: the ${which} of ${this.model.dir} has no "${name}" output; ` +
            (onnx
              ? "export it again with hidden states (denoise convert-ckpt --to onnx does)"
              : `the text encoder has ${layers} layers`),
        );
      }
      return asFloat32(t);
    };
    const last = out.last_hidden_state;
    if (last === undefined) {
      throw new RangeError(
        `Cannot encode the prompt: the ${which} has no last_hidden_state output`,
      );
    }
    const lastData = asFloat32(last);
    const dim = last.dims[2]!;
    const layers = (which === "text_encoder" ? this.model.textEncoder : this.model.textEncoder2)!
      .config.numHiddenLayers;
    const penultimateName = `hidden_states.${layers - 1}`;
    return {
      lastHiddenState: lastData,
      hiddenStates: (skip: number) => {
        if (skip <= 0) return lastData;
        if (skip > layers) {
          throw new RangeError(
            `Cannot skip ${skip} CLIP layers: the text encoder has ${layers} layers`,
          );
        }
        return output(`normed_hidden_states.${layers - skip}`, `skip ${skip} CLIP layers`);
      },
      get penultimate() {
        return onnx
          ? output(penultimateName, "take the penultimate CLIP hidden state")
          : (out[penultimateName] ? asFloat32(out[penultimateName]) : lastData);
      },
      rawHiddenStates: (index: number) => {
        if (index < 0 || index > layers) {
          throw new RangeError(
            `Cannot take CLIP hidden state ${index}: the text encoder has ${layers} layers`,
          );
        }
        return output(`hidden_states.${index}`, `take CLIP hidden state ${index}`);
      },
      get pooled() {
        const t = out.text_embeds ?? out.pooler_output;
        if (t === undefined) {
          throw new RangeError(
            `Cannot take the pooled text embedding: the ${which} has no text_embeds or ` +
              `pooler_output output`,
          );
        }
        return asFloat32(t);
      },
      tokens: seq,
      dim,
    };
  }

  /**
   * Registers (once) the UNet that takes ControlNet residual inputs as the component
   * `"unet_controlnet"` and returns that name: the same weights, adapters and precision as
   * `"unet"`, built with `controlnetResiduals` (its own cache entry), so runs without a net keep
   * the plain graph. An ONNX export has no residual inputs and is refused.
   */
  residualUnet(): string {
    const name = "unet_controlnet";
    if (this.components.has(name)) return name;
    const m = this.model;
    if (m.onnx !== undefined) {
      throw new RangeError(
        `Cannot use a ControlNet with the ONNX export in ${m.dir}: its UNet graph has no residual ` +
          "inputs; use the Diffusers folder or single file it was exported from",
      );
    }
    const floatType = this.options.floatType ?? "float32";
    void this.components.register(name, () =>
      openComponent({
        kind: name,
        weights: m.unet.weights,
        config: m.unet.rawConfig,
        build: (sources) =>
          buildUnet(m.unet.config, sources, {
            floatType,
            controlnetResiduals: true,
            quantize: this.options.quantize,
          }),
        floatType,
        quantize: this.options.quantize,
        ...(this.options.transforms?.unet ? { transform: this.options.transforms.unet } : {}),
      }, this.options));
    return name;
  }

  /**
   * The UNet as a {@linkcode UnetCall}: the component `input.unet` names, else `component`
   * (default "unet"; `animate` passes its motion UNet, "unet_motion").
   */
  unetCall(component = "unet"): UnetCall {
    return async (input) => {
      const session = await this.components.session(input.unet ?? component);
      // Each input goes in the type the graph declares (ONNX exports vary: int64 or float16
      // timesteps, float16 states); built graphs take float32.
      const feeds: Record<string, HostTensor> = {
        sample: asInput(session, "sample", input.sample, input.sampleShape),
        timestep: asInput(session, "timestep", Float32Array.of(input.timestep), [1]),
        encoder_hidden_states: asInput(
          session,
          "encoder_hidden_states",
          input.hiddenStates,
          input.hiddenShape,
        ),
      };
      // Everything else by name: SDXL text_embeds/time_ids, timestep_cond, residuals, ...
      for (const [name, value] of Object.entries(input.extra)) {
        feeds[name] = asInput(session, name, value.data, value.dims);
      }
      const out = await session.run(feeds, ["out_sample"]);
      return asFloat32(out.out_sample!);
    };
  }

  /**
   * Decodes diffusion latents to pixels in [-1, 1] (`[N, 3, H*f, W*f]`), undoing the VAE's
   * latent scaling first. With `tiled`, decodes overlapping tiles and blends them.
   */
  async decode(latents: Nchw, options: { tiled?: boolean } = {}): Promise<Nchw> {
    const session = await this.components.session("vae_decoder");
    const z: Nchw = { data: unscaleLatents(latents, this.model.vae.config), dims: latents.dims };
    const run = async (tile: Nchw): Promise<Nchw> => {
      const out = await session.run({
        latent_sample: asInput(session, "latent_sample", tile.data, tile.dims),
      });
      const s = out.sample!;
      return { data: asFloat32(s), dims: s.dims as Nchw["dims"] };
    };
    if (options.tiled) return await tiledDecode(z, this.model.vae.config, run);
    // Diffusers decodes a batch one image at a time only when slicing is enabled; one call here.
    return await run(z);
  }

  /** Encodes pixels in [-1, 1] to the VAE posterior (unscaled). */
  async encode(pixels: Nchw, options: { tiled?: boolean } = {}): Promise<LatentDistribution> {
    const session = await this.components.session("vae_encoder");
    // Optimum exports before 1.22 return a latent already sampled inside the graph.
    const sampled = !session.outputNames.includes("latent_parameters") &&
      session.outputNames.includes("latent_sample");
    const run = async (tile: Nchw): Promise<Nchw> => {
      const out = await session.run({ sample: asInput(session, "sample", tile.data, tile.dims) });
      const s = sampled ? out.latent_sample! : out.latent_parameters;
      if (s === undefined) {
        throw new RangeError(
          `Cannot encode the image: the VAE encoder of ${this.model.dir} has no ` +
            `latent_parameters or latent_sample output`,
        );
      }
      return { data: asFloat32(s), dims: s.dims as Nchw["dims"] };
    };
    const moments = options.tiled
      ? await tiledEncode(pixels, this.model.vae.config, run)
      : await run(pixels);
    if (!sampled) return latentDistribution(moments);
    // The draw is the export's: the mean is that latent, with no spread left to sample.
    const zeros = new Float32Array(moments.data.length);
    return {
      mean: moments,
      logvar: { data: zeros.map(() => -Infinity), dims: moments.dims },
      std: { data: zeros, dims: moments.dims },
    };
  }
}

/** The export's graph for a session, if the model is an ONNX export that has it. */
function onnxGraph(m: DiffusersModel, name: BaseComponent): string | undefined {
  if (m.onnx === undefined) return undefined;
  const graphs: Record<BaseComponent, string | undefined> = {
    unet: m.onnx.unet,
    text_encoder: m.onnx.textEncoder,
    text_encoder_2: m.onnx.textEncoder2,
    vae_decoder: m.onnx.vaeDecoder,
    vae_encoder: m.onnx.vaeEncoder,
  };
  const graph = graphs[name];
  // A VAE given with --vae replaces the export's and is built from its weights.
  const replaced = name.startsWith("vae") && !m.vae.weights.endsWith(".onnx");
  if (graph === undefined && !replaced) {
    throw new RangeError(
      `Cannot run the ${name} of the ONNX export in ${m.dir}: it has no ${name}/model.onnx`,
    );
  }
  return graph;
}

/**
 * A float32 tensor as the type the session's input declares: float16 bits, float64, or integers
 * truncated toward zero as NumPy's `astype` does (Diffusers' ONNX pipelines feed timesteps so).
 */
function asInput(
  session: OnnxSession,
  name: string,
  data: Float32Array,
  dims: readonly number[],
): HostTensor {
  const type = session.inputType(name) ?? "float32";
  switch (type) {
    case "float32":
      return hostTensor(type, data, dims);
    case "float16":
      return hostTensor(type, f32ToF16(data), dims);
    case "float64":
      return hostTensor(type, Float64Array.from(data), dims);
    case "int64":
      return hostTensor(type, BigInt64Array.from(data, (v) => BigInt(Math.trunc(v))), dims);
    case "int32":
      return hostTensor(type, Int32Array.from(data, Math.trunc), dims);
    default:
      throw new TypeError(`Cannot feed input "${name}": the graph takes ${type}, not a float type`);
  }
}

/** An output as float32 (float16 and float64 outputs are converted). */
function asFloat32(t: HostTensor): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.type === "float16") return f16ToF32(t.data as Uint16Array);
  if (t.type === "float64") return Float32Array.from(t.data as Float64Array);
  throw new TypeError(`Cannot read a ${t.type} output as float32`);
}
