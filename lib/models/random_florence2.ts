/**
 * A tiny random Florence-2 ONNX export in the `onnx-community/Florence-2-*` layout, for tests
 * and benchmarks: `config.json`, `generation_config.json`, `preprocessor_config.json`,
 * `tokenizer.json` (+ `tokenizer_config.json`) and `onnx/{vision_encoder, embed_tokens,
 * encoder_model, decoder_model_merged}.onnx` with the exports' input and output names, element
 * types and shapes (see lib/caption/florence2.ts). Inside, each graph is a small transformer of
 * the same kind (a patch projection plus a pooled token, token embeddings, a masked encoder
 * layer, decoder layers with a self-attention cache, cross-attention to the encoder and an LM
 * head); the weights are random, so captions are nonsense.
 *
 * The merged decoder takes `use_cache_branch` like the real one; its encoder caches are the
 * fed ones when they hold the whole source (the cached branch) and the ones computed from
 * `encoder_hidden_states` when empty (the first step), which is what the real graph's two
 * branches return.
 *
 * @module
 */
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { GraphBuilder, type OnnxModel, type Value } from "../onnx/graph.ts";
import { writeModel } from "../onnx/model_file.ts";
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

/** Sizes of a random Florence-2 export. */
export interface RandomFlorence2Config {
  /** Width of every token (`d_model`). */
  dModel: number;
  /** Attention heads. */
  heads: number;
  /** Decoder layers (the encoder has one). */
  decoderLayers: number;
  /** Image side (the processor resizes to it). */
  imageSize: number;
  /** Patch side: `(imageSize / patch)^2 + 1` image tokens (the real export: 576 + 1). */
  patchSize: number;
  /** Learned positions. */
  maxPositions: number;
}

/** Tiny sizes for tests: 16 wide, 2 heads, 2 decoder layers, 32 px images, 5 image tokens. */
export const TINY_FLORENCE2: Readonly<RandomFlorence2Config> = {
  dModel: 16,
  heads: 2,
  decoderLayers: 2,
  imageSize: 32,
  patchSize: 16,
  maxPositions: 256,
};

/** Words merged into single tokens by the tiny tokenizer (the task sentences' words). */
const WORDS = [
  "What",
  "Ġdoes",
  "Ġthe",
  "Ġimage",
  "Ġdescribe",
  "Describe",
  "Ġin",
  "Ġdetail",
  "Ġwhat",
  "Ġis",
  "Ġshown",
  "Ġwith",
  "Ġa",
  "Ġparagraph",
  "ĠA",
  "Ġcat",
  "Ġdog",
  "Ġon",
];

const SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"];

function visionEncoder(c: RandomFlorence2Config, seed: number): OnnxModel {
  const g = new GraphBuilder("vision_encoder", { opset: 17 });
  const p = new RandomParams(g, seed);
  const d = c.dModel;
  const s = c.imageSize;
  const tokens = (s / c.patchSize) ** 2 + 1;
  const pixels = g.input("pixel_values", "float32", ["batch_size", 3, s, s]);
  // [b, 3, s, s] -> [b, d, s/p, s/p] -> [b, (s/p)^2, d]
  const patches = g.op("Conv", [
    pixels,
    p.tensor("patch.weight", [d, 3, c.patchSize, c.patchSize], 1 / Math.sqrt(3 * c.patchSize ** 2)),
    p.tensor("patch.bias", [d], 0.02),
  ], { strides: [c.patchSize, c.patchSize] });
  const flat = g.op("Transpose", [g.op("Reshape", [patches, g.ints([0, d, -1])])], {
    perm: [0, 2, 1],
  });
  // The pooled token, as the real encoder's temporal average: [b, 1, d].
  const pooled = g.op("ReduceMean", [flat], { axes: [1], keepdims: 1 });
  const all = g.op("Concat", [flat, pooled], { axis: 1 });
  const features = norm(g, p, "projection.norm", dense(g, p, "projection", all, d, d), d);
  g.output(features, "image_features", "float32", ["batch_size", tokens, d]);
  return g.build();
}

function embedTokens(c: RandomFlorence2Config, vocab: number, seed: number): OnnxModel {
  const g = new GraphBuilder("embed_tokens", { opset: 17 });
  const p = new RandomParams(g, seed);
  const ids = g.input("input_ids", "int64", ["batch_size", "sequence_length"]);
  const table = p.tensor("shared.weight", [vocab, c.dModel], 1);
  g.output(
    g.op("Gather", [table, ids], { axis: 0 }),
    "inputs_embeds",
    "float32",
    ["batch_size", "sequence_length", c.dModel],
  );
  return g.build();
}

