/**
 * Which model an original-LDM single-file checkpoint holds, and the Diffusers configs that
 * describe it, from tensor names and shapes only (never from values), like sd.cpp's
 * `detect_from_weights`. An LDM inference YAML, when given, supplies what shapes cannot tell
 * (head counts, sample size, v-prediction); otherwise the family defaults of Diffusers'
 * `single_file_utils.py` apply (SD 2.x is v-prediction unless global_step is 875000).
 *
 * @module
 */
import { LDM_PREFIX, type TextEncoderLayout } from "../model_io/key_map.ts";
import { yamlGet, type YamlMap, type YamlValue } from "./ldm_yaml.ts";

/** The families `--config` names. */
export const CHECKPOINT_CONFIGS = [
  "sd1",
  "sd2",
  "sd2-v",
  "sdxl",
  "sdxl-refiner",
  "sd1-inpaint",
] as const;
/** A `--config` value. */
export type CheckpointConfig = typeof CHECKPOINT_CONFIGS[number];

/** Base architecture, as lib/pipeline names it. */
export type BaseFamily = "sd1" | "sd2" | "sdxl" | "sdxl-refiner";

/** Names and shapes of a checkpoint (a WeightSource satisfies this). */
export interface ShapeSource {
  names(): string[];
  has(name: string): boolean;
  info(name: string): { shape: number[] };
}

/** One text encoder found in a checkpoint. */
export interface DetectedTextEncoder {
  /** Diffusers folder it becomes. */
  folder: "text_encoder" | "text_encoder_2";
  layout: TextEncoderLayout;
  /** LDM name prefix. */
  prefix: string;
}

/** What a checkpoint is. */
export interface DetectedCheckpoint {
  family: BaseFamily;
  prediction: "epsilon" | "v_prediction";
  /** UNet input channels: 4, 9 (inpainting) or 8 (InstructPix2Pix). */
  inChannels: number;
  textEncoders: DetectedTextEncoder[];
  /** True when `model_ema.*` copies of the UNet weights are present. */
  hasEma: boolean;
  /** One line for people, e.g. "SD 2.x, v-prediction, 9-channel inpainting". */
  label: string;
  /** How each undecidable choice was made (shown by the CLI). */
  notes: string[];
}

/** Options of {@linkcode detectCheckpoint}. */
export interface DetectOptions {
  /** `--config`; "auto" or absent detects. */
  config?: CheckpointConfig | "auto";
  /** `global_step` from a .ckpt, if any. */
  globalStep?: number;
  /** A parsed LDM inference YAML. */
  yaml?: YamlMap;
}

function shapeOf(src: ShapeSource, name: string): number[] | undefined {
  return src.has(name) ? src.info(name).shape : undefined;
}

function need(src: ShapeSource, name: string, what: string): number[] {
  const s = shapeOf(src, name);
  if (s === undefined) {
    throw new RangeError(`Cannot read the checkpoint's ${what}: "${name}" is missing`);
  }
  return s;
}

function indices(src: ShapeSource, pattern: RegExp): number[] {
  const found = new Set<number>();
  for (const n of src.names()) {
    const m = pattern.exec(n);
    if (m) found.add(Number(m[1]));
  }
  return [...found].sort((a, b) => a - b);
}

function hasPrefix(src: ShapeSource, prefix: string): boolean {
  return src.names().some((n) => n.startsWith(prefix));
}

const FAMILY_LABEL: Record<BaseFamily, string> = {
  sd1: "SD 1.x",
  sd2: "SD 2.x",
  sdxl: "SDXL base",
  "sdxl-refiner": "SDXL refiner",
};

/**
 * Detects the family from names and shapes: text-encoder layout (CLIP `transformer.` vs
 * OpenCLIP `model.`, SDXL `conditioner.embedders`), UNet input channels (9 inpainting, 8
 * InstructPix2Pix) and the prediction type (YAML `parameterization`, a `v_pred` key, SD 2.x's
 * global_step rule). `config` overrides the family but must agree with the key layout.
 */
