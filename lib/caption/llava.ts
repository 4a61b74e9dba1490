/**
 * LLaVA-class captioning (a vision encoder with its projector, then a decoder-only LLM with a
 * key/value cache) from the ONNX export layout that transformers.js reads for
 * `LlavaForConditionalGeneration` (its `image-text-to-text` model type: sessions
 * `vision_encoder`, `embed_tokens` and `decoder_model_merged`; e.g. the
 * `Xenova/tiny-random-LlavaForConditionalGeneration` test export and the `llava-hf/llava-1.5`
 * conversions):
 *
 * - `onnx/vision_encoder.onnx`: `pixel_values` float32 [b, 3, h, w] -> `image_features`
 *   float32 [b, tokens, d] (CLIP features after the multi-modal projector);
 * - `onnx/embed_tokens.onnx`: `input_ids` int64 [b, n] -> `inputs_embeds` float32 [b, n, d];
 * - `onnx/decoder_model_merged.onnx`: see lib/caption/decoder_only_scorer.ts;
 * - `config.json` (`model_type: "llava"`, `image_token_index`, the LLM's sizes in
 *   `text_config`), `generation_config.json` when present, `preprocessor_config.json` (a
 *   CLIPImageProcessor), `tokenizer.json`.
 *
 * The prompt is LLaVA-1.5's chat template (lib/caption/llava_chat.ts) with the image token
 * expanded to one token per feature row; generation continues it; the caption is the new tokens
 * decoded with special tokens skipped and surrounding whitespace trimmed. Only Llama-based
 * (LLaVA-1.5) text models are accepted: other LLaVA-family exports have other chat templates.
 *
 * Length: when neither generation_config.json nor `text_config` sets `max_length` or
 * `max_new_tokens`, up to 256 new tokens are generated (transformers' default total of 20 is
 * shorter than the prompt).
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
import { type DecoderGeometry, DecoderOnlyScorer } from "./decoder_only_scorer.ts";
import {
  type GenerationConfig,
  parseGenerationConfig,
  withDefaultNewTokens,
} from "./generation_config.ts";
import { chatRequestText, expandImageTokens, llavaPrompt } from "./llava_chat.ts";
import {
  cacheGeometry,
  configInt,
  openExportPart,
  readOptionalJson,
  requireFloat32,
} from "./onnx_export.ts";

type Json = Record<string, unknown>;

/** Options of {@linkcode LlavaCaptionModel.load}. */
export interface LoadLlavaOptions {
  /** ORT session options (threads, execution provider). */
  session?: SessionOptions;
}

/** `max_new_tokens` when the model's configs set no length. */
export const LLAVA_DEFAULT_MAX_NEW_TOKENS = 256;

/** The text models whose chat template is implemented. */
const TEMPLATED_TEXT_MODELS = ["llama"];

interface LlavaSessions {
  vision: OnnxSession;
  embed: OnnxSession;
  decoder: OnnxSession;
}

function firstId(value: unknown): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return typeof v === "number" && Number.isInteger(v) ? v : undefined;
}

/** A loaded LLaVA export. Call {@linkcode LlavaCaptionModel.release} when done. */
export class LlavaCaptionModel implements CaptionModel {
  readonly family = "llava";
  readonly tasks: readonly CaptionTask[] = CAPTION_TASKS;
  readonly generationConfig: GenerationConfig;
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number;
  /** The id of `<image>` (`image_token_index`). */
  readonly imageTokenId: number;
  /** The parsed preprocessor_config.json. */
  readonly imageProcessor: ClipImageProcessorConfig;
  /** The LLM's tokenizer. */
  readonly tokenizer: HfTokenizer;
  #sessions: LlavaSessions;
  #geometry: DecoderGeometry;

