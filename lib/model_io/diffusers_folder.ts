/**
 * Opening a Stable Diffusion model in Diffusers folder layout: model_index.json, the component
 * configs, the weight files, and the family (SD 1.x, SD 2.x, SDXL, refiner, inpainting) detected
 * from config shapes, never from data.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { InputError, ModelNotFoundError } from "../errors.ts";
import { type ClipTextConfig, parseClipTextConfig } from "../models/clip_text.ts";
import {
  parseUnetConfig,
  parseVaeConfig,
  type UnetConfig,
  type VaeConfig,
} from "../models/config.ts";

/** Model families, with their defaults. */
export type ModelFamily = "sd1" | "sd2" | "sdxl" | "sdxl-refiner";

/** A component's config and weight file. */
export interface ComponentFiles<C> {
  /** Folder of the component. */
  dir: string;
  /** Parsed config. */
  config: C;
  /** The raw config JSON (for metadata and cache keys). */
  rawConfig: Record<string, unknown>;
  /** The .safetensors weight file (the `model.onnx` graph in an ONNX export). */
  weights: string;
}

/**
 * The graphs of an Optimum-layout ONNX export (`unet/model.onnx`, ...), run as they are: no
 * build, no cache, weights baked in.
 */
export interface OnnxGraphs {
  unet: string;
  /** Absent when another VAE replaced the export's (that one is built from its weights). */
  vaeDecoder?: string;
  /** Absent in exports without an encoder (no img2img then). */
  vaeEncoder?: string;
  textEncoder?: string;
  textEncoder2?: string;
}

/** An opened Diffusers-layout model: what exists and how it is configured. */
export interface DiffusersModel {
  /** Absolute folder path. */
  dir: string;
  /** Detected family. */
  family: ModelFamily;
  /** True for 9-channel inpainting UNets. */
  inpainting: boolean;
  /** The pipeline class named by model_index.json. */
  pipelineClass: string;
  unet: ComponentFiles<UnetConfig>;
  vae: ComponentFiles<VaeConfig>;
  /** Absent for the SDXL refiner. */
  textEncoder?: ComponentFiles<ClipTextConfig>;
  /** SDXL's second text encoder (with projection). */
  textEncoder2?: ComponentFiles<ClipTextConfig>;
  /** tokenizer/ folder. */
  tokenizerDir?: string;
  /** tokenizer_2/ folder. */
  tokenizer2Dir?: string;
  /** scheduler/scheduler_config.json, raw. */
  schedulerConfig: Record<string, unknown>;
  /** model_index.json `force_zeros_for_empty_prompt` (SDXL). */
  forceZerosForEmptyPrompt: boolean;
  /** model_index.json `requires_aesthetics_score` (SDXL refiner). */
  requiresAestheticsScore: boolean;
  /** Set for an Optimum-layout ONNX export: the graphs to run instead of building them. */
  onnx?: OnnxGraphs;
}

const WEIGHT_NAMES: Record<string, string[]> = {
  unet: ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
  vae: ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
  text_encoder: ["model.safetensors", "model.fp16.safetensors"],
  text_encoder_2: ["model.safetensors", "model.fp16.safetensors"],
};

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ModelNotFoundError(`Cannot open the model: ${what} "${path}" does not exist`, {
        hint: "pass a Diffusers folder (with model_index.json) or a model alias",
      });
    }
    throw error;
  }
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new SyntaxError("not a JSON object");
    }
    return value as Record<string, unknown>;
  } catch (error) {
    throw new InputError(`Cannot open the model: ${what} "${path}" is not valid JSON`, {
      cause: error,
    });
  }
}

function weightFile(dir: string, component: string): string {
  for (const name of WEIGHT_NAMES[component] ?? []) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  const bin = ["diffusion_pytorch_model.bin", "pytorch_model.bin"].find((n) =>
    existsSync(join(dir, n))
  );
  throw new ModelNotFoundError(
    `Cannot open the model: ${dir} has no ${(WEIGHT_NAMES[component] ?? []).join(" or ")}`,
    {
      hint: bin
        ? `only ${bin} is there; convert it with "denoise convert-ckpt" or download the .safetensors`
        : "the download may be incomplete; pull the model again",
    },
  );
}