export function detectCheckpoint(
  src: ShapeSource,
  options: DetectOptions = {},
): DetectedCheckpoint {
  const notes: string[] = [];
  const u = LDM_PREFIX.unet;
  const convIn = need(src, `${u}input_blocks.0.0.weight`, "UNet (is this a full SD checkpoint?)");
  const inChannels = convIn[1] ?? 4;

  // 1. Family from the text-encoder layout.
  let family: BaseFamily;
  const textEncoders: DetectedTextEncoder[] = [];
  if (hasPrefix(src, LDM_PREFIX.sdxlText2)) {
    family = "sdxl";
    textEncoders.push({ folder: "text_encoder", layout: "clip", prefix: LDM_PREFIX.sdxlText });
    textEncoders.push({
      folder: "text_encoder_2",
      layout: "openclip",
      prefix: LDM_PREFIX.sdxlText2,
    });
  } else if (hasPrefix(src, LDM_PREFIX.refinerText2)) {
    family = "sdxl-refiner";
    textEncoders.push({
      folder: "text_encoder_2",
      layout: "openclip",
      prefix: LDM_PREFIX.refinerText2,
    });
  } else if (hasPrefix(src, LDM_PREFIX.sd2Text)) {
    family = "sd2";
    textEncoders.push({ folder: "text_encoder", layout: "openclip", prefix: LDM_PREFIX.sd2Text });
  } else if (hasPrefix(src, LDM_PREFIX.sd1Text)) {
    family = "sd1";
    textEncoders.push({ folder: "text_encoder", layout: "clip", prefix: LDM_PREFIX.sd1Text });
  } else {
    throw new RangeError(
      "Cannot convert the checkpoint: it has no text encoder (no cond_stage_model.* or " +
        "conditioner.embedders.* keys); only full SD 1.x / 2.x / SDXL checkpoints are supported",
    );
  }
  if (!hasPrefix(src, LDM_PREFIX.vae)) {
    throw new RangeError(
      "Cannot convert the checkpoint: it has no VAE (no first_stage_model.* keys); " +
        "pass --vae FILE with a VAE checkpoint",
    );
  }

  // 2. Prediction type.
  const yaml = options.yaml ?? {};
  const parameterization = yamlGet(yaml, "model.params.parameterization");
  // SGM (SDXL-style) configs name the v-prediction scaling class instead.
  const scaling = yamlGet(yaml, "model.params.denoiser_config.params.scaling_config.target");
  let prediction: "epsilon" | "v_prediction" = "epsilon";
  if (parameterization === "v") {
    prediction = "v_prediction";
    notes.push('v-prediction: the YAML sets parameterization "v"');
  } else if (typeof scaling === "string" && /VScaling/.test(scaling)) {
    prediction = "v_prediction";
    notes.push(`v-prediction: the YAML's denoiser uses ${scaling}`);
  } else if (typeof parameterization === "string" || typeof scaling === "string") {
    notes.push(`epsilon prediction: the YAML sets ${parameterization ?? scaling}`);
  } else if (src.has("v_pred")) {
    prediction = "v_prediction";
    notes.push('v-prediction: the checkpoint has a "v_pred" key');
  } else if (family === "sd2" && inChannels === 9) {
    notes.push("epsilon prediction: SD 2.x inpainting models are epsilon, as in Diffusers");
  } else if (family === "sd2") {
    if (options.globalStep === 875000) {
      notes.push("epsilon prediction: SD 2.x with global_step 875000 (the 512-base model)");
    } else {
      prediction = "v_prediction";
      notes.push(
        "v-prediction: SD 2.x checkpoints are v-prediction unless they are the 512-base model; " +
          "pass --config sd2 for epsilon",
      );
    }
  }

  // 3. --config override, checked against the layout.
  const config = options.config ?? "auto";
  if (config !== "auto") {
    const wanted: BaseFamily = config === "sd1-inpaint"
      ? "sd1"
      : config === "sd2-v"
      ? "sd2"
      : config as BaseFamily;
    if (wanted !== family) {
      throw new RangeError(
        `Cannot use --config ${config}: the checkpoint's keys are those of ${
          FAMILY_LABEL[family]
        }; pass --config auto`,
      );
    }
    if (config === "sd1-inpaint" && inChannels !== 9) {
      throw new RangeError(
        `Cannot use --config sd1-inpaint: the UNet takes ${inChannels} input channels, not 9`,
      );
    }
    if (config === "sd2") prediction = "epsilon";
    if (config === "sd2-v") prediction = "v_prediction";
    if (config === "sd2" || config === "sd2-v") {
      notes.push(`prediction type from --config ${config}`);
    }
  }

  const parts = [FAMILY_LABEL[family], prediction === "v_prediction" ? "v-prediction" : "epsilon"];
  if (inChannels === 9) parts.push("9-channel inpainting");
  else if (inChannels === 8) parts.push("8-channel InstructPix2Pix");
  else if (inChannels !== 4) parts.push(`${inChannels} input channels`);
  const hasEma = src.names().some((n) => n.startsWith("model_ema.diffusion_model"));
  return { family, prediction, inChannels, textEncoders, hasEma, label: parts.join(", "), notes };
}