function encoderModel(c: RandomFlorence2Config, seed: number): OnnxModel {
  const g = new GraphBuilder("encoder_model", { opset: 17 });
  const p = new RandomParams(g, seed);
  const d = c.dModel;
  const hd = d / c.heads;
  const x = g.input("inputs_embeds", "float32", ["batch_size", "encoder_sequence_length", d]);
  const mask = g.input("attention_mask", "int64", ["batch_size", "encoder_sequence_length"]);
  const length = g.op("Squeeze", [dim(g, x, 1), g.ints([0])]);
  const positions = g.op("Range", [
    g.constant(BigInt64Array.of(0n), "int64", []),
    length,
    g.constant(BigInt64Array.of(1n), "int64", []),
  ]);
  const posTable = p.tensor("encoder.embed_positions.weight", [c.maxPositions, d], 0.5);
  let h = norm(
    g,
    p,
    "encoder.layernorm_embedding",
    g.op("Add", [x, g.op("Gather", [posTable, positions])]),
    d,
  );
  const [q, k, v] = ["q", "k", "v"].map((n) =>
    splitHeads(g, dense(g, p, `encoder.layers.0.self_attn.${n}_proj`, h, d, d), c.heads, hd)
  );
  const context = mergeHeads(g, attend(g, q!, k!, v!, hd, paddingMask(g, mask)), d);
  h = norm(
    g,
    p,
    "encoder.layers.0.self_attn_layer_norm",
    g.op("Add", [h, dense(g, p, "encoder.layers.0.self_attn.out_proj", context, d, d)]),
    d,
  );
  h = feedForward(g, p, "encoder.layers.0.ffn", h, d);
  g.output(h, "last_hidden_state", "float32", ["batch_size", "encoder_sequence_length", d]);
  return g.build();
}

function decoderMerged(c: RandomFlorence2Config, vocab: number, seed: number): OnnxModel {
  const g = new GraphBuilder("decoder_model_merged", { opset: 17 });
  const p = new RandomParams(g, seed);
  const d = c.dModel;
  const hd = d / c.heads;
  const encoderMask = g.input("encoder_attention_mask", "int64", [
    "batch_size",
    "encoder_sequence_length",
  ]);
  const encoderStates = g.input("encoder_hidden_states", "float32", [
    "batch_size",
    "encoder_sequence_length",
    d,
  ]);
  const x = g.input("inputs_embeds", "float32", ["batch_size", "decoder_sequence_length", d]);
  const past: Array<Record<string, Value>> = [];
  for (let i = 0; i < c.decoderLayers; i++) {
    const layer: Record<string, Value> = {};
    for (const part of ["decoder.key", "decoder.value", "encoder.key", "encoder.value"]) {
      const length = part.startsWith("decoder")
        ? "past_decoder_sequence_length"
        : "encoder_sequence_length_out";
      layer[part] = g.input(`past_key_values.${i}.${part}`, "float32", [
        "batch_size",
        c.heads,
        length,
        hd,
      ]);
    }
    past.push(layer);
  }
  g.input("use_cache_branch", "bool", [1]);
  const newLength = dim(g, x, 1);
  const pastLength = dim(g, past[0]!["decoder.key"]!, 2);
  const sourceLength = dim(g, encoderStates, 1);
  const start = g.op("Squeeze", [pastLength, g.ints([0])]);
  const end = g.op("Squeeze", [g.op("Add", [pastLength, newLength]), g.ints([0])]);
  const positions = g.op("Range", [start, end, g.constant(BigInt64Array.of(1n), "int64", [])]);
  const posTable = p.tensor("decoder.embed_positions.weight", [c.maxPositions, d], 0.5);
  let h = norm(
    g,
    p,
    "decoder.layernorm_embedding",
    g.op("Add", [x, g.op("Gather", [posTable, positions])]),
    d,
  );
  const selfMask = causalMask(g, pastLength, newLength);
  const crossMask = paddingMask(g, encoderMask);
  for (let i = 0; i < c.decoderLayers; i++) {
    const l = `decoder.layers.${i}`;
    // Self-attention with the cache.
    const [q, k, v] = ["q", "k", "v"].map((n) =>
      splitHeads(g, dense(g, p, `${l}.self_attn.${n}_proj`, h, d, d), c.heads, hd)
    );
    const keys = g.op("Concat", [past[i]!["decoder.key"]!, k!], { axis: 2 });
    const values = g.op("Concat", [past[i]!["decoder.value"]!, v!], { axis: 2 });
    g.output(keys, `present.${i}.decoder.key`, "float32", [
      "batch_size",
      c.heads,
      "past_decoder_sequence_length + 1",
      hd,
    ]);
    g.output(values, `present.${i}.decoder.value`, "float32", [
      "batch_size",
      c.heads,
      "past_decoder_sequence_length + 1",
      hd,
    ]);
    const selfContext = mergeHeads(g, attend(g, q!, keys, values, hd, selfMask), d);
    h = norm(
      g,
      p,
      `${l}.self_attn_layer_norm`,
      g.op("Add", [h, dense(g, p, `${l}.self_attn.out_proj`, selfContext, d, d)]),
      d,
    );
    // Cross-attention: the fed encoder cache when it holds the source, else computed.
    const cross: Value[] = [];
    for (const [kind, name] of [["k", "encoder.key"], ["v", "encoder.value"]] as const) {
      const computed = splitHeads(
        g,
        dense(g, p, `${l}.encoder_attn.${kind}_proj`, encoderStates, d, d),
        c.heads,
        hd,
      );
      const joined = g.op("Concat", [past[i]![name]!, computed], { axis: 2 });
      const chosen = g.op("Slice", [joined, g.ints([0]), sourceLength, g.ints([2])]);
      g.output(chosen, `present.${i}.${name}`, "float32", [
        "batch_size",
        c.heads,
        "encoder_sequence_length_out",
        hd,
      ]);
      cross.push(chosen);
    }
    const cq = splitHeads(g, dense(g, p, `${l}.encoder_attn.q_proj`, h, d, d), c.heads, hd);
    const crossContext = mergeHeads(g, attend(g, cq, cross[0]!, cross[1]!, hd, crossMask), d);
    h = norm(
      g,
      p,
      `${l}.encoder_attn_layer_norm`,
      g.op("Add", [h, dense(g, p, `${l}.encoder_attn.out_proj`, crossContext, d, d)]),
      d,
    );
    h = feedForward(g, p, `${l}.ffn`, h, d);
  }
  // Logits spread wide enough that searches make different choices.
  const logits = g.op("MatMul", [h, p.tensor("lm_head.weight", [d, vocab], 2)]);
  g.output(logits, "logits", "float32", ["batch_size", "decoder_sequence_length", vocab]);
  return g.build();
}

