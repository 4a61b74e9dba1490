/**
 * A tiny random LLaVA ONNX export in the layout transformers.js reads for
 * `LlavaForConditionalGeneration` (see lib/caption/llava.ts), for tests and benchmarks:
 * `config.json` (`model_type: "llava"`, a Llama `text_config`), `generation_config.json`,
 * `preprocessor_config.json` (CLIPImageProcessor with a shortest-edge resize and a centre crop),
 * `tokenizer.json` (byte-level BPE with `<s>` first and an `<image>` token) and
 * `onnx/{vision_encoder, embed_tokens, decoder_model_merged}.onnx` with the exports' input and
 * output names, element types and shapes. Inside: a patch projection and a two-layer projector,
 * token embeddings, and decoder layers with learned positions (from `position_ids`), causal and
 * padding masks (from `attention_mask`), a key/value cache and an LM head. Random weights.
 *
 * @module
 */
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { GraphBuilder, type OnnxModel, type Value } from "../onnx/graph.ts";
import { writeModel } from "../onnx/model_file.ts";
import { gelu } from "./layers.ts";
import {
  attend,
  causalMask,
  dense,
  dim,
  feedForward,
  mergeHeads,
  norm,
  paddingMask,
  RandomParams,
  splitHeads,
} from "./random_export_layers.ts";
import { byteLevelTokenizerJson } from "./random_tokenizer.ts";

/** Sizes of a random LLaVA export. */
export interface RandomLlavaConfig {
  /** The LLM's width. */
  hiddenSize: number;
  /** The vision tower's width (before the projector). */
  visionSize: number;
  /** Attention heads (= key/value heads). */
  heads: number;
  /** Decoder layers. */
  layers: number;
  /** Image side after the processor's crop. */
  imageSize: number;
  /** Patch side: `(imageSize / patch)^2` image tokens. */
  patchSize: number;
  /** Learned positions. */
  maxPositions: number;
}

/** Tiny sizes for tests: 16 wide, 2 heads, 2 layers, 32 px crops, 16 image tokens. */
export const TINY_LLAVA: Readonly<RandomLlavaConfig> = {
  hiddenSize: 16,
  visionSize: 12,
  heads: 2,
  layers: 2,
  imageSize: 32,
  patchSize: 8,
  maxPositions: 512,
};

const WORDS = [
  "USER",
  "ĠASSISTANT",
  "Write",
  "Ġa",
  "Ġone",
  "Ġcaption",
  "Ġfor",
  "Ġthis",
  "Ġimage",
  "Describe",
  "Ġin",
  "Ġdetail",
  "Ġcat",
  "Ġdog",
];

function visionEncoder(c: RandomLlavaConfig, seed: number): OnnxModel {
  const g = new GraphBuilder("vision_encoder", { opset: 17 });
  const p = new RandomParams(g, seed);
  const s = c.imageSize;
  const v = c.visionSize;
  const pixels = g.input("pixel_values", "float32", ["batch_size", 3, s, s]);
  const patches = g.op("Conv", [
    pixels,
    p.tensor(
      "vision_tower.patch_embedding.weight",
      [v, 3, c.patchSize, c.patchSize],
      1 / Math.sqrt(3 * c.patchSize ** 2),
    ),
    p.tensor("vision_tower.patch_embedding.bias", [v], 0.02),
  ], { strides: [c.patchSize, c.patchSize] });
  // [b, v, s/p, s/p] -> [b, tokens, v]
  const tokens = g.op("Transpose", [g.op("Reshape", [patches, g.ints([0, v, -1])])], {
    perm: [0, 2, 1],
  });
  const normed = norm(g, p, "vision_tower.post_layernorm", tokens, v);
  // multi_modal_projector: linear_1, GELU, linear_2
  const projected = dense(
    g,
    p,
    "multi_modal_projector.linear_2",
    gelu(g, dense(g, p, "multi_modal_projector.linear_1", normed, v, c.hiddenSize)),
    c.hiddenSize,
    c.hiddenSize,
  );
  g.output(projected, "image_features", "float32", [
    "batch_size",
    (s / c.patchSize) ** 2,
    c.hiddenSize,
  ]);
  return g.build();
}

function embedTokens(c: RandomLlavaConfig, vocab: number, seed: number): OnnxModel {
  const g = new GraphBuilder("embed_tokens", { opset: 17 });
  const p = new RandomParams(g, seed);
  const ids = g.input("input_ids", "int64", ["batch_size", "sequence_length"]);
  const table = p.tensor("embed_tokens.weight", [vocab, c.hiddenSize], 1);
  g.output(g.op("Gather", [table, ids], { axis: 0 }), "inputs_embeds", "float32", [
    "batch_size",
    "sequence_length",
    c.hiddenSize,
  ]);
  return g.build();
}