async function component<C>(
  root: string,
  name: string,
  configFile: string,
  parse: (json: unknown) => C,
  graph?: string,
): Promise<ComponentFiles<C>> {
  const dir = join(root, name);
  const rawConfig = await readJson(join(dir, configFile), `the ${name} config`);
  let config: C;
  try {
    config = parse(rawConfig);
  } catch (error) {
    throw new InputError(
      `Cannot open the model: ${name}/${configFile} is not usable: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (graph !== undefined) {
    const path = join(dir, graph);
    if (!existsSync(path)) {
      throw new ModelNotFoundError(`Cannot open the ONNX model: ${name}/${graph} does not exist`, {
        hint: "the export is incomplete; export it again",
      });
    }
    return { dir, config, rawConfig, weights: path };
  }
  return { dir, config, rawConfig, weights: weightFile(dir, name) };
}

/**
 * True for an Optimum-layout ONNX export: `unet/model.onnx` and no UNet .safetensors (a
 * Diffusers folder that also carries ONNX files is opened as a Diffusers folder).
 */
export function isOnnxExport(dir: string): boolean {
  return existsSync(join(dir, "unet", "model.onnx")) &&
    !(WEIGHT_NAMES.unet ?? []).some((n) => existsSync(join(dir, "unet", n)));
}

function listed(index: Record<string, unknown>, name: string): boolean {
  const entry = index[name];
  return Array.isArray(entry) && entry[0] !== null && entry[1] !== null;
}

/**
 * Opens a Diffusers folder: reads model_index.json and the configs of unet, vae, text
 * encoder(s), tokenizer(s) and scheduler, and finds the weight files. Throws
 * {@linkcode ModelNotFoundError} naming the first missing piece. An Optimum-layout ONNX export
 * (`unet/model.onnx`, `vae_decoder/`, `vae_encoder/`, `text_encoder/model.onnx`, each with its
 * config.json) opens too, with `onnx` naming its graphs and `weights` the `model.onnx` files.
 */
export async function openDiffusersModel(path: string): Promise<DiffusersModel> {
  const dir = resolve(path);
  const index = await readJson(join(dir, "model_index.json"), "model_index.json");
  const onnx = isOnnxExport(dir);
  const graph = onnx ? "model.onnx" : undefined;
  const unet = await component(dir, "unet", "config.json", parseUnetConfig, graph);
  const vae = await component(
    dir,
    onnx ? "vae_decoder" : "vae",
    "config.json",
    parseVaeConfig,
    graph,
  );
  const model: DiffusersModel = {
    dir,
    family: "sd1",
    inpainting: unet.config.inChannels === 9,
    pipelineClass: String(index._class_name ?? "StableDiffusionPipeline"),
    unet,
    vae,
    schedulerConfig: await readJson(
      join(dir, "scheduler", "scheduler_config.json"),
      "the scheduler config",
    ),
    // Diffusers' pipeline defaults when model_index.json omits them: the SDXL text-to-image
    // pipeline zeroes empty negatives; the SDXL img2img (refiner) pipeline does not.
    forceZerosForEmptyPrompt: typeof index.force_zeros_for_empty_prompt === "boolean"
      ? index.force_zeros_for_empty_prompt
      : index._class_name === "StableDiffusionXLPipeline",
    requiresAestheticsScore: index.requires_aesthetics_score === true,
  };
  if (listed(index, "text_encoder") || existsSync(join(dir, "text_encoder"))) {
    model.textEncoder = await component(
      dir,
      "text_encoder",
      "config.json",
      parseClipTextConfig,
      graph,
    );
    model.tokenizerDir = join(dir, "tokenizer");
  }
  if (listed(index, "text_encoder_2") || existsSync(join(dir, "text_encoder_2"))) {
    model.textEncoder2 = await component(
      dir,
      "text_encoder_2",
      "config.json",
      parseClipTextConfig,
      graph,
    );
    model.tokenizer2Dir = join(dir, "tokenizer_2");
  }
  if (onnx) {
    const encoder = join(dir, "vae_encoder", "model.onnx");
    model.onnx = {
      unet: unet.weights,
      vaeDecoder: vae.weights,
      ...(existsSync(encoder) ? { vaeEncoder: encoder } : {}),
      ...(model.textEncoder ? { textEncoder: model.textEncoder.weights } : {}),
      ...(model.textEncoder2 ? { textEncoder2: model.textEncoder2.weights } : {}),
    };
  }
  model.family = detectFamily(model);
  if (model.textEncoder === undefined && model.textEncoder2 === undefined) {
    throw new ModelNotFoundError(`Cannot open the model: ${dir} has no text encoder`, {
      hint: "pass a complete Diffusers folder",
    });
  }
  for (const tok of [model.tokenizerDir, model.tokenizer2Dir]) {
    if (tok !== undefined && !existsSync(join(tok, "vocab.json"))) {
      throw new ModelNotFoundError(`Cannot open the model: ${tok} has no vocab.json`, {
        hint: "copy the tokenizer/ folder of the base model into the model folder",
      });
    }
  }
  return model;
}

/**
 * Opens a stand-alone VAE (`--vae`): a folder with config.json and the weights, or a Diffusers
 * model folder whose vae/ is used.
 */
export async function openVaeFolder(path: string): Promise<ComponentFiles<VaeConfig>> {
  const dir = resolve(path);
  if (existsSync(join(dir, "vae", "config.json"))) {
    return await component(dir, "vae", "config.json", parseVaeConfig);
  }
  const rawConfig = await readJson(join(dir, "config.json"), "the VAE config");
  let config: VaeConfig;
  try {
    config = parseVaeConfig(rawConfig);
  } catch (error) {
    throw new InputError(`Cannot use the VAE in ${dir}: ${(error as Error).message}`);
  }
  return { dir, config, rawConfig, weights: weightFile(dir, "vae") };
}

/** Detects the family from the UNet config: SDXL by its text-time embedding, SD2 by 1024-wide cross attention. */
export function detectFamily(model: Pick<DiffusersModel, "unet" | "textEncoder">): ModelFamily {
  const u = model.unet.config;
  if (u.additionEmbedType === "text_time") {
    return model.textEncoder === undefined ? "sdxl-refiner" : "sdxl";
  }
  const cross = u.crossAttentionDim[0] ?? 768;
  return cross >= 1024 ? "sd2" : "sd1";
}

/** The pixel size per latent (VAE scale factor): 2^(blocks-1). */
export function vaeFactor(model: DiffusersModel): number {
  return 2 ** (model.vae.config.blockOutChannels.length - 1);
}

/** The default image size: unet sample_size × VAE factor, as Diffusers computes it. */
export function defaultSize(model: DiffusersModel): number {
  return model.unet.config.sampleSize * vaeFactor(model);
}
