/**
 * Random-weight BLIP captioning folders in the transformers layout (config.json,
 * model.safetensors, preprocessor_config.json, a BERT vocab.txt with tokenizer_config.json and
 * special_tokens_map.json), for tests and benchmarks. Parameter names and shapes come from the
 * builders themselves, so a random model always loads. Captions from it are nonsense.
 *
 * @module
 */
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { writeSafetensors } from "../weights/safetensors.ts";
import { parseBlipConfig } from "./blip_config.ts";
import { blipTextParameterShapes } from "./blip_text.ts";
import { blipVisionParameterShapes } from "./blip_vision.ts";
import { randomWeights } from "./random.ts";

/**
 * `Salesforce/blip-image-captioning-base`'s shapes: ViT-B/16 at 384x384 (577 tokens) and a
 * 12-layer BERT-base decoder with cross-attention; `[DEC]` = 30522, `[SEP]` = 102.
 */
export const BLIP_BASE_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["BlipForConditionalGeneration"],
  model_type: "blip",
  vision_config: {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    image_size: 384,
    patch_size: 16,
    layer_norm_eps: 1e-5,
    hidden_act: "gelu",
  },
  text_config: {
    vocab_size: 30524,
    hidden_size: 768,
    encoder_hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    max_position_embeddings: 512,
    layer_norm_eps: 1e-12,
    hidden_act: "gelu",
    bos_token_id: 30522,
    eos_token_id: 2,
    pad_token_id: 0,
    sep_token_id: 102,
    max_length: 20,
  },
};

/** A tiny BLIP config (1 layer each, 32x32 images, 64 tokens) for tests and short benches. */
export const TINY_BLIP_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["BlipForConditionalGeneration"],
  model_type: "blip",
  vision_config: {
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    image_size: 32,
    patch_size: 16,
  },
  text_config: {
    vocab_size: 64,
    hidden_size: 16,
    encoder_hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    bos_token_id: 62,
    sep_token_id: 3,
    pad_token_id: 0,
    max_length: 8,
  },
};

/** Options of {@linkcode createRandomBlip}. */
export interface CreateRandomBlipOptions {
  /** Seed of the values (default 0). */
  seed?: number;
  /**
   * `"torch"` (default): torch's CPU generator, as lib/models/random.ts draws (about 2 M values
   * per second); `"fast"`: a xorshift generator with the same variances, for BLIP-base-sized
   * models (250 M values).
   */
  values?: "torch" | "fast";
}

/** Uniform values with the variances of {@linkcode randomWeights}. */
function fastWeights(shapes: ReadonlyMap<string, readonly number[]>, seed: number) {
  let state = (0x9e3779b9 ^ seed) >>> 0 || 1;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const name of [...shapes.keys()].sort()) {
    const shape = [...shapes.get(name)!];
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    // Uniform on [-a, a] has std a / sqrt(3).
    const scale = shape.length >= 2 ? Math.sqrt(3 / fanIn) : 0.1 * Math.sqrt(3);
    const base = shape.length < 2 && name.endsWith(".weight") ? 1 : 0;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      data[i] = base + scale * ((state >>> 0) / 2 ** 31 - 1);
    }
    out.set(name, { shape, data });
  }
  return out;
}

/**
 * A BERT vocab.txt of `size` lines: the special tokens at their ids, then a few caption words
 * and letters on the first free ids (so prompts tokenize), `[unused<i>]` elsewhere.
 */
function vocabulary(size: number, special: Record<number, string>): string {
  const words = [
    ..."a picture photo of the on in with cat dog man woman red blue".split(" "),
    ..."bcdefghijklmnopqrstuvwxyz".split(""),
  ];
  const lines: string[] = [];
  let w = 0;
  for (let i = 0; i < size; i++) {
    lines.push(special[i] ?? (w < words.length ? words[w++]! : `[unused${i}]`));
  }
  return lines.join("\n") + "\n";
}

/**
 * Writes a BLIP captioning folder with random weights to `outDir`. `config` is a
 * BlipForConditionalGeneration config.json object (e.g. {@linkcode BLIP_BASE_CONFIG}, or a tiny
 * one for tests); the vocabulary has `[PAD]` = pad_token_id, `[CLS]`, `[SEP]` = sep_token_id,
 * `[DEC]` = bos_token_id, `[UNK]`, `[MASK]`, `[ENC]` on the next free ids.
 *
 * @example
 * ```ts ignore
 * await createRandomBlip(BLIP_BASE_CONFIG, "/tmp/blip-base-random", { values: "fast" });
 * ```
 */
export async function createRandomBlip(
  config: Readonly<Record<string, unknown>>,
  outDir: string,
  options: CreateRandomBlipOptions = {},
): Promise<void> {
  const parsed = parseBlipConfig(config);
  const seed = options.seed ?? 0;
  const shapes = new Map([
    ...blipVisionParameterShapes(parsed.vision),
    ...blipTextParameterShapes(parsed.text),
  ]);
  const weights = options.values === "fast"
    ? fastWeights(shapes, seed)
    : randomWeights(shapes, seed);
  await fsp.mkdir(outDir, { recursive: true });
  await writeSafetensors(
    join(outDir, "model.safetensors"),
    [...weights].map(([name, t]) => ({
      name,
      dtype: "F32" as const,
      shape: t.shape,
      data: t.data,
    })),
    { format: "pt" },
  );
  await fsp.writeFile(join(outDir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  const size = parsed.vision.imageSize;
  await fsp.writeFile(
    join(outDir, "preprocessor_config.json"),
    JSON.stringify(
      {
        do_convert_rgb: true,
        do_normalize: true,
        do_rescale: true,
        do_resize: true,
        image_mean: [0.48145466, 0.4578275, 0.40821073],
        image_processor_type: "BlipImageProcessor",
        image_std: [0.26862954, 0.26130258, 0.27577711],
        processor_class: "BlipProcessor",
        resample: 3,
        rescale_factor: 1 / 255,
        size: { height: size, width: size },
      },
      null,
      2,
    ) + "\n",
  );
  // Special tokens: the config's ids, then the first free ids for the others.
  const t = parsed.text;
  const special: Record<number, string> = {
    [t.padTokenId]: "[PAD]",
    [t.sepTokenId]: "[SEP]",
    [t.bosTokenId]: "[DEC]",
  };
  let free = 1;
  for (const token of ["[UNK]", "[CLS]", "[MASK]", "[ENC]"]) {
    while (special[free] !== undefined) free++;
    special[free] = token;
  }
  await fsp.writeFile(join(outDir, "vocab.txt"), vocabulary(t.vocabSize, special));
  const tokens = {
    additional_special_tokens: ["[ENC]"],
    bos_token: "[DEC]",
    cls_token: "[CLS]",
    mask_token: "[MASK]",
    pad_token: "[PAD]",
    sep_token: "[SEP]",
    unk_token: "[UNK]",
  };
  await fsp.writeFile(
    join(outDir, "special_tokens_map.json"),
    JSON.stringify(tokens, null, 2) + "\n",
  );
  await fsp.writeFile(
    join(outDir, "tokenizer_config.json"),
    JSON.stringify(
      {
        ...tokens,
        clean_up_tokenization_spaces: true,
        do_basic_tokenize: true,
        do_lower_case: true,
        model_max_length: 512,
        processor_class: "BlipProcessor",
        tokenizer_class: "BertTokenizer",
      },
      null,
      2,
    ) + "\n",
  );
}
