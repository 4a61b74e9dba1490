/**
 * BLIP image captioning (transformers 4.30 `BlipForConditionalGeneration` + `BlipProcessor`)
 * from the transformers folder itself: config.json, model.safetensors or pytorch_model.bin,
 * preprocessor_config.json, and the tokenizer files (tokenizer.json, or BERT's vocab.txt).
 *
 * Three graphs are built from the weights (lib/models/blip_vision.ts, blip_text.ts): the vision
 * transformer, the per-image cross-attention keys/values, and one decoder step with a
 * self-attention cache. Generation follows `BlipForConditionalGeneration.generate`: the decoder
 * starts from `[DEC]` (the processor's `[CLS]` replaced by `bos_token_id`) followed by the
 * prompt's tokens (its trailing `[SEP]` dropped), stops at `sep_token_id`, pads with
 * `pad_token_id`, and the generation settings are the text decoder's (`text_config`).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelNotFoundError } from "../errors.ts";
import type { RawImage } from "../image/codec.ts";
import { cacheKey, createCachedSession, fileIdentity } from "../onnx/cache.ts";
import type { OnnxModel, TensorSource } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import {
  createSession,
  type HostTensor,
  hostTensor,
  type OnnxSession,
  type SessionOptions,
} from "../onnx/session.ts";
import { type BlipConfig, parseBlipConfig } from "../models/blip_config.ts";
import { buildBlipCrossKeyValues, buildBlipTextDecoder } from "../models/blip_text.ts";
import { buildBlipVisionModel } from "../models/blip_vision.ts";
import { normalizeBlipWeights } from "../models/blip_weights.ts";
import type { AttentionKernel } from "../models/layers.ts";
import { HfTokenizer } from "../tokenizer/hf_tokenizer.ts";
import {
  type BlipImageProcessorConfig,
  blipPixelValues,
  parseBlipImageProcessorConfig,
} from "./blip_image_processor.ts";
import {
  type CaptionModel,
  type CaptionRequest,
  type CaptionTask,
  checkTask,
  type EncodedImages,
} from "./caption_model.ts";
import { type GenerationConfig, parseGenerationConfig } from "./generation_config.ts";
import { openModelWeights } from "./model_weights.ts";
import { gatherRows } from "./kv_cache.ts";
import type { TokenScorer } from "./token_scorer.ts";

/** Bumped when the BLIP graphs change, so cached graphs are rebuilt. */
const BUILDER_REVISION = "blip@1";

/** Options of {@linkcode BlipCaptionModel.load}. */
export interface LoadBlipOptions {
  /** How attention is computed in the vision transformer (default `"fused"`). */
  attention?: AttentionKernel;
  /** ORT session options (threads, execution provider). */
  session?: SessionOptions;
  /**
   * Folder for built graphs (`<cacheDir>/graphs/<key>/`, weights referenced in place as ONNX
   * external data, ORT's optimised graph saved beside). Without it the graphs are built in
   * memory at every load (fine for small models; the weights are copied into the protobuf).
   */
  cacheDir?: string;
}

type Json = Record<string, unknown>;

async function readJson(path: string): Promise<Json> {
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text) as Json;
  } catch (error) {
    throw new SyntaxError(`Cannot parse "${path}": ${(error as Error).message}; fix the JSON`, {
      cause: error,
    });
  }
}

/** The folder's architecture check: one line naming what it is instead. */
function checkArchitecture(dir: string, json: Json): void {
  const archs = json["architectures"];
  const type = json["model_type"];
  const ok = type === "blip" &&
    (!Array.isArray(archs) || archs.includes("BlipForConditionalGeneration"));
  if (!ok) {
    const what = Array.isArray(archs) && archs.length > 0 ? archs.join(", ") : String(type);
    throw new RangeError(
      `Cannot caption with "${dir}": it is a ${what} model, not BlipForConditionalGeneration; ` +
        `pass a BLIP captioning model such as Salesforce/blip-image-captioning-base`,
    );
  }
}

/**
 * The per-batch scorer: the decoder step graph over cached image keys/values, with the
 * self-attention cache of the rows it last scored. It serves one search.
 */
class BlipScorer implements TokenScorer {
  readonly vocabSize: number;
  #session: OnnxSession;
  #cross: Record<string, HostTensor>;
  #images: number;
  #layers: number;
  #heads: number;
  #headDim: number;
  #maxPositions: number;
  #past: HostTensor[] = [];
  #consumed = 0;

