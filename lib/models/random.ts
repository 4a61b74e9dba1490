/**
 * Random-weight models in the Diffusers folder layout, made from the same configs the builders
 * read: the test suite's tiny models and `denoise models create-random`. Parameter names and
 * shapes come from the builders themselves ({@linkcode collectParameterShapes}), so a random
 * model always loads; configs are written with Diffusers 0.27's defaults filled in, sorted as
 * `ConfigMixin.to_json_string` writes them.
 *
 * @module
 */
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { writeSafetensors } from "../weights/safetensors.ts";
import { parseUnetConfig, parseVaeConfig } from "./config.ts";
import { collectParameterShapes } from "./layers.ts";
import { buildUnet } from "./unet.ts";
import { buildControlnet } from "./controlnet.ts";
import { parseControlnetConfig } from "./controlnet_config.ts";
import { buildVaeDecoder, buildVaeEncoder } from "./vae.ts";

const DIFFUSERS_VERSION = "0.27.2";
const TRANSFORMERS_VERSION = "4.30.2";

/** UNet2DConditionModel.__init__ defaults of Diffusers 0.27 (unet_2d_condition.py). */
export const UNET_DEFAULTS: Readonly<Record<string, unknown>> = {
  act_fn: "silu",
  addition_embed_type: null,
  addition_embed_type_num_heads: 64,
  addition_time_embed_dim: null,
  attention_head_dim: 8,
  attention_type: "default",
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  class_embed_type: null,
  class_embeddings_concat: false,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  cross_attention_dim: 1280,
  cross_attention_norm: null,
  down_block_types: [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ],
  downsample_padding: 1,
  dropout: 0.0,
  dual_cross_attention: false,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_only_cross_attention: null,
  mid_block_scale_factor: 1,
  mid_block_type: "UNetMidBlock2DCrossAttn",
  norm_eps: 1e-5,
  norm_num_groups: 32,
  num_attention_heads: null,
  num_class_embeds: null,
  only_cross_attention: false,
  out_channels: 4,
  projection_class_embeddings_input_dim: null,
  resnet_out_scale_factor: 1.0,
  resnet_skip_time_act: false,
  resnet_time_scale_shift: "default",
  reverse_transformer_layers_per_block: null,
  sample_size: null,
  time_cond_proj_dim: null,
  time_embedding_act_fn: null,
  time_embedding_dim: null,
  time_embedding_type: "positional",
  timestep_post_act: null,
  transformer_layers_per_block: 1,
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  upcast_attention: false,
  use_linear_projection: false,
};

/** ControlNetModel.__init__ defaults of Diffusers 0.27 (controlnet.py). */
export const CONTROLNET_DEFAULTS: Readonly<Record<string, unknown>> = {
  act_fn: "silu",
  addition_embed_type: null,
  addition_embed_type_num_heads: 64,
  addition_time_embed_dim: null,
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  class_embed_type: null,
  conditioning_channels: 3,
  conditioning_embedding_out_channels: [16, 32, 96, 256],
  controlnet_conditioning_channel_order: "rgb",
  cross_attention_dim: 1280,
  down_block_types: [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ],
  downsample_padding: 1,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  flip_sin_to_cos: true,
  freq_shift: 0,
  global_pool_conditions: false,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  mid_block_type: "UNetMidBlock2DCrossAttn",
  norm_eps: 1e-5,
  norm_num_groups: 32,
  num_attention_heads: null,
  num_class_embeds: null,
  only_cross_attention: false,
  projection_class_embeddings_input_dim: null,
  resnet_time_scale_shift: "default",
  transformer_layers_per_block: 1,
  upcast_attention: false,
  use_linear_projection: false,
};

/** AutoencoderKL.__init__ defaults of Diffusers 0.27 (autoencoder_kl.py). */
export const VAE_DEFAULTS: Readonly<Record<string, unknown>> = {
  act_fn: "silu",
  block_out_channels: [64],
  down_block_types: ["DownEncoderBlock2D"],
  force_upcast: true,
  in_channels: 3,
  latent_channels: 4,
  latents_mean: null,
  latents_std: null,
  layers_per_block: 1,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 32,
  scaling_factor: 0.18215,
  up_block_types: ["UpDecoderBlock2D"],
};

/** CLIPTextConfig defaults of transformers 4.30 (configuration_clip.py). */
export const CLIP_TEXT_DEFAULTS: Readonly<Record<string, unknown>> = {
  attention_dropout: 0.0,
  bos_token_id: 49406,
  eos_token_id: 49407,
  hidden_act: "quick_gelu",
  hidden_size: 512,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 2048,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 8,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 512,
  torch_dtype: "float32",
  transformers_version: TRANSFORMERS_VERSION,
  vocab_size: 49408,
};