  private constructor(fields: {
    generationConfig: GenerationConfig;
    eosTokenIds: number[];
    padTokenId: number;
    imageTokenId: number;
    imageProcessor: ClipImageProcessorConfig;
    tokenizer: HfTokenizer;
    sessions: LlavaSessions;
    geometry: DecoderGeometry;
  }) {
    this.generationConfig = fields.generationConfig;
    this.eosTokenIds = fields.eosTokenIds;
    this.padTokenId = fields.padTokenId;
    this.imageTokenId = fields.imageTokenId;
    this.imageProcessor = fields.imageProcessor;
    this.tokenizer = fields.tokenizer;
    this.#sessions = fields.sessions;
    this.#geometry = fields.geometry;
  }

  /**
   * Loads a LLaVA ONNX export folder.
   *
   * @example
   * ```ts ignore
   * const model = await LlavaCaptionModel.load("llava-1.5-7b-hf-onnx");
   * const [text] = await caption(model, [image], { task: "detailed" });
   * await model.release();
   * ```
   */
  static async load(dir: string, options: LoadLlavaOptions = {}): Promise<LlavaCaptionModel> {
    const config = await readOptionalJson(dir, "config.json");
    if (config === undefined) {
      throw new ModelNotFoundError(`Cannot find "${join(dir, "config.json")}"`, {
        hint: "pass the folder of a LLaVA ONNX export (config.json, tokenizer.json, onnx/*.onnx)",
      });
    }
    if (config["model_type"] !== "llava") {
      throw new RangeError(
        `Cannot load "${dir}" as LLaVA: its config.json has model_type ` +
          `${JSON.stringify(config["model_type"])}, not "llava"`,
      );
    }
    const text = (config["text_config"] ?? {}) as Json;
    const textType = text["model_type"] ?? "llama";
    if (typeof textType !== "string" || !TEMPLATED_TEXT_MODELS.includes(textType)) {
      throw new RangeError(
        `Cannot caption with "${dir}": its text model is ${JSON.stringify(textType)}, and ` +
          `only the LLaVA-1.5 chat template (a Llama text model) is implemented`,
      );
    }
    const imageTokenId = configInt(
      config,
      "image_token_index",
      firstId(config["image_token_id"]) ?? 32000,
    );
    const generation = await readOptionalJson(dir, "generation_config.json");
    const source = generation ?? text;
    const generationConfig = withDefaultNewTokens(
      parseGenerationConfig(source),
      source,
      LLAVA_DEFAULT_MAX_NEW_TOKENS,
    );
    if (!existsSync(join(dir, "tokenizer.json"))) {
      throw new ModelNotFoundError(`Cannot find "${join(dir, "tokenizer.json")}"`, {
        hint: "the LLaVA export needs its tokenizer.json beside config.json",
      });
    }
    const tokenizer = await HfTokenizer.fromFolder(dir);
    const eos = firstId(generation?.["eos_token_id"]) ?? firstId(text["eos_token_id"]) ??
      tokenizer.tokenToId("</s>");
    if (eos === undefined) {
      throw new RangeError(
        `Cannot caption with "${dir}": no eos_token_id in generation_config.json or ` +
          `text_config, and the tokenizer has no </s>`,
      );
    }
    const eosTokenIds = Array.isArray(generation?.["eos_token_id"])
      ? (generation["eos_token_id"] as number[])
      : [eos];
    const padTokenId = firstId(generation?.["pad_token_id"]) ?? firstId(config["pad_token_id"]) ??
      eos;
    const vocabSize = configInt(
      text,
      "vocab_size",
      config["vocab_size"] as number,
      "config.json text_config",
    );
    const processor = await readOptionalJson(dir, "preprocessor_config.json");
    const imageProcessor = parseClipImageProcessorConfig(processor ?? {});
    const opened: OnnxSession[] = [];
    const open = async (name: string, inputs: string[], outputs: string[]) => {
      const s = await openExportPart(dir, name, { inputs, outputs }, options.session);
      opened.push(s);
      return s;
    };
    try {
      const vision = await open("vision_encoder", ["pixel_values"], ["image_features"]);
      const embed = await open("embed_tokens", ["input_ids"], ["inputs_embeds"]);
      const decoder = await open("decoder_model_merged", ["inputs_embeds", "attention_mask"], [
        "logits",
      ]);
      const layers = decoder.inputNames.filter((n) => /^past_key_values\.\d+\.key$/.test(n))
        .length;
      for (let i = 0; i < layers; i++) {
        for (const kind of ["key", "value"]) {
          const missing = !decoder.inputNames.includes(`past_key_values.${i}.${kind}`) ||
            !decoder.outputNames.includes(`present.${i}.${kind}`);
          if (missing) {
            throw new RangeError(
              `Cannot use the decoder of "${dir}": it has no past_key_values.${i}.${kind} input ` +
                `or present.${i}.${kind} output; it is not the export layout denoise reads`,
            );
          }
        }
      }
      if (layers === 0) {
        throw new RangeError(
          `Cannot use the decoder of "${dir}": it has no past_key_values inputs (an export ` +
            `without a cache); export decoder_model_merged.onnx with past key values`,
        );
      }
      requireFloat32(vision, "pixel_values", "vision_encoder");
      requireFloat32(decoder, "inputs_embeds", "decoder_model_merged");
      const attentionHeads = text["num_attention_heads"] as number | undefined;
      const hidden = text["hidden_size"] as number | undefined;
      const { heads, headDim } = cacheGeometry(decoder, "past_key_values.0.key", {
        heads: (text["num_key_value_heads"] as number | undefined) ?? attentionHeads,
        headDim: (text["head_dim"] as number | undefined) ??
          (hidden !== undefined && attentionHeads !== undefined
            ? hidden / attentionHeads
            : undefined),
      });
      return new LlavaCaptionModel({
        generationConfig,
        eosTokenIds,
        padTokenId,
        imageTokenId,
        imageProcessor,
        tokenizer,
        sessions: { vision, embed, decoder },
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

  /** The vision encoder's features of a batch, [images, tokens, d]. */
  async imageFeatures(images: readonly RawImage[]): Promise<HostTensor> {
    const { image_features } = await this.#sessions.vision.run({
      pixel_values: this.preprocess(images),
    }, ["image_features"]);
    const f = image_features!;
    if (f.dims.length === 3) return f;
    if (f.dims.length === 2 && f.dims[0]! % images.length === 0) {
      return { ...f, dims: [images.length, f.dims[0]! / images.length, f.dims[1]!] };
    }
    throw new RangeError(
      `Cannot read image_features of shape [${f.dims}]: expected [images, tokens, width]`,
    );
  }

  /** The prompt ids for a request, with `<image>` expanded to `imageTokens` tokens. */
  promptIds(request: CaptionRequest, imageTokens: number): number[] {
    const text = chatRequestText(request.task ?? "caption", request.prompt);
    const ids = this.tokenizer.encode(llavaPrompt(text));
    return expandImageTokens(ids, this.imageTokenId, imageTokens);
  }

  async encode(images: readonly RawImage[], request: CaptionRequest = {}): Promise<EncodedImages> {
    if (images.length === 0) throw new RangeError("Cannot encode an empty batch of images");
    checkTask(this, request.task ?? "caption");
    const features = await this.imageFeatures(images);
    const promptIds = this.promptIds(request, features.dims[1]!);
    const s = this.#sessions;
    return {
      promptIds,
      scorer: new DecoderOnlyScorer(
        s.decoder,
        s.embed,
        { features, imageTokenId: this.imageTokenId },
        this.#geometry,
      ),
    };
  }

  decode(ids: readonly number[], promptIds: readonly number[]): string {
    return this.tokenizer.decode(ids.slice(promptIds.length), { skipSpecialTokens: true }).trim();
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.#sessions)) await s.release();
  }
}
