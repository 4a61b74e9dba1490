/**
 * Florence-2 (base and large) from its published ONNX export (the `onnx-community/Florence-2-*`
 * layout that transformers.js reads with `Florence2ForConditionalGeneration`):
 *
 * - `onnx/vision_encoder.onnx`: `pixel_values` float32 [b, 3, 768, 768] -> `image_features`
 *   float32 [b, 577, d] (DaViT features plus the projection, 576 spatial tokens and one pooled);
 * - `onnx/embed_tokens.onnx`: `input_ids` int64 [b, n] -> `inputs_embeds` float32 [b, n, d];
 * - `onnx/encoder_model.onnx`: `inputs_embeds` float32 [b, s, d], `attention_mask` int64 [b, s]
 *   -> `last_hidden_state` float32 [b, s, d];
 * - `onnx/decoder_model_merged.onnx`: the BART decoder with its caches (lib/caption/
 *   seq2seq_scorer.ts);
 * - `config.json` (`model_type: "florence2"`, the BART sizes in `text_config`),
 *   `generation_config.json` when present, `preprocessor_config.json` (a CLIPImageProcessor:
 *   768x768 bicubic, no crop, ImageNet mean/std), `tokenizer.json` (BART byte-level BPE).
 *
 * A caption, as the original `Florence2ForConditionalGeneration.generate` and the processor do
 * it: the task's sentence (lib/caption/florence2_prompts.ts) is tokenized with `<s>`/`</s>`,
 * embedded, and appended to the image features; the encoder reads `[image_features,
 * text_embeds]` with an all-ones mask; the decoder starts from `decoder_start_token_id` (`</s>`),
 * with the generation settings of the model (beam search with 3 beams, `no_repeat_ngram_size`
 * 3, `early_stopping`, `forced_bos_token_id` `<s>` and `forced_eos_token_id` `</s>` in
 * Florence-2's config). The text is decoded with special tokens kept and `</s>`, `<s>` and
 * `<pad>` removed (the processor's `pure_text` post-processing).
 *
 * Length: when neither generation_config.json nor `text_config` sets `max_length` or
 * `max_new_tokens`, denoise generates up to 1024 new tokens, the `max_new_tokens` of the model
 * card's examples, instead of transformers' default total length of 20, which cuts detailed
 * captions short.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelNotFoundError } from "../errors.ts";
import type { RawImage } from "../image/codec.ts";
import {
  type HostTensor,
  hostTensor,
  type OnnxSession,
  type SessionOptions,
} from "../onnx/session.ts";
import { HfTokenizer } from "../tokenizer/hf_tokenizer.ts";
import {
  CAPTION_TASKS,
  type CaptionModel,
  type CaptionRequest,
  type CaptionTask,
  checkTask,
  type EncodedImages,
} from "./caption_model.ts";
import {
  type ClipImageProcessorConfig,
  clipPixelValues,
  parseClipImageProcessorConfig,
} from "./clip_image_processor.ts";
import { florence2RequestPrompt } from "./florence2_prompts.ts";
import {
  type GenerationConfig,
  parseGenerationConfig,
  withDefaultNewTokens,
} from "./generation_config.ts";
import {
  cacheGeometry,
  configInt,
  openExportPart,
  readOptionalJson,
  requireFloat32,
} from "./onnx_export.ts";
import { seq2seqCacheNames, type Seq2SeqGeometry, Seq2SeqScorer } from "./seq2seq_scorer.ts";

type Json = Record<string, unknown>;

/** Options of {@linkcode Florence2CaptionModel.load}. */
export interface LoadFlorence2Options {
  /** ORT session options (threads, execution provider). */
  session?: SessionOptions;
}

/** `max_new_tokens` when the model's configs set no length (the model card's value). */
export const FLORENCE2_DEFAULT_MAX_NEW_TOKENS = 1024;

/** Special tokens removed from decoded text (the processor's `pure_text` post-processing). */
const STRIPPED = ["</s>", "<s>", "<pad>"];

/** The generation settings: generation_config.json, else config.json's `text_config`. */
export function florence2GenerationConfig(
  generation: Json | undefined,
  textConfig: Json,
): GenerationConfig {
  const source = generation ?? textConfig;
  return withDefaultNewTokens(
    parseGenerationConfig(source),
    source,
    FLORENCE2_DEFAULT_MAX_NEW_TOKENS,
  );
}