function sortedJson(value: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) sorted[k] = value[k];
  return JSON.stringify(sorted, null, 2) + "\n";
}

function asObject(json: unknown, what: string): Record<string, unknown> {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`Cannot use the ${what} config: expected a JSON object`);
  }
  return json as Record<string, unknown>;
}

/** A UNet config as Diffusers writes it: defaults filled in, `_class_name` and version added. */
export function fullUnetConfig(json: unknown): Record<string, unknown> {
  return {
    _class_name: "UNet2DConditionModel",
    _diffusers_version: DIFFUSERS_VERSION,
    ...UNET_DEFAULTS,
    ...withoutPrivate(asObject(json, "UNet")),
  };
}

/** A ControlNet config as Diffusers writes it: defaults filled in, `_class_name` added. */
export function fullControlnetConfig(json: unknown): Record<string, unknown> {
  return {
    _class_name: "ControlNetModel",
    _diffusers_version: DIFFUSERS_VERSION,
    ...CONTROLNET_DEFAULTS,
    ...withoutPrivate(asObject(json, "ControlNet")),
  };
}

/** A VAE config as Diffusers writes it. */
export function fullVaeConfig(json: unknown): Record<string, unknown> {
  return {
    _class_name: "AutoencoderKL",
    _diffusers_version: DIFFUSERS_VERSION,
    ...VAE_DEFAULTS,
    ...withoutPrivate(asObject(json, "VAE")),
  };
}

/** A CLIP text config as transformers writes it; `withProjection` for SDXL's second encoder. */
export function fullClipTextConfig(
  json: unknown,
  withProjection: boolean,
): Record<string, unknown> {
  return {
    architectures: [withProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel"],
    ...CLIP_TEXT_DEFAULTS,
    ...asObject(json, "text encoder"),
  };
}

function withoutPrivate(c: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(c).filter(([k]) => !k.startsWith("_")));
}

/** Names and shapes of a UNet's weights, exactly as {@linkcode buildUnet} reads them. */
export function unetParameterShapes(json: unknown): Map<string, number[]> {
  const config = parseUnetConfig(json);
  return collectParameterShapes(() => buildUnet(config, new Map()));
}

/** Names and shapes of a ControlNet's weights, exactly as {@linkcode buildControlnet} reads them. */
export function controlnetParameterShapes(json: unknown): Map<string, number[]> {
  const config = parseControlnetConfig(json);
  return collectParameterShapes(() => buildControlnet(config, new Map()));
}

/** Names and shapes of an AutoencoderKL's weights (encoder, decoder and both quant convs). */
export function vaeParameterShapes(json: unknown): Map<string, number[]> {
  const config = parseVaeConfig(json);
  const shapes = collectParameterShapes(() => buildVaeEncoder(config, new Map()));
  for (const [k, v] of collectParameterShapes(() => buildVaeDecoder(config, new Map()))) {
    shapes.set(k, v);
  }
  return shapes;
}

/**
 * Names and shapes of a transformers CLIPTextModel (or CLIPTextModelWithProjection) state dict
 * (modeling_clip.py), without the `position_ids` buffer.
 */
export function clipTextParameterShapes(
  json: unknown,
  withProjection: boolean,
): Map<string, number[]> {
  const c = fullClipTextConfig(json, withProjection);
  const int = (k: string) => {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new RangeError(`Cannot use the text encoder config: "${k}" must be a positive integer`);
    }
    return v;
  };
  const d = int("hidden_size");
  const ff = int("intermediate_size");
  const shapes = new Map<string, number[]>();
  const p = "text_model";
  shapes.set(`${p}.embeddings.token_embedding.weight`, [int("vocab_size"), d]);
  shapes.set(`${p}.embeddings.position_embedding.weight`, [int("max_position_embeddings"), d]);
  for (let i = 0; i < int("num_hidden_layers"); i++) {
    const l = `${p}.encoder.layers.${i}`;
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      shapes.set(`${l}.self_attn.${proj}.weight`, [d, d]);
      shapes.set(`${l}.self_attn.${proj}.bias`, [d]);
    }
    for (const norm of ["layer_norm1", "layer_norm2"]) {
      shapes.set(`${l}.${norm}.weight`, [d]);
      shapes.set(`${l}.${norm}.bias`, [d]);
    }
    shapes.set(`${l}.mlp.fc1.weight`, [ff, d]);
    shapes.set(`${l}.mlp.fc1.bias`, [ff]);
    shapes.set(`${l}.mlp.fc2.weight`, [d, ff]);
    shapes.set(`${l}.mlp.fc2.bias`, [d]);
  }
  shapes.set(`${p}.final_layer_norm.weight`, [d]);
  shapes.set(`${p}.final_layer_norm.bias`, [d]);
  if (withProjection) shapes.set("text_projection.weight", [int("projection_dim"), d]);
  return shapes;
}

