/**
 * Opening a captioning model folder whatever its family, and resolving `--model` (a folder or
 * an alias from models.lock.json) to one. The family comes from config.json's `model_type`:
 * `blip` (a transformers BlipForConditionalGeneration folder, graphs built from its weights),
 * `florence2` (a Florence-2 ONNX export), `llava` (a LLaVA ONNX export). Anything else — a
 * Stable Diffusion folder, a BLIP for question answering, a BERT — is refused in one line with
 * a {@linkcode ModelNotFoundError} (exit 4): no captioning model is at that path.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { ModelNotFoundError, UsageError } from "../errors.ts";
import { lockedModel, modelDir, type ModelsLock, modelStatus } from "../hub/mod.ts";
import type { AttentionKernel } from "../models/layers.ts";
import type { SessionOptions } from "../onnx/session.ts";
import { BlipCaptionModel } from "./blip.ts";
import type { CaptionModel } from "./caption_model.ts";
import { Florence2CaptionModel } from "./florence2.ts";
import { LlavaCaptionModel } from "./llava.ts";
import { readOptionalJson } from "./onnx_export.ts";

/** The captioning families denoise reads. */
export type CaptionFamily = "blip" | "florence2" | "llava";

/** Options of {@linkcode loadCaptionModel}. */
export interface LoadCaptionModelOptions {
  /** ORT session options (threads, execution provider). */
  session?: SessionOptions;
  /** Folder for BLIP's built graphs (see `BlipCaptionModel.load`). */
  cacheDir?: string;
  /** BLIP's attention kernel (default fused). */
  attention?: AttentionKernel;
}

const SUPPORTED = "a BLIP captioning folder (Salesforce/blip-image-captioning-base), a " +
  "Florence-2 ONNX export (onnx-community/Florence-2-base) or a LLaVA ONNX export";

function notCaptioning(dir: string, what: string): ModelNotFoundError {
  return new ModelNotFoundError(`"${dir}" is ${what}, not a captioning model`, {
    hint: `pass ${SUPPORTED}`,
  });
}

/**
 * The family of the captioning model in `dir`, from its config.json; a
 * {@linkcode ModelNotFoundError} names what the folder is instead.
 *
 * @example
 * ```ts ignore
 * await captionFamily("Florence-2-base"); // "florence2"
 * ```
 */
export async function captionFamily(dir: string): Promise<CaptionFamily> {
  const config = await readOptionalJson(dir, "config.json");
  if (config === undefined) {
    if (existsSync(join(dir, "model_index.json"))) {
      throw notCaptioning(dir, "a Diffusers pipeline folder (model_index.json)");
    }
    throw new ModelNotFoundError(`Cannot find "${join(dir, "config.json")}"`, {
      hint: `pass ${SUPPORTED}`,
    });
  }
  const type = config["model_type"];
  const archs = Array.isArray(config["architectures"]) ? config["architectures"] as string[] : [];
  const named = archs.length > 0 ? archs.join(", ") : JSON.stringify(type ?? config["_class_name"]);
  if (type === "blip") {
    if (archs.length > 0 && !archs.includes("BlipForConditionalGeneration")) {
      throw notCaptioning(dir, `a ${named} model`);
    }
    return "blip";
  }
  if (type === "florence2") return "florence2";
  if (type === "llava") return "llava";
  throw notCaptioning(dir, `a ${named} model`);
}

/**
 * Loads the captioning model in `dir` (see {@linkcode captionFamily}).
 *
 * @example
 * ```ts ignore
 * const model = await loadCaptionModel("Florence-2-base", { session: { threads: 4 } });
 * ```
 */
export async function loadCaptionModel(
  dir: string,
  options: LoadCaptionModelOptions = {},
): Promise<CaptionModel> {
  const family = await captionFamily(dir);
  const session = options.session === undefined ? {} : { session: options.session };
  switch (family) {
    case "blip":
      return await BlipCaptionModel.load(dir, {
        ...session,
        ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
        ...(options.attention === undefined ? {} : { attention: options.attention }),
      });
    case "florence2":
      return await Florence2CaptionModel.load(dir, session);
    case "llava":
      return await LlavaCaptionModel.load(dir, session);
  }
}

/** Where aliases are looked up and pulled models live. */
export interface CaptionModelEnvironment {
  /** Cache root (`<cacheDir>/models/<alias>/<revision>`). */
  cacheDir: string;
  /** Model aliases. */
  lock?: ModelsLock | undefined;
}

/**
 * Resolves `--model`: an existing folder, or an alias from the lock that has been pulled.
 *
 * @example
 * ```ts ignore
 * await resolveCaptionModel("blip-base", { cacheDir, lock }); // ".../models/blip-base/<rev>"
 * ```
 */
export async function resolveCaptionModel(
  spec: string | undefined,
  env: CaptionModelEnvironment,
): Promise<string> {
  if (spec === undefined || spec === "") {
    throw new UsageError("No model given", {
      hint: "pass --model FOLDER or --model ALIAS (e.g. blip-base; see denoise models list)",
    });
  }
  if (existsSync(spec)) {
    if (!statSync(spec).isDirectory()) {
      throw new UsageError(`"--model ${spec}" is a file; a captioning model is a folder`, {
        hint: `pass ${SUPPORTED}`,
      });
    }
    return resolve(spec);
  }
  if (env.lock?.models[spec] !== undefined) {
    const model = lockedModel(env.lock, spec);
    const status = await modelStatus(env.cacheDir, spec, model);
    if (status.some((s) => !s.present)) {
      throw new ModelNotFoundError(`Model "${spec}" is not downloaded`, {
        hint: `run "denoise models pull ${spec}"`,
      });
    }
    return modelDir(env.cacheDir, spec, model);
  }
  throw new ModelNotFoundError(`Model "${spec}" is neither a folder nor a known alias`, {
    hint: "pass a model folder, or an alias from denoise models list (blip-base, blip-large)",
  });
}