// ---------------------------------------------------------------------------------------------
// config synthesis

/** Diffusers configs for a checkpoint, as config.json objects (snake_case). */
export interface SynthesizedConfigs {
  unet: Record<string, unknown>;
  vae: Record<string, unknown>;
  textEncoder?: Record<string, unknown>;
  textEncoder2?: Record<string, unknown>;
  scheduler: Record<string, unknown>;
  /** model_index.json entries beyond the components. */
  index: Record<string, unknown>;
}

function num(v: YamlValue | undefined): number | undefined {
  return typeof v === "number" ? v : undefined;
}

function countLayers(src: ShapeSource, prefix: string, what: string): number {
  const found = indices(src, new RegExp(`^${escape(prefix)}(\\d+)\\.`));
  if (found.length === 0) throw new RangeError(`Cannot read the checkpoint's ${what}: no layers`);
  return found[found.length - 1]! + 1;
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Heads of a CLIP / OpenCLIP text tower: width / 64 for every released model. */
function textHeads(width: number, fallback: number, notes: string[], what: string): number {
  if (width % 64 === 0) return width / 64;
  const heads = width % fallback === 0 ? fallback : 1;
  notes.push(
    `${what}: width ${width} is not a multiple of 64; guessed ${heads} attention heads ` +
      "(the UNet's count)",
  );
  return heads;
}

function clipTextConfig(
  src: ShapeSource,
  prefix: string,
  fallbackHeads: number,
  notes: string[],
): Record<string, unknown> {
  let p = `${prefix}text_model.`;
  if (!src.has(`${p}embeddings.token_embedding.weight`)) p = prefix; // pre-"text_model" layout
  const [vocab, width] = need(src, `${p}embeddings.token_embedding.weight`, "text encoder");
  const [positions] = need(src, `${p}embeddings.position_embedding.weight`, "text encoder");
  const layers = countLayers(src, `${p}encoder.layers.`, "text encoder");
  const [ff] = need(src, `${p}encoder.layers.0.mlp.fc1.weight`, "text encoder");
  return {
    architectures: ["CLIPTextModel"],
    hidden_act: "quick_gelu",
    hidden_size: width,
    intermediate_size: ff,
    max_position_embeddings: positions,
    num_attention_heads: textHeads(width!, fallbackHeads, notes, "text encoder"),
    num_hidden_layers: layers,
    pad_token_id: 49407,
    projection_dim: 768,
    vocab_size: vocab,
  };
}

function openClipTextConfig(
  src: ShapeSource,
  prefix: string,
  withProjection: boolean,
  family: BaseFamily,
  fallbackHeads: number,
  notes: string[],
): Record<string, unknown> {
  const [vocab, width] = need(src, `${prefix}token_embedding.weight`, "OpenCLIP text encoder");
  const [positions] = need(src, `${prefix}positional_embedding`, "OpenCLIP text encoder");
  let layers = countLayers(src, `${prefix}transformer.resblocks.`, "OpenCLIP text encoder");
  const [ff] = need(src, `${prefix}transformer.resblocks.0.mlp.c_fc.weight`, "OpenCLIP");
  if (family === "sd2" && layers === 24 && width === 1024) {
    // SD 2.x conditions on the penultimate layer; its Diffusers text_encoder has 23 layers.
    layers = 23;
    notes.push("SD 2.x text encoder: 23 of the 24 OpenCLIP layers are used, as in Diffusers");
  }
  const config: Record<string, unknown> = {
    architectures: [withProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel"],
    hidden_act: "gelu",
    hidden_size: width,
    intermediate_size: ff,
    max_position_embeddings: positions,
    num_attention_heads: textHeads(width!, fallbackHeads, notes, "OpenCLIP text encoder"),
    num_hidden_layers: layers,
    pad_token_id: 1,
    projection_dim: 512,
    vocab_size: vocab,
  };
  if (withProjection) {
    const proj = need(src, `${prefix}text_projection`, "OpenCLIP text projection");
    config.projection_dim = proj[1];
  }
  return config;
}

const SCHEDULER_COMMON = {
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  trained_betas: null,
};

/**
 * Diffusers configs for a detected checkpoint: UNet block layout, widths, layers, attention
 * and SDXL's added embedding from shapes; head counts, sample size and noise schedule from the
 * YAML where given, else the family's released values.
 */
export function synthesizeConfigs(
  src: ShapeSource,
  detected: DetectedCheckpoint,
  yaml: YamlMap = {},
): SynthesizedConfigs {
  const notes = detected.notes;
  const family = detected.family;
  const u = LDM_PREFIX.unet;
  // LDM configs call the UNet unet_config; SGM (SDXL) configs call it network_config.
  const unetYaml = yamlGet(yaml, "model.params.unet_config.params") ??
    yamlGet(yaml, "model.params.network_config.params") ?? {};

  // 1. UNet blocks: downsamplers split input_blocks into blocks.
  const total = countLayers(src, `${u}input_blocks.`, "UNet");
  const ops = indices(src, new RegExp(`^${escape(u)}input_blocks\\.(\\d+)\\.0\\.op\\.weight$`));
  const bounds = [0, ...ops, total];
  const layersPerBlock: number[] = [];
  const blockOut: number[] = [];
  const downAttn: boolean[] = [];
  const depth: number[] = [];
  let crossDim: number | undefined;
  let linear = false;
  for (let i = 0; i + 1 < bounds.length; i++) {
    const first = bounds[i]! + 1;
    const layers = bounds[i + 1]! - first;
    if (layers < 1) throw new RangeError("Cannot read the checkpoint's UNet: an empty block");
    layersPerBlock.push(layers);
    blockOut.push(need(src, `${u}input_blocks.${first}.0.out_layers.3.weight`, "UNet")[0]!);
    const attn = `${u}input_blocks.${first}.1.`;
    const proj = shapeOf(src, `${attn}proj_in.weight`);
    downAttn.push(proj !== undefined);
    if (proj !== undefined) {
      linear = proj.length === 2;
      crossDim ??= need(src, `${attn}transformer_blocks.0.attn2.to_k.weight`, "UNet")[1];
      depth.push(countLayers(src, `${attn}transformer_blocks.`, "UNet"));
    } else {
      depth.push(1);
    }
  }
  const upAttn: boolean[] = [];
  let at = 0;
  for (const layers of [...layersPerBlock].reverse()) {
    upAttn.push(src.has(`${u}output_blocks.${at}.1.proj_in.weight`));
    at += layers + 1;
  }
  const midAttn = src.has(`${u}middle_block.1.proj_in.weight`);
  if (crossDim === undefined && midAttn) {
    crossDim = need(src, `${u}middle_block.1.transformer_blocks.0.attn2.to_k.weight`, "UNet")[1];
  }
  const sameLayers = layersPerBlock.every((l) => l === layersPerBlock[0]);
  const sameDepth = depth.every((d) => d === depth[0]);

  // 2. Heads: YAML num_heads / num_head_channels, else SD 1.x's 8 heads or 64-wide heads.
  let heads: number | number[];
  const numHeads = num(yamlGet(unetYaml, "num_heads"));
  const headChannels = num(yamlGet(unetYaml, "num_head_channels"));
  if (headChannels !== undefined && headChannels > 0) {
    heads = blockOut.map((c) => c / headChannels);
  } else if (numHeads !== undefined && numHeads > 0) {
    heads = numHeads;
  } else if (family === "sd1") {
    heads = 8;
  } else {
    heads = blockOut.map((c) => c / 64);
    notes.push("UNet heads: 64 channels per head (SD 2.x / SDXL)");
  }
  const headList = Array.isArray(heads) ? heads : [heads];
  if (headList.some((h) => !Number.isInteger(h) || h < 1)) {
    throw new RangeError(
      `Cannot work out the UNet's attention heads for widths [${blockOut.join(", ")}]; ` +
        "pass --original-config with the checkpoint's LDM inference YAML, or --config-from " +
        "a Diffusers folder of the same architecture",
    );
  }

  const isXl = family === "sdxl" || family === "sdxl-refiner";
  const imageSize = num(yamlGet(unetYaml, "image_size"));
  const defaultSample = isXl
    ? 128
    : family === "sd2" && detected.prediction === "v_prediction"
    ? 96
    : 64;
  const sampleSize = imageSize ?? defaultSample;
  if (imageSize === undefined) {
    notes.push(`sample size ${sampleSize} (${sampleSize * 8} px), the family default`);
  }
  const [timeEmbedDim] = need(src, `${u}time_embed.0.weight`, "UNet");
  const unet: Record<string, unknown> = {
    sample_size: sampleSize,
    in_channels: detected.inChannels,
    out_channels: need(src, `${u}out.2.weight`, "UNet")[0],
    down_block_types: downAttn.map((a) => a ? "CrossAttnDownBlock2D" : "DownBlock2D"),
    up_block_types: upAttn.map((a) => a ? "CrossAttnUpBlock2D" : "UpBlock2D"),
    mid_block_type: midAttn ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D",
    block_out_channels: blockOut,
    layers_per_block: sameLayers ? layersPerBlock[0] : layersPerBlock,
    transformer_layers_per_block: sameDepth ? depth[0] : depth,
    cross_attention_dim: crossDim ?? 768,
    attention_head_dim: heads,
    use_linear_projection: linear,
    upcast_attention: family === "sd2" && detected.prediction === "v_prediction",
  };
  if (timeEmbedDim !== blockOut[0]! * 4) unet.time_embedding_dim = timeEmbedDim;

  // 3. SDXL's added text-time embedding: adm = pooled width + time ids x embed dim.
  const label = shapeOf(src, `${u}label_emb.0.0.weight`);
  if (label !== undefined) {
    const adm = label[1]!;
    const te2 = detected.textEncoders.find((t) => t.folder === "text_encoder_2");
    const pooled = te2 === undefined
      ? undefined
      : need(src, `${te2.prefix}text_projection`, "OpenCLIP text projection")[1];
    const ids = family === "sdxl-refiner" ? 5 : 6;
    const timeDim = pooled === undefined ? undefined : (adm - pooled) / ids;
    if (timeDim === undefined || !Number.isInteger(timeDim) || timeDim < 1) {
      throw new RangeError(
        `Cannot work out SDXL's time embedding: adm_in_channels ${adm} does not fit ` +
          `${ids} time ids and pooled width ${pooled}`,
      );
    }
    unet.addition_embed_type = "text_time";
    unet.addition_time_embed_dim = timeDim;
    unet.projection_class_embeddings_input_dim = adm;
  }

  // 4. VAE.
  const v = LDM_PREFIX.vae;
  const vaeBlocks = countLayers(src, `${v}encoder.down.`, "VAE");
  const vaeLayers = countLayers(src, `${v}encoder.down.0.block.`, "VAE");
  const vaeOut: number[] = [];
  for (let i = 0; i < vaeBlocks; i++) {
    vaeOut.push(need(src, `${v}encoder.down.${i}.block.0.conv1.weight`, "VAE")[0]!);
  }
  const scaleFactor = num(yamlGet(yaml, "model.params.scale_factor")) ??
    (isXl ? 0.13025 : 0.18215);
  const vae: Record<string, unknown> = {
    in_channels: need(src, `${v}encoder.conv_in.weight`, "VAE")[1],
    out_channels: need(src, `${v}decoder.conv_out.weight`, "VAE")[0],
    down_block_types: Array(vaeBlocks).fill("DownEncoderBlock2D"),
    up_block_types: Array(vaeBlocks).fill("UpDecoderBlock2D"),
    block_out_channels: vaeOut,
    layers_per_block: vaeLayers,
    latent_channels: need(src, `${v}decoder.conv_in.weight`, "VAE")[1],
    norm_num_groups: 32,
    sample_size: sampleSize * 2 ** (vaeBlocks - 1),
    scaling_factor: scaleFactor,
  };
  if (!src.has(`${v}quant_conv.weight`)) vae.use_quant_conv = false;
  if (!src.has(`${v}post_quant_conv.weight`)) vae.use_post_quant_conv = false;
  if (!src.has(`${v}encoder.mid.attn_1.q.weight`)) vae.mid_block_add_attention = false;

  // 5. Text encoders.
  const out: SynthesizedConfigs = { unet, vae, scheduler: {}, index: {} };
  for (const te of detected.textEncoders) {
    const config = te.layout === "clip"
      ? clipTextConfig(src, te.prefix, headList[0]!, notes)
      : openClipTextConfig(
        src,
        te.prefix,
        te.folder === "text_encoder_2",
        family,
        headList[0]!,
        notes,
      );
    if (te.folder === "text_encoder") out.textEncoder = config;
    else out.textEncoder2 = config;
  }

  // 6. Scheduler and pipeline class.
  out.scheduler = schedulerFor(detected, yaml);
  out.index = pipelineIndexFor(detected);
  return out;
}

/** The family's released scheduler config, with the YAML's noise schedule. */
export function schedulerFor(
  detected: Pick<DetectedCheckpoint, "family" | "prediction">,
  yaml: YamlMap = {},
): Record<string, unknown> {
  const params = yamlGet(yaml, "model.params") ?? {};
  const schedule = {
    ...SCHEDULER_COMMON,
    beta_start: num(yamlGet(params, "linear_start")) ?? SCHEDULER_COMMON.beta_start,
    beta_end: num(yamlGet(params, "linear_end")) ?? SCHEDULER_COMMON.beta_end,
    num_train_timesteps: num(yamlGet(params, "timesteps")) ?? 1000,
    prediction_type: detected.prediction,
  };
  if (detected.family === "sdxl" || detected.family === "sdxl-refiner") {
    return {
      _class_name: "EulerDiscreteScheduler",
      ...schedule,
      interpolation_type: "linear",
      sample_max_value: 1.0,
      use_karras_sigmas: false,
    };
  }
  if (detected.family === "sd2") return { _class_name: "DDIMScheduler", ...schedule };
  return { _class_name: "PNDMScheduler", ...schedule };
}

/** model_index.json's pipeline class and flags for a detected checkpoint. */
export function pipelineIndexFor(
  detected: Pick<DetectedCheckpoint, "family" | "inChannels">,
): Record<string, unknown> {
  const inpaint = detected.inChannels === 9;
  if (detected.family === "sdxl") {
    return {
      _class_name: inpaint ? "StableDiffusionXLInpaintPipeline" : "StableDiffusionXLPipeline",
      force_zeros_for_empty_prompt: true,
    };
  }
  if (detected.family === "sdxl-refiner") {
    return {
      _class_name: "StableDiffusionXLImg2ImgPipeline",
      force_zeros_for_empty_prompt: false,
      requires_aesthetics_score: true,
    };
  }
  return {
    _class_name: inpaint
      ? "StableDiffusionInpaintPipeline"
      : detected.inChannels === 8
      ? "StableDiffusionInstructPix2PixPipeline"
      : "StableDiffusionPipeline",
    requires_safety_checker: false,
  };
}