/** A float32 tensor in memory. */
export interface RandomTensor {
  shape: number[];
  data: Float32Array;
}

/**
 * Random values for each named shape, drawn in name order from torch's CPU generator seeded
 * with `seed`: matrices and kernels `randn / sqrt(fan_in)`, normalisation scales
 * `1 + 0.1 * randn`, biases and other vectors `0.1 * randn`. Sized so activations stay O(1)
 * through deep stacks (the point is a model that runs, not one that was trained).
 *
 * @example
 * ```ts
 * import { randomWeights } from "./random.ts";
 * const w = randomWeights(new Map([["fc.weight", [2, 4]], ["fc.bias", [2]]]), 0);
 * console.assert(w.get("fc.weight")!.data.length === 8);
 * ```
 */
export function randomWeights(
  shapes: ReadonlyMap<string, readonly number[]>,
  seed: number,
): Map<string, RandomTensor> {
  const gen = new TorchCpuGenerator(seed);
  const out = new Map<string, RandomTensor>();
  for (const name of [...shapes.keys()].sort()) {
    const shape = [...shapes.get(name)!];
    const data = gen.randn(shape);
    if (shape.length >= 2) {
      const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
      const scale = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < data.length; i++) data[i] = data[i]! * scale;
    } else {
      const isScale = name.endsWith(".weight");
      for (let i = 0; i < data.length; i++) data[i] = (isScale ? 1 : 0) + 0.1 * data[i]!;
    }
    out.set(name, { shape, data });
  }
  return out;
}

/** Configs of a random model: Diffusers/transformers `config.json` objects. */
export interface RandomModelConfigs {
  unet: unknown;
  vae: unknown;
  /** CLIPTextModel config; omit for no text encoder. */
  textEncoder?: unknown;
  /** CLIPTextModelWithProjection config (SDXL's second encoder). */
  textEncoder2?: unknown;
  /** scheduler_config.json (default: SD 1.5's PNDM config). */
  scheduler?: unknown;
}

/** Options of {@linkcode createRandomModel}. */
export interface CreateRandomModelOptions {
  /** Seed of torch's CPU generator (default 0); each component draws from `seed + index`. */
  seed?: number;
  /** A folder with vocab.json, merges.txt, ... copied to tokenizer/ (and tokenizer_2/). */
  tokenizerDir?: string;
}

const SD15_SCHEDULER = {
  _class_name: "PNDMScheduler",
  _diffusers_version: DIFFUSERS_VERSION,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  trained_betas: null,
};

async function writeComponent(
  dir: string,
  configName: string,
  config: Record<string, unknown>,
  weightsName: string,
  weights: Map<string, RandomTensor>,
  extra: Array<{ name: string; dtype: "I64"; shape: number[]; data: Uint8Array }> = [],
): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(join(dir, configName), sortedJson(config));
  const tensors = [
    ...[...weights].map(([name, t]) => ({
      name,
      dtype: "F32" as const,
      shape: t.shape,
      data: t.data,
    })),
    ...extra,
  ];
  await writeSafetensors(join(dir, weightsName), tensors, { format: "pt" });
}

function positionIds(n: number) {
  const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
  return {
    name: "text_model.embeddings.position_ids",
    dtype: "I64" as const,
    shape: [1, n],
    data: new Uint8Array(ids.buffer),
  };
}

/**
 * Writes a complete Diffusers-layout model with random weights to `outDir`: model_index.json,
 * unet/, vae/, text_encoder/ (and text_encoder_2/ for SDXL), tokenizer/ copied from
 * `tokenizerDir` when given, scheduler/. Every weight has the layout the builders read.
 *
 * @example
 * ```ts ignore
 * await createRandomModel({ unet: { block_out_channels: [32, 64], ... }, vae: { ... } },
 *   "/tmp/tiny", { seed: 0 });
 * ```
 */