function decoderMerged(c: RandomLlavaConfig, vocab: number, seed: number): OnnxModel {
  const g = new GraphBuilder("decoder_model_merged", { opset: 17 });
  const p = new RandomParams(g, seed);
  const d = c.hiddenSize;
  const hd = d / c.heads;
  const x = g.input("inputs_embeds", "float32", ["batch_size", "sequence_length", d]);
  const mask = g.input("attention_mask", "int64", ["batch_size", "total_sequence_length"]);
  const positionIds = g.input("position_ids", "int64", ["batch_size", "sequence_length"]);
  const past: Array<{ key: Value; value: Value }> = [];
  for (let i = 0; i < c.layers; i++) {
    const shape = ["batch_size", c.heads, "past_sequence_length", hd];
    past.push({
      key: g.input(`past_key_values.${i}.key`, "float32", shape),
      value: g.input(`past_key_values.${i}.value`, "float32", shape),
    });
  }
  const posTable = p.tensor("model.embed_positions.weight", [c.maxPositions, d], 0.5);
  let h = g.op("Add", [x, g.op("Gather", [posTable, positionIds], { axis: 0 })]);
  const pastLength = dim(g, past[0]!.key, 2);
  const newLength = dim(g, x, 1);
  // [new, total] + [b, 1, 1, total] -> [b, 1, new, total]
  const fullMask = g.op("Add", [causalMask(g, pastLength, newLength), paddingMask(g, mask)]);
  for (let i = 0; i < c.layers; i++) {
    const l = `model.layers.${i}`;
    const normed = norm(g, p, `${l}.input_layernorm`, h, d);
    const [q, k, v] = ["q", "k", "v"].map((n) =>
      splitHeads(g, dense(g, p, `${l}.self_attn.${n}_proj`, normed, d, d), c.heads, hd)
    );
    const keys = g.op("Concat", [past[i]!.key, k!], { axis: 2 });
    const values = g.op("Concat", [past[i]!.value, v!], { axis: 2 });
    const presentShape = ["batch_size", c.heads, "total_sequence_length", hd];
    g.output(keys, `present.${i}.key`, "float32", presentShape);
    g.output(values, `present.${i}.value`, "float32", presentShape);
    const context = mergeHeads(g, attend(g, q!, keys, values, hd, fullMask), d);
    h = g.op("Add", [h, dense(g, p, `${l}.self_attn.o_proj`, context, d, d)]);
    h = feedForward(g, p, `${l}.mlp`, h, d);
  }
  const logits = g.op("MatMul", [
    norm(g, p, "model.norm", h, d),
    p.tensor("lm_head.weight", [d, vocab], 2),
  ]);
  g.output(logits, "logits", "float32", ["batch_size", "sequence_length", vocab]);
  return g.build();
}

/** Options of {@linkcode createRandomLlava}. */
export interface CreateRandomLlavaOptions {
  /** Sizes (default {@linkcode TINY_LLAVA}). */
  config?: RandomLlavaConfig;
  /** Seed of the weights (default 0). */
  seed?: number;
  /** generation_config.json (default LLaVA-1.5's: BOS 1, EOS 2, no length). */
  generationConfig?: Record<string, unknown>;
}

/**
 * Writes a random LLaVA export folder to `outDir`.
 *
 * @example
 * ```ts ignore
 * await createRandomLlava("/tmp/llava-tiny");
 * const model = await LlavaCaptionModel.load("/tmp/llava-tiny");
 * ```
 */
export async function createRandomLlava(
  outDir: string,
  options: CreateRandomLlavaOptions = {},
): Promise<void> {
  const c = options.config ?? TINY_LLAVA;
  const seed = options.seed ?? 0;
  const tokenizer = byteLevelTokenizerJson({
    specials: ["<unk>", "<s>", "</s>"],
    bos: "<s>",
    eos: "</s>",
    template: "bos",
    words: WORDS,
    added: ["<image>", "<pad>"],
  });
  const vocabMap = (tokenizer["model"] as { vocab: Record<string, number> }).vocab;
  const vocab = Object.keys(vocabMap).length;
  await fsp.mkdir(join(outDir, "onnx"), { recursive: true });
  const write = (name: string, model: OnnxModel) =>
    writeModel(model, join(outDir, "onnx", `${name}.onnx`), { inlineLimit: 2 ** 30 });
  await write("vision_encoder", visionEncoder(c, seed));
  await write("embed_tokens", embedTokens(c, vocab, seed + 1));
  await write("decoder_model_merged", decoderMerged(c, vocab, seed + 2));
  const json = (name: string, value: unknown) =>
    fsp.writeFile(join(outDir, name), JSON.stringify(value, null, 2) + "\n");
  await json("config.json", {
    architectures: ["LlavaForConditionalGeneration"],
    model_type: "llava",
    image_token_index: vocabMap["<image>"],
    pad_token_id: vocabMap["<pad>"],
    projector_hidden_act: "gelu",
    vision_feature_layer: -2,
    vision_feature_select_strategy: "default",
    text_config: {
      model_type: "llama",
      hidden_size: c.hiddenSize,
      num_attention_heads: c.heads,
      num_key_value_heads: c.heads,
      num_hidden_layers: c.layers,
      max_position_embeddings: c.maxPositions,
      vocab_size: vocab,
      bos_token_id: 1,
      eos_token_id: 2,
    },
    vision_config: {
      model_type: "clip_vision_model",
      hidden_size: c.visionSize,
      image_size: c.imageSize,
      patch_size: c.patchSize,
    },
    vocab_size: vocab,
  });
  await json(
    "generation_config.json",
    options.generationConfig ?? {
      bos_token_id: 1,
      eos_token_id: 2,
      pad_token_id: vocabMap["<pad>"],
    },
  );
  await json("preprocessor_config.json", {
    crop_size: { height: c.imageSize, width: c.imageSize },
    do_center_crop: true,
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_processor_type: "CLIPImageProcessor",
    image_std: [0.26862954, 0.26130258, 0.27577711],
    processor_class: "LlavaProcessor",
    resample: 3,
    rescale_factor: 1 / 255,
    size: { shortest_edge: c.imageSize },
  });
  await json("tokenizer.json", tokenizer);
  await json("tokenizer_config.json", {
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: "<pad>",
    clean_up_tokenization_spaces: false,
    model_max_length: 4096,
    tokenizer_class: "LlamaTokenizer",
  });
}
