/**
 * A loaded Stable Diffusion model: its components as ONNX sessions (built from the weights on
 * first use and cached), and the typed calls the pipelines make on them.
 *
 * @module
 */
import type { ClipTextConfig } from "../models/clip_text.ts";
import { buildClipTextModel } from "../models/clip_text.ts";
import type { GraphFloatType } from "../models/layers.ts";
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
import { hostTensor, type OnnxSession } from "../onnx/session.ts";
import type { TensorSource } from "../onnx/graph.ts";
import type { UnetCall } from "./denoise.ts";
import {
  type ComponentFiles,
  type DiffusersModel,
  openDiffusersModel,
  openVaeFolder,
} from "./model.ts";
import { type EngineOptions, openComponent } from "./engine.ts";

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
}

type SessionName = "unet" | "text_encoder" | "text_encoder_2" | "vae_decoder" | "vae_encoder";

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
  #sessions = new Map<SessionName, Promise<OnnxSession>>();

  private constructor(model: DiffusersModel, options: StableDiffusionOptions) {
    this.model = model;
    this.options = options;
  }

  /** Opens a Diffusers folder (sessions are created lazily, on first use). */
  static async open(path: string, options: StableDiffusionOptions): Promise<StableDiffusion> {
    const model = await openDiffusersModel(path);
    if (options.vaeDir !== undefined) model.vae = await openVaeFolder(options.vaeDir);
    return new StableDiffusion(model, options);
  }

  #session(name: SessionName): Promise<OnnxSession> {
    let session = this.#sessions.get(name);
    if (session === undefined) {
      session = this.#open(name);
      this.#sessions.set(name, session);
      session.catch(() => this.#sessions.delete(name));
    }
    return session;
  }

  #open(name: SessionName): Promise<OnnxSession> {
    const m = this.model;
    const floatType = this.options.floatType ?? "float32";
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
            { source: files.weights, floatType },
          ),
        floatType,
        ...(this.options.transforms?.[kind] ? { transform: this.options.transforms[kind] } : {}),
      }, this.options);
    switch (name) {
      case "unet":
        return openComponent({
          kind: "unet",
          weights: m.unet.weights,
          config: m.unet.rawConfig,
          build: (sources) => buildUnet(m.unet.config, sources, { floatType }),
          floatType,
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

  /** Frees one session (low-memory mode calls this between stages). */
  async releaseSession(name: SessionName): Promise<void> {
    const session = this.#sessions.get(name);
    if (session === undefined) return;
    this.#sessions.delete(name);
    await (await session).release();
  }

  /** Frees every session. */
  async release(): Promise<void> {
    for (const name of [...this.#sessions.keys()]) await this.releaseSession(name);
  }

  /** Runs a text encoder on `[B, S]` token ids. */
  async encodeTokens(
    ids: readonly number[],
    batch: number,
    which: "text_encoder" | "text_encoder_2" = "text_encoder",
  ): Promise<TextEncoderOutput> {
    const session = await this.#session(which);
    const seq = ids.length / batch;
    const out = await session.run({
      input_ids: hostTensor("int64", BigInt64Array.from(ids, (v) => BigInt(v)), [batch, seq]),
    });
    const last = out.last_hidden_state!;
    const dim = last.dims[2]!;
    const layers = (which === "text_encoder" ? this.model.textEncoder : this.model.textEncoder2)!
      .config.numHiddenLayers;
    const pooled = (out.text_embeds ?? out.pooler_output)!.data as Float32Array;
    const penultimateName = `hidden_states.${layers - 1}`;
    return {
      lastHiddenState: last.data as Float32Array,
      hiddenStates: (skip: number) => {
        if (skip <= 0) return last.data as Float32Array;
        const normed = out[`normed_hidden_states.${layers - skip}`];
        if (normed === undefined) {
          throw new RangeError(
            `Cannot skip ${skip} CLIP layers: the text encoder has ${layers} layers`,
          );
        }
        return normed.data as Float32Array;
      },
      penultimate: (out[penultimateName]?.data ?? last.data) as Float32Array,
      rawHiddenStates: (index: number) => {
        const raw = out[`hidden_states.${index}`];
        if (raw === undefined || index < 0) {
          throw new RangeError(
            `Cannot take CLIP hidden state ${index}: the text encoder has ${layers} layers`,
          );
        }
        return raw.data as Float32Array;
      },
      pooled,
      tokens: seq,
      dim,
    };
  }

  /** The UNet as a {@linkcode UnetCall}. */
  unetCall(): UnetCall {
    return async (input) => {
      const session = await this.#session("unet");
      const feeds: Record<string, ReturnType<typeof hostTensor>> = {
        sample: hostTensor("float32", input.sample, input.sampleShape),
        timestep: hostTensor("float32", Float32Array.of(input.timestep), [1]),
        encoder_hidden_states: hostTensor("float32", input.hiddenStates, input.hiddenShape),
      };
      if (input.textEmbeds && input.timeIds) {
        const b = input.sampleShape[0];
        feeds.text_embeds = hostTensor("float32", input.textEmbeds, [
          b,
          input.textEmbeds.length / b,
        ]);
        feeds.time_ids = hostTensor("float32", input.timeIds, [b, input.timeIds.length / b]);
      }
      const out = await session.run(feeds, ["out_sample"]);
      return out.out_sample!.data as Float32Array;
    };
  }

  /**
   * Decodes diffusion latents to pixels in [-1, 1] (`[N, 3, H*f, W*f]`), undoing the VAE's
   * latent scaling first. With `tiled`, decodes overlapping tiles and blends them.
   */
  async decode(latents: Nchw, options: { tiled?: boolean } = {}): Promise<Nchw> {
    const session = await this.#session("vae_decoder");
    const z: Nchw = { data: unscaleLatents(latents, this.model.vae.config), dims: latents.dims };
    const run = async (tile: Nchw): Promise<Nchw> => {
      const out = await session.run({ latent_sample: hostTensor("float32", tile.data, tile.dims) });
      const s = out.sample!;
      return { data: s.data as Float32Array, dims: s.dims as Nchw["dims"] };
    };
    if (options.tiled) return await tiledDecode(z, this.model.vae.config, run);
    // Diffusers decodes a batch one image at a time only when slicing is enabled; one call here.
    return await run(z);
  }

  /** Encodes pixels in [-1, 1] to the VAE posterior (unscaled). */
  async encode(pixels: Nchw, options: { tiled?: boolean } = {}): Promise<LatentDistribution> {
    const session = await this.#session("vae_encoder");
    const run = async (tile: Nchw): Promise<Nchw> => {
      const out = await session.run({ sample: hostTensor("float32", tile.data, tile.dims) });
      const s = out.latent_parameters!;
      return { data: s.data as Float32Array, dims: s.dims as Nchw["dims"] };
    };
    const moments = options.tiled
      ? await tiledEncode(pixels, this.model.vae.config, run)
      : await run(pixels);
    return latentDistribution(moments);
  }
}