/** Options of {@linkcode createRandomFlorence2}. */
export interface CreateRandomFlorence2Options {
  /** Sizes (default {@linkcode TINY_FLORENCE2}). */
  config?: RandomFlorence2Config;
  /** Seed of the weights (default 0). */
  seed?: number;
  /** generation_config.json (default: Florence-2's beam settings with `max_length` 12). */
  generationConfig?: Record<string, unknown>;
}

/**
 * Writes a random Florence-2 export folder to `outDir`.
 *
 * @example
 * ```ts ignore
 * await createRandomFlorence2("/tmp/florence2-tiny");
 * const model = await Florence2CaptionModel.load("/tmp/florence2-tiny");
 * ```
 */
export async function createRandomFlorence2(
  outDir: string,
  options: CreateRandomFlorence2Options = {},
): Promise<void> {
  const c = options.config ?? TINY_FLORENCE2;
  const seed = options.seed ?? 0;
  const tokenizer = byteLevelTokenizerJson({
    specials: SPECIALS,
    template: "roberta",
    words: WORDS,
  });
  const vocab = Object.keys((tokenizer["model"] as { vocab: object }).vocab).length;
  await fsp.mkdir(join(outDir, "onnx"), { recursive: true });
  const write = (name: string, model: OnnxModel) =>
    writeModel(model, join(outDir, "onnx", `${name}.onnx`), { inlineLimit: 2 ** 30 });
  await write("vision_encoder", visionEncoder(c, seed));
  await write("embed_tokens", embedTokens(c, vocab, seed + 1));
  await write("encoder_model", encoderModel(c, seed + 2));
  await write("decoder_model_merged", decoderMerged(c, vocab, seed + 3));
  const json = (name: string, value: unknown) =>
    fsp.writeFile(join(outDir, name), JSON.stringify(value, null, 2) + "\n");
  await json("config.json", {
    architectures: ["Florence2ForConditionalGeneration"],
    model_type: "florence2",
    bos_token_id: 0,
    eos_token_id: 2,
    pad_token_id: 1,
    vocab_size: vocab,
    text_config: {
      model_type: "florence2_language",
      d_model: c.dModel,
      decoder_attention_heads: c.heads,
      encoder_attention_heads: c.heads,
      decoder_layers: c.decoderLayers,
      encoder_layers: 1,
      vocab_size: vocab,
      bos_token_id: 0,
      eos_token_id: 2,
      pad_token_id: 1,
      decoder_start_token_id: 2,
      forced_bos_token_id: 0,
      forced_eos_token_id: 2,
      no_repeat_ngram_size: 3,
      num_beams: 3,
      early_stopping: true,
      max_position_embeddings: c.maxPositions,
    },
    vision_config: { model_type: "davit" },
  });
  await json(
    "generation_config.json",
    options.generationConfig ?? {
      bos_token_id: 0,
      decoder_start_token_id: 2,
      early_stopping: true,
      eos_token_id: 2,
      forced_bos_token_id: 0,
      forced_eos_token_id: 2,
      max_length: 12,
      no_repeat_ngram_size: 3,
      num_beams: 3,
      pad_token_id: 1,
    },
  );
  await json("preprocessor_config.json", {
    do_center_crop: false,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.485, 0.456, 0.406],
    image_processor_type: "CLIPImageProcessor",
    image_seq_length: (c.imageSize / c.patchSize) ** 2 + 1,
    image_std: [0.229, 0.224, 0.225],
    processor_class: "Florence2Processor",
    resample: 3,
    rescale_factor: 1 / 255,
    size: { height: c.imageSize, width: c.imageSize },
  });
  await json("tokenizer.json", tokenizer);
  await json("tokenizer_config.json", {
    bos_token: "<s>",
    eos_token: "</s>",
    pad_token: "<pad>",
    unk_token: "<unk>",
    clean_up_tokenization_spaces: true,
    model_max_length: 1024,
    tokenizer_class: "BartTokenizer",
  });
}