/** The four parts of the export. */
interface Florence2Sessions {
  vision: OnnxSession;
  embed: OnnxSession;
  encoder: OnnxSession;
  decoder: OnnxSession;
}

/** A loaded Florence-2 export. Call {@linkcode Florence2CaptionModel.release} when done. */
export class Florence2CaptionModel implements CaptionModel {
  readonly family = "florence2";
  readonly tasks: readonly CaptionTask[] = CAPTION_TASKS;
  readonly generationConfig: GenerationConfig;
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number;
  /** The parsed preprocessor_config.json. */
  readonly imageProcessor: ClipImageProcessorConfig;
  /** The BART tokenizer. */
  readonly tokenizer: HfTokenizer;
  /** The decoder's first token (`decoder_start_token_id`). */
  readonly decoderStartTokenId: number;
  #sessions: Florence2Sessions;
  #geometry: Seq2SeqGeometry;

  private constructor(fields: {
    generationConfig: GenerationConfig;
    eosTokenId: number;
    padTokenId: number;
    decoderStartTokenId: number;
    imageProcessor: ClipImageProcessorConfig;
    tokenizer: HfTokenizer;
    sessions: Florence2Sessions;
    geometry: Seq2SeqGeometry;
  }) {
    this.generationConfig = fields.generationConfig;
    this.eosTokenIds = [fields.eosTokenId];
    this.padTokenId = fields.padTokenId;
    this.decoderStartTokenId = fields.decoderStartTokenId;
    this.imageProcessor = fields.imageProcessor;
    this.tokenizer = fields.tokenizer;
    this.#sessions = fields.sessions;
    this.#geometry = fields.geometry;
  }

  /**
   * Loads a Florence-2 ONNX export folder.
   *
   * @example
   * ```ts ignore
   * const model = await Florence2CaptionModel.load("Florence-2-base");
   * const [text] = await caption(model, [image], { task: "detailed" });
   * await model.release();
   * ```
   */
  static async load(
    dir: string,
    options: LoadFlorence2Options = {},
  ): Promise<Florence2CaptionModel> {
    const config = await readOptionalJson(dir, "config.json");
    if (config === undefined) {
      throw new ModelNotFoundError(`Cannot find "${join(dir, "config.json")}"`, {
        hint: "pass the folder of a Florence-2 ONNX export (onnx-community/Florence-2-base)",
      });
    }
    if (config["model_type"] !== "florence2") {
      throw new RangeError(
        `Cannot load "${dir}" as Florence-2: its config.json has model_type ` +
          `${JSON.stringify(config["model_type"])}, not "florence2"`,
      );
    }
    const text = (config["text_config"] ?? {}) as Json;
    const where = "config.json text_config";
    const layers = configInt(text, "decoder_layers", undefined, where);
    const dModel = configInt(text, "d_model", undefined, where);
    const configHeads = configInt(text, "decoder_attention_heads", undefined, where);
    const vocabSize = configInt(text, "vocab_size", config["vocab_size"] as number, where);
    const eosTokenId = configInt(text, "eos_token_id", 2, where);
    const padTokenId = configInt(text, "pad_token_id", 1, where);
    const generation = await readOptionalJson(dir, "generation_config.json");
    const decoderStartTokenId = configInt(
      generation ?? text,
      "decoder_start_token_id",
      configInt(text, "decoder_start_token_id", eosTokenId, where),
      generation ? "generation_config.json" : where,
    );
    const generationConfig = florence2GenerationConfig(generation, text);
    const processor = await readOptionalJson(dir, "preprocessor_config.json");
    const imageProcessor = parseClipImageProcessorConfig(
      processor ?? { size: { height: 768, width: 768 }, do_center_crop: false },
    );
    if (!existsSync(join(dir, "tokenizer.json"))) {
      throw new ModelNotFoundError(`Cannot find "${join(dir, "tokenizer.json")}"`, {
        hint: "the Florence-2 export needs its tokenizer.json beside config.json",
      });
    }
    const tokenizer = await HfTokenizer.fromFolder(dir);
    const opened: OnnxSession[] = [];
    const open = async (name: string, inputs: string[], outputs: string[]) => {
      const s = await openExportPart(dir, name, { inputs, outputs }, options.session);
      opened.push(s);
      return s;
    };
    try {
      const vision = await open("vision_encoder", ["pixel_values"], ["image_features"]);
      const embed = await open("embed_tokens", ["input_ids"], ["inputs_embeds"]);
      const encoder = await open(
        "encoder_model",
        ["inputs_embeds", "attention_mask"],
        ["last_hidden_state"],
      );
      const caches = Array.from({ length: layers }, (_, i) => seq2seqCacheNames(i)).flat();
      const decoder = await open(
        "decoder_model_merged",
        [
          "inputs_embeds",
          "encoder_hidden_states",
          "encoder_attention_mask",
          "use_cache_branch",
          ...caches.map((c) => c.past),
        ],
        ["logits", ...caches.map((c) => c.present)],
      );
      requireFloat32(vision, "pixel_values", "vision_encoder");
      requireFloat32(encoder, "inputs_embeds", "encoder_model");
      requireFloat32(decoder, "inputs_embeds", "decoder_model_merged");
      const { heads, headDim } = cacheGeometry(decoder, "past_key_values.0.decoder.key", {
        heads: configHeads,
        headDim: dModel / configHeads,
      });
      return new Florence2CaptionModel({
        generationConfig,
        eosTokenId,
        padTokenId,
        decoderStartTokenId,
        imageProcessor,
        tokenizer,
        sessions: { vision, embed, encoder, decoder },
        geometry: { layers, heads, headDim, vocabSize },
      });
    } catch (error) {
      for (const s of opened) await s.release();
      throw error;
    }
  }