  constructor(
    session: OnnxSession,
    cross: Record<string, HostTensor>,
    images: number,
    config: BlipConfig,
  ) {
    this.#session = session;
    this.#cross = cross;
    this.#images = images;
    this.vocabSize = config.text.vocabSize;
    this.#layers = config.text.numHiddenLayers;
    this.#heads = config.text.numAttentionHeads;
    this.#headDim = config.text.hiddenSize / config.text.numAttentionHeads;
    this.#maxPositions = config.text.maxPositionEmbeddings;
  }

  async next(sequences: readonly (readonly number[])[], parents: readonly number[]) {
    const rows = sequences.length;
    if (rows === 0 || rows % this.#images !== 0) {
      throw new RangeError(
        `Cannot score ${rows} rows over ${this.#images} images: pass the same number of rows ` +
          `(beams) for every image`,
      );
    }
    const first = this.#past.length === 0;
    if (first) {
      this.#consumed = 0;
      const empty = () =>
        hostTensor("float32", new Float32Array(0), [rows, this.#heads, 0, this.#headDim]);
      this.#past = Array.from({ length: 2 * this.#layers }, empty);
    } else {
      this.#past = this.#past.map((t) => gatherRows(t, parents));
    }
    const fresh = sequences.map((s) => s.slice(this.#consumed));
    const width = fresh[0]!.length;
    if (width === 0) {
      throw new RangeError(
        "Cannot score: the sequences did not grow since the last call; a scorer serves one " +
          "search, encode the images again for another",
      );
    }
    if (fresh.some((f) => f.length !== width)) {
      throw new RangeError("Cannot score rows that grew by different numbers of tokens");
    }
    if (this.#consumed + width > this.#maxPositions) {
      throw new RangeError(
        `Cannot generate past ${this.#maxPositions} tokens (the decoder's ` +
          `max_position_embeddings); ask for fewer new tokens`,
      );
    }
    const ids = new BigInt64Array(rows * width);
    fresh.forEach((f, r) => f.forEach((t, i) => (ids[r * width + i] = BigInt(t))));
    const feeds: Record<string, HostTensor> = {
      ...this.#cross,
      input_ids: hostTensor("int64", ids, [rows, width]),
    };
    for (let i = 0; i < this.#layers; i++) {
      feeds[`past_key.${i}`] = this.#past[2 * i]!;
      feeds[`past_value.${i}`] = this.#past[2 * i + 1]!;
    }
    const out = await this.#session.run(feeds);
    for (let i = 0; i < this.#layers; i++) {
      this.#past[2 * i] = out[`present_key.${i}`]!;
      this.#past[2 * i + 1] = out[`present_value.${i}`]!;
    }
    this.#consumed += width;
    return out["logits"]!.data as Float32Array;
  }
}

/** A loaded BLIP captioning model. Call {@linkcode BlipCaptionModel.release} when done. */
export class BlipCaptionModel implements CaptionModel {
  readonly family = "blip";
  /** BLIP has one task: a short caption (conditional with a prompt). */
  readonly tasks: readonly CaptionTask[] = ["caption"];
  /** The parsed config.json. */
  readonly config: BlipConfig;
  /** The parsed preprocessor_config.json. */
  readonly imageProcessor: BlipImageProcessorConfig;
  /** The text tokenizer. */
  readonly tokenizer: HfTokenizer;
  readonly generationConfig: GenerationConfig;
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number;
  #vision: OnnxSession;
  #cross: OnnxSession;
  #decoder: OnnxSession;

  private constructor(
    config: BlipConfig,
    imageProcessor: BlipImageProcessorConfig,
    tokenizer: HfTokenizer,
    generationConfig: GenerationConfig,
    sessions: { vision: OnnxSession; cross: OnnxSession; decoder: OnnxSession },
  ) {
    this.config = config;
    this.imageProcessor = imageProcessor;
    this.tokenizer = tokenizer;
    this.generationConfig = generationConfig;
    // BlipForConditionalGeneration.generate passes eos_token_id=sep_token_id.
    this.eosTokenIds = [config.text.sepTokenId];
    this.padTokenId = config.text.padTokenId;
    this.#vision = sessions.vision;
    this.#cross = sessions.cross;
    this.#decoder = sessions.decoder;
  }

  /**
   * Loads a BLIP captioning folder (as transformers' `save_pretrained` writes it).
   *
   * @example
   * ```ts ignore
   * const model = await BlipCaptionModel.load("blip-image-captioning-base", { cacheDir });
   * const texts = await caption(model, [image]);
   * await model.release();
   * ```
   */
  static async load(dir: string, options: LoadBlipOptions = {}): Promise<BlipCaptionModel> {
    const configPath = join(dir, "config.json");
    if (!existsSync(configPath)) {
      throw new ModelNotFoundError(`Cannot find "${configPath}"`, {
        hint: "pass the folder of a transformers BLIP captioning model",
      });
    }
    const json = await readJson(configPath);
    checkArchitecture(dir, json);
    const config = parseBlipConfig(json);
    const processorPath = join(dir, "preprocessor_config.json");
    const imageProcessor = parseBlipImageProcessorConfig(
      existsSync(processorPath) ? await readJson(processorPath) : {},
    );
    const size = config.vision.imageSize;
    if (imageProcessor.width !== size || imageProcessor.height !== size) {
      throw new RangeError(
        `Cannot use "${dir}": preprocessor_config.json resizes to ` +
          `${imageProcessor.width}x${imageProcessor.height} but the vision model takes ` +
          `${size}x${size}; fix "size" in preprocessor_config.json`,
      );
    }
    const tokenizer = await HfTokenizer.fromFolder(dir);
    const generationConfig = parseGenerationConfig((json["text_config"] ?? {}) as Json);
    const weights = await openModelWeights(dir);
    try {
      const sources = normalizeBlipWeights(weights.sources);
      const attention = options.attention ?? "fused";
      const buildOptions = { attention, source: weights.path };
      const session = async (part: string, build: (w: Map<string, TensorSource>) => OnnxModel) => {
        if (options.cacheDir === undefined) {
          return await createSession(await serializeModel(build(sources)), options.session);
        }
        const key = cacheKey({
          builder: BUILDER_REVISION,
          part,
          weights: await fileIdentity(weights.path),
          config: json,
          attention,
        });
        const cached = await createCachedSession(
          join(options.cacheDir, "graphs"),
          key,
          () => build(sources),
          options.session ?? {},
        );
        return cached.session;
      };
      const vision = await session(
        "vision",
        (w) => buildBlipVisionModel(config.vision, w, buildOptions),
      );
      const cross = await session(
        "cross",
        (w) => buildBlipCrossKeyValues(config.text, w, buildOptions),
      );
      const decoder = await session(
        "decoder",
        (w) => buildBlipTextDecoder(config.text, w, buildOptions),
      );
      return new BlipCaptionModel(config, imageProcessor, tokenizer, generationConfig, {
        vision,
        cross,
        decoder,
      });
    } finally {
      weights.close();
    }
  }

  /** `pixel_values` [images, 3, size, size] as BlipProcessor makes them. */
  preprocess(images: readonly RawImage[]): Float32Array {
    return blipPixelValues(images, this.imageProcessor);
  }

  /** The vision model's `image_embeds` [images, tokens, width] for preprocessed pixels. */
  async imageEmbeddings(pixelValues: Float32Array, images: number): Promise<HostTensor> {
    const size = this.config.vision.imageSize;
    const pixels = hostTensor("float32", pixelValues, [images, 3, size, size]);
    const out = await this.#vision.run({ pixel_values: pixels });
    return out["image_embeds"]!;
  }

  /**
   * The decoder's starting ids: `[bos]` alone, or `[bos]` + the WordPiece ids of `prompt`
   * (BlipProcessor's `[CLS] ... [SEP]` with `[CLS]` replaced and `[SEP]` dropped).
   */
  promptIds(prompt?: string): number[] {
    const bos = this.config.text.bosTokenId;
    if (prompt === undefined) return [bos];
    const ids = this.tokenizer.encode(prompt);
    return [bos, ...ids.slice(1, -1)];
  }

  /** A scorer over the decoder for the given image embeddings. */
  async scorer(imageEmbeds: HostTensor): Promise<TokenScorer> {
    const cross = await this.#cross.run({ image_embeds: imageEmbeds });
    return new BlipScorer(this.#decoder, cross, imageEmbeds.dims[0]!, this.config);
  }

  async encode(images: readonly RawImage[], request: CaptionRequest = {}): Promise<EncodedImages> {
    if (images.length === 0) throw new RangeError("Cannot encode an empty batch of images");
    checkTask(this, request.task ?? "caption");
    const embeds = await this.imageEmbeddings(this.preprocess(images), images.length);
    return { promptIds: this.promptIds(request.prompt), scorer: await this.scorer(embeds) };
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode(ids, { skipSpecialTokens: true });
  }

  async release(): Promise<void> {
    await this.#vision.release();
    await this.#cross.release();
    await this.#decoder.release();
  }
}
