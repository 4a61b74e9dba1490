/**
 * transformers `BlipConfig` parsing (the `config.json` of a BlipForConditionalGeneration folder):
 * `vision_config` and `text_config` in snake_case, camelCase types out, with the defaults of
 * transformers 4.30 `models/blip/configuration_blip.py` (`BlipVisionConfig`, `BlipTextConfig`).
 *
 * @module
 */

/** A parsed `BlipVisionConfig`. */
export interface BlipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Input images are `imageSize` x `imageSize` (no position interpolation in BLIP). */
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
}

/** A parsed `BlipTextConfig` (the BERT-style text decoder). */
export interface BlipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  /** Width of the image embeddings that cross-attention reads. */
  encoderHiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  layerNormEps: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  sepTokenId: number;
}

/** A parsed `BlipConfig`. */
export interface BlipConfig {
  vision: BlipVisionConfig;
  text: BlipTextConfig;
}

type Json = Record<string, unknown>;

function object(json: unknown, what: string): Json {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`Cannot parse the BLIP config: ${what} must be a JSON object`);
  }
  return json as Json;
}

function reader(obj: Json, what: string) {
  const int = (key: string, fallback: number, min = 1): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      throw new RangeError(
        `Cannot parse the BLIP config: ${what}.${key} must be an integer >= ${min}, got ` +
          JSON.stringify(v),
      );
    }
    return v;
  };
  const positive = (key: string, fallback: number): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0)) {
      throw new RangeError(`Cannot parse the BLIP config: ${what}.${key} must be a number > 0`);
    }
    return v;
  };
  const activation = () => {
    const act = obj["hidden_act"] ?? "gelu";
    if (act !== "gelu") {
      throw new RangeError(
        `Cannot parse the BLIP config: ${what}.hidden_act ${JSON.stringify(act)} is not ` +
          `supported; BLIP checkpoints use "gelu"`,
      );
    }
  };
  return { int, positive, activation };
}

function divisible(hidden: number, heads: number, what: string): void {
  if (hidden % heads !== 0) {
    throw new RangeError(
      `Cannot parse the BLIP config: ${what}.hidden_size ${hidden} is not divisible by ` +
        `num_attention_heads ${heads}`,
    );
  }
}

/** Parses `vision_config` (BlipVisionConfig defaults of transformers 4.30). */
export function parseBlipVisionConfig(json: unknown): BlipVisionConfig {
  const r = reader(object(json ?? {}, "vision_config"), "vision_config");
  r.activation();
  const config: BlipVisionConfig = {
    hiddenSize: r.int("hidden_size", 768),
    intermediateSize: r.int("intermediate_size", 3072),
    numHiddenLayers: r.int("num_hidden_layers", 12, 0),
    numAttentionHeads: r.int("num_attention_heads", 12),
    imageSize: r.int("image_size", 384),
    patchSize: r.int("patch_size", 16),
    numChannels: r.int("num_channels", 3),
    layerNormEps: r.positive("layer_norm_eps", 1e-5),
  };
  divisible(config.hiddenSize, config.numAttentionHeads, "vision_config");
  if (config.imageSize % config.patchSize !== 0) {
    throw new RangeError(
      `Cannot parse the BLIP config: vision_config.image_size ${config.imageSize} is not a ` +
        `multiple of patch_size ${config.patchSize}`,
    );
  }
  return config;
}

/** Parses `text_config` (BlipTextConfig defaults of transformers 4.30). */
export function parseBlipTextConfig(json: unknown): BlipTextConfig {
  const r = reader(object(json ?? {}, "text_config"), "text_config");
  r.activation();
  const config: BlipTextConfig = {
    vocabSize: r.int("vocab_size", 30524),
    hiddenSize: r.int("hidden_size", 768),
    encoderHiddenSize: r.int("encoder_hidden_size", 768),
    intermediateSize: r.int("intermediate_size", 3072),
    numHiddenLayers: r.int("num_hidden_layers", 12, 0),
    numAttentionHeads: r.int("num_attention_heads", 8),
    maxPositionEmbeddings: r.int("max_position_embeddings", 512),
    layerNormEps: r.positive("layer_norm_eps", 1e-12),
    bosTokenId: r.int("bos_token_id", 30522, 0),
    eosTokenId: r.int("eos_token_id", 2, 0),
    padTokenId: r.int("pad_token_id", 0, 0),
    sepTokenId: r.int("sep_token_id", 102, 0),
  };
  divisible(config.hiddenSize, config.numAttentionHeads, "text_config");
  return config;
}

/**
 * Parses a BlipForConditionalGeneration `config.json`. The vision width must equal the text
 * decoder's `encoder_hidden_size` (cross-attention reads the image embeddings as they are).
 *
 * @example
 * ```ts
 * import { parseBlipConfig } from "./blip_config.ts";
 * const config = parseBlipConfig({ model_type: "blip", vision_config: {}, text_config: {} });
 * console.assert(config.vision.imageSize === 384 && config.text.vocabSize === 30524);
 * ```
 */
export function parseBlipConfig(json: unknown): BlipConfig {
  const obj = object(json, "config.json");
  const type = obj["model_type"];
  if (type !== undefined && type !== "blip") {
    throw new RangeError(
      `Cannot parse the BLIP config: model_type is ${JSON.stringify(type)}, not "blip"; ` +
        `pass the folder of a BlipForConditionalGeneration model`,
    );
  }
  const vision = parseBlipVisionConfig(obj["vision_config"]);
  const text = parseBlipTextConfig(obj["text_config"]);
  if (vision.hiddenSize !== text.encoderHiddenSize) {
    throw new RangeError(
      `Cannot parse the BLIP config: vision_config.hidden_size ${vision.hiddenSize} differs ` +
        `from text_config.encoder_hidden_size ${text.encoderHiddenSize}`,
    );
  }
  return { vision, text };
}