  /** `pixel_values` [images, 3, h, w] as the processor makes them. */
  preprocess(images: readonly RawImage[]): HostTensor {
    const { outputWidth: w, outputHeight: h } = this.imageProcessor;
    return hostTensor("float32", clipPixelValues(images, this.imageProcessor), [
      images.length,
      3,
      h,
      w,
    ]);
  }

  /** The encoder's token ids for a request: `<s>` + the task's sentence + `</s>`. */
  encoderIds(request: CaptionRequest = {}): number[] {
    return this.tokenizer.encode(florence2RequestPrompt(request.task ?? "caption", request.prompt));
  }

  /** The encoder states of a batch for a request (image features, then the prompt). */
  async encodeStates(
    images: readonly RawImage[],
    request: CaptionRequest = {},
  ): Promise<{ hidden: HostTensor; mask: HostTensor }> {
    const s = this.#sessions;
    const { image_features } = await s.vision.run({ pixel_values: this.preprocess(images) }, [
      "image_features",
    ]);
    const features = image_features!;
    const ids = this.encoderIds(request);
    const { inputs_embeds } = await s.embed.run({
      input_ids: hostTensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
    }, ["inputs_embeds"]);
    const text = inputs_embeds!;
    // [b, N, d] ++ [1 -> b, L, d] -> [b, N + L, d]
    const [b, n, d] = features.dims as [number, number, number];
    if (text.dims[2] !== d) {
      throw new RangeError(
        `Cannot join image features of width ${d} and token embeddings of width ` +
          `${text.dims[2]}: the export's parts do not belong together`,
      );
    }
    const l = ids.length;
    const joined = new Float32Array(b * (n + l) * d);
    for (let i = 0; i < b; i++) {
      joined.set(
        (features.data as Float32Array).subarray(i * n * d, (i + 1) * n * d),
        i * (n + l) * d,
      );
      joined.set(text.data as Float32Array, (i * (n + l) + n) * d);
    }
    const mask = hostTensor("int64", new BigInt64Array(b * (n + l)).fill(1n), [b, n + l]);
    const { last_hidden_state } = await s.encoder.run({
      inputs_embeds: hostTensor("float32", joined, [b, n + l, d]),
      attention_mask: mask,
    }, ["last_hidden_state"]);
    return { hidden: last_hidden_state!, mask };
  }

  async encode(images: readonly RawImage[], request: CaptionRequest = {}): Promise<EncodedImages> {
    if (images.length === 0) throw new RangeError("Cannot encode an empty batch of images");
    checkTask(this, request.task ?? "caption");
    const states = await this.encodeStates(images, request);
    const s = this.#sessions;
    return {
      promptIds: [this.decoderStartTokenId],
      scorer: new Seq2SeqScorer(s.decoder, s.embed, states, this.#geometry),
    };
  }

  decode(ids: readonly number[]): string {
    let text = this.tokenizer.decode(ids, { skipSpecialTokens: false });
    for (const token of STRIPPED) text = text.replaceAll(token, "");
    return text;
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.#sessions)) await s.release();
  }
}
