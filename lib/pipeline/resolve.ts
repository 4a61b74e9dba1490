/**
 * Resolving `--model`: a Diffusers folder, a single-file checkpoint (converted once into the
 * cache) or an alias from models.lock.json; and the model-level facts a run records (the name
 * A1111's "Model" field shows, the default guidance).
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ModelNotFoundError, UsageError } from "../errors.ts";
import { lockedModel, modelDir, type ModelsLock, modelStatus } from "../hub/mod.ts";
import { convertedModelDir } from "../convert/cached_model.ts";
import type { DiffusersModel } from "../model_io/diffusers_folder.ts";

/** Where models and built graphs live, and how sessions run. */
export interface RunEnvironment {
  /** Cache root: built graphs go to `<cacheDir>/graphs`, pulled models to `<cacheDir>/models`. */
  cacheDir: string;
  /** Model aliases. */
  lock?: ModelsLock;
  threads?: number | undefined;
  device?: "cpu" | "cuda";
  lowMemory?: boolean;
  /** denoise version, recorded in metadata. */
  version: string;
  /** CLIP tokenizer folder for single-file checkpoints (`DENOISE_TOKENIZER`). */
  tokenizerDir?: string | undefined;
  /** Largest output in pixels a run may make (default {@linkcode DEFAULT_MAX_PIXELS}). */
  maxPixels?: number;
}

/**
 * The default pixel budget of one output image: 4096 x 4096. Beyond it memory grows past what
 * most machines hold (a 16384 x 16384 run went past 8 GB on a tiny model); `--max-pixels` or
 * `DENOISE_MAX_PIXELS` raises it.
 */
export const DEFAULT_MAX_PIXELS = 4096 * 4096;

/** Resolves `--model` (a folder or an alias from the lock) to a Diffusers folder. */
export async function resolveModel(spec: string | undefined, env: RunEnvironment): Promise<string> {
  if (spec === undefined || spec === "") {
    throw new UsageError("No model given", {
      hint: "pass --model FOLDER (a Diffusers folder) or --model ALIAS (see denoise models list)",
    });
  }
  if (existsSync(spec)) {
    const stat = statSync(spec);
    if (stat.isDirectory()) return resolve(spec);
    if (/\.(safetensors|ckpt|pt|pth|bin)$/i.test(spec)) {
      // Converted once into <cacheDir>/converted/<file key>/ and reused (lib/convert).
      return await convertedModelDir(spec, {
        cacheDir: env.cacheDir,
        ...(env.tokenizerDir ? { tokenizerDir: env.tokenizerDir } : {}),
      });
    }
    throw new UsageError(`"--model ${spec}" is a file, not a model folder`);
  }
  if (env.lock && env.lock.models[spec] !== undefined) {
    const model = lockedModel(env.lock, spec);
    if (model.family === "esrgan") {
      throw new UsageError(`Model "${spec}" is an ESRGAN-family upscaler, not a diffusion model`, {
        hint: `use it with "denoise upscale --model ${spec}" or "--hires-upscaler ${spec}"`,
      });
    }
    if (model.kind === "motion-module") {
      throw new UsageError(`"${spec}" is a motion module, not a model`, {
        hint: `pass it to denoise animate as --motion-module ${spec}`,
      });
    }
    if (model.family === "controlnet") {
      throw new UsageError(`Model "${spec}" is a ControlNet, not a diffusion model`, {
        hint: `use it with "denoise controlnet --control ${spec}:IMAGE" or ` +
          `"denoise upscale --mode controlnet-tile --controlnet ${spec}"`,
      });
    }
    const status = await modelStatus(env.cacheDir, spec, model);
    if (status.some((s) => !s.present)) {
      throw new ModelNotFoundError(`Model "${spec}" is not downloaded`, {
        hint: `run "denoise models pull ${spec}"`,
      });
    }
    return modelDir(env.cacheDir, spec, model);
  }
  throw new ModelNotFoundError(`Model "${spec}" is neither a folder nor a known alias`, {
    hint: "pass a Diffusers folder, or an alias from denoise models list",
  });
}

/**
 * The model name A1111's "Model" field shows: an alias as given, a single file's stem, or the
 * folder's name (never the cache folder a single file was converted into).
 */
export function modelName(spec: string | undefined, dir: string): string {
  if (spec === undefined || spec === "") return basename(dir);
  const base = basename(spec.replace(/[\\/]+$/, ""));
  return base.replace(/\.(safetensors|ckpt|pt|pth|bin)$/i, "") || basename(dir);
}

/**
 * Default guidance scale of a model (Diffusers' pipeline defaults): 8.5 for an LCM with a
 * guidance embedding (LatentConsistencyModelPipeline), 5 for SDXL, else 7.5.
 */
export function defaultCfg(model: Pick<DiffusersModel, "family" | "unet">): number {
  if (model.unet.config.timeCondProjDim !== null) return 8.5;
  return model.family === "sdxl" || model.family === "sdxl-refiner" ? 5 : 7.5;
}

/**
 * Resolves `--motion-module`: an existing file or MotionAdapter folder as given, else an alias
 * of kind "motion-module" from models.lock.json (pulled first with `denoise models pull`).
 */
export async function resolveMotionModule(
  spec: string | undefined,
  env: RunEnvironment,
): Promise<string> {
  if (spec === undefined || spec === "") {
    throw new UsageError("No motion module given", {
      hint: "pass --motion-module FILE|FOLDER|ALIAS, e.g. --motion-module mm_sd_v15_v2",
    });
  }
  if (existsSync(spec)) return resolve(spec);
  const model = env.lock?.models[spec];
  if (model === undefined) {
    throw new ModelNotFoundError(`Motion module "${spec}" is neither a file nor a known alias`, {
      hint: "pass an AnimateDiff motion module (.ckpt, .safetensors), a MotionAdapter folder, " +
        "or an alias from denoise models list",
    });
  }
  if (model.kind !== "motion-module") {
    throw new UsageError(`"${spec}" is a model, not a motion module`, {
      hint: "pass it as --model, and a motion module (e.g. mm_sd_v15_v2) as --motion-module",
    });
  }
  const status = await modelStatus(env.cacheDir, spec, model);
  if (status.some((s) => !s.present)) {
    throw new ModelNotFoundError(`Motion module "${spec}" is not downloaded`, {
      hint: `run "denoise models pull ${spec}"`,
    });
  }
  const dir = modelDir(env.cacheDir, spec, model);
  return model.layout === "single-file" ? join(dir, model.files[0]!.path) : dir;
}