export async function createRandomModel(
  configs: RandomModelConfigs,
  outDir: string,
  options: CreateRandomModelOptions = {},
): Promise<void> {
  const seed = options.seed ?? 0;
  const unetConfig = fullUnetConfig(configs.unet);
  const vaeConfig = fullVaeConfig(configs.vae);
  const isXl = unetConfig["addition_embed_type"] === "text_time";
  await fsp.mkdir(outDir, { recursive: true });

  // 1. Denoiser and autoencoder
  await writeComponent(
    join(outDir, "unet"),
    "config.json",
    unetConfig,
    "diffusion_pytorch_model.safetensors",
    randomWeights(unetParameterShapes(unetConfig), seed),
  );
  await writeComponent(
    join(outDir, "vae"),
    "config.json",
    vaeConfig,
    "diffusion_pytorch_model.safetensors",
    randomWeights(vaeParameterShapes(vaeConfig), seed + 1),
  );

  // 2. Text encoders and tokenizers
  const index: Record<string, unknown> = {
    _class_name: isXl ? "StableDiffusionXLPipeline" : "StableDiffusionPipeline",
    _diffusers_version: DIFFUSERS_VERSION,
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
  };
  const encoders: Array<[string, unknown, boolean, number]> = [];
  if (configs.textEncoder !== undefined) encoders.push(["", configs.textEncoder, false, 2]);
  if (configs.textEncoder2 !== undefined) encoders.push(["_2", configs.textEncoder2, true, 3]);
  for (const [suffix, json, withProjection, offset] of encoders) {
    const config = fullClipTextConfig(json, withProjection);
    const shapes = clipTextParameterShapes(config, withProjection);
    await writeComponent(
      join(outDir, `text_encoder${suffix}`),
      "config.json",
      config,
      "model.safetensors",
      randomWeights(shapes, seed + offset),
      [positionIds(config["max_position_embeddings"] as number)],
    );
    index[`text_encoder${suffix}`] = [
      "transformers",
      withProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel",
    ];
    if (options.tokenizerDir !== undefined) {
      await fsp.cp(options.tokenizerDir, join(outDir, `tokenizer${suffix}`), { recursive: true });
      index[`tokenizer${suffix}`] = ["transformers", "CLIPTokenizer"];
    } else {
      index[`tokenizer${suffix}`] = [null, null];
    }
  }
  if (encoders.length === 0) {
    index["text_encoder"] = [null, null];
    index["tokenizer"] = [null, null];
  }

  // 3. Scheduler and index
  const scheduler: Record<string, unknown> = configs.scheduler === undefined
    ? SD15_SCHEDULER
    : { _diffusers_version: DIFFUSERS_VERSION, ...asObject(configs.scheduler, "scheduler") };
  const schedulerClass = scheduler["_class_name"];
  if (typeof schedulerClass !== "string") {
    throw new RangeError(`Cannot write the scheduler config: "_class_name" must name a class`);
  }
  await fsp.mkdir(join(outDir, "scheduler"), { recursive: true });
  await fsp.writeFile(join(outDir, "scheduler", "scheduler_config.json"), sortedJson(scheduler));
  index["scheduler"] = ["diffusers", schedulerClass];
  if (!isXl) {
    index["safety_checker"] = [null, null];
    index["feature_extractor"] = [null, null];
    index["requires_safety_checker"] = false;
  }
  index["image_encoder"] = [null, null];
  await fsp.writeFile(join(outDir, "model_index.json"), sortedJson(index));
}

/**
 * Writes a Diffusers-layout ControlNet folder with random weights to `outDir` (config.json and
 * diffusion_pytorch_model.safetensors): `json` is a ControlNetModel config, completed with
 * Diffusers' defaults. Weights are drawn as {@linkcode randomWeights} draws them, so the zero
 * convs are not zero and the net changes a UNet's output.
 *
 * @example
 * ```ts ignore
 * await createRandomControlnet({ block_out_channels: [32, 32, 32, 64], cross_attention_dim: 32,
 *   layers_per_block: 1, conditioning_embedding_out_channels: [8, 16, 16, 32] }, "/tmp/cn");
 * ```
 */
export async function createRandomControlnet(
  json: unknown,
  outDir: string,
  options: { seed?: number } = {},
): Promise<void> {
  const config = fullControlnetConfig(json);
  await writeComponent(
    outDir,
    "config.json",
    config,
    "diffusion_pytorch_model.safetensors",
    randomWeights(controlnetParameterShapes(config), options.seed ?? 0),
  );
}
