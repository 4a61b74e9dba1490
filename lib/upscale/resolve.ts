/**
 * What an upscale `--model` (or a hires fix's `--hires-upscaler`) names: an ESRGAN-family weight
 * file, a Stable Diffusion model (folder, single file or alias) for img2img super-resolution, or
 * an alias from models.lock.json of either kind. Files are told apart by their tensor names, never
 * by their file names.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { InputError, IoError, ModelNotFoundError, UsageError } from "../errors.ts";
import { type LockedModel, modelDir, type ModelsLock, modelStatus } from "../hub/mod.ts";
import { A1111_UPSCALER_ALIASES, upscalerModelName } from "../job/infotext.ts";
import type { RunEnvironment } from "../pipeline/resolve.ts";
import { openWeights } from "../weights/weight_source.ts";

/** What a model spec is, for upscaling. */
export type UpscaleModelKind = "esrgan" | "diffusion";

/** A resolved upscale model. */
export interface UpscaleModel {
  kind: UpscaleModelKind;
  /**
   * The weight file of an ESRGAN-family model; for a diffusion model the spec as given (the
   * diffusion pipeline resolves folders, single files and aliases itself).
   */
  path: string;
  /** The name recorded in metadata: an alias as the lock spells it, a file's stem. */
  name: string;
}

/** Tensor name prefixes of Stable Diffusion single-file checkpoints (LDM layout). */
const DIFFUSION_PREFIXES = ["model.diffusion_model.", "first_stage_model.", "conditioner."];

/**
 * The lock's alias for a spec: itself, else written as the lock writes aliases (lowercase, "_" as
 * "-", so `RealESRGAN_x4plus` finds `realesrgan-x4plus`), else an A1111 upscaler name
 * ("R-ESRGAN 4x+"). Undefined when the lock has none of them.
 *
 * @example
 * ```ts
 * import { lockAlias } from "./resolve.ts";
 * const lock = { version: 1 as const, models: { "realesrgan-x4plus": {} as never } };
 * console.assert(lockAlias(lock, "RealESRGAN_x4plus") === "realesrgan-x4plus");
 * console.assert(lockAlias(lock, "R-ESRGAN 4x+") === "realesrgan-x4plus");
 * console.assert(lockAlias(lock, "nothing") === undefined);
 * ```
 */
export function lockAlias(lock: ModelsLock | undefined, spec: string): string | undefined {
  if (lock === undefined) return undefined;
  const candidates = [
    spec,
    spec.toLowerCase().replace(/_/g, "-"),
    A1111_UPSCALER_ALIASES[spec.trim()] ?? "",
  ];
  return candidates.find((c) => c !== "" && Object.hasOwn(lock.models, c));
}

/**
 * Whether a weight file is an ESRGAN-family upscaler or a Stable Diffusion checkpoint, from its
 * tensor names. Throws the unpickler's RangeError for a .pth with disallowed globals and a
 * RangeError for a file that is neither safetensors nor torch.save.
 */
export async function weightFileKind(path: string): Promise<UpscaleModelKind> {
  const file = await openWeights(path);
  try {
    const names = file.names();
    return names.some((n) => DIFFUSION_PREFIXES.some((p) => n.startsWith(p)))
      ? "diffusion"
      : "esrgan";
  } finally {
    file.close();
  }
}

/** The file of a downloaded ESRGAN-family alias. */
async function lockedUpscalerFile(
  env: RunEnvironment,
  alias: string,
  model: LockedModel,
): Promise<string> {
  const status = await modelStatus(env.cacheDir, alias, model);
  if (status.some((s) => !s.present)) {
    throw new ModelNotFoundError(`Model "${alias}" is not downloaded`, {
      hint: `run "denoise models pull ${alias}"`,
    });
  }
  const file = model.files.find((f) => /\.(pth|pt|safetensors)$/i.test(f.path)) ??
    model.files[0]!;
  return join(modelDir(env.cacheDir, alias, model), file.path);
}

/**
 * Resolves a model spec for upscaling: an existing folder is a diffusion model; an existing file
 * is sniffed ({@linkcode weightFileKind}); an alias (see {@linkcode lockAlias}) is what its lock
 * entry's family says (an ESRGAN-family alias must be downloaded). Throws
 * {@linkcode ModelNotFoundError} for anything else.
 *
 * @example
 * ```ts ignore
 * const model = await resolveUpscaleModel("RealESRGAN_x4plus", env);
 * // { kind: "esrgan", path: "~/.cache/denoise/models/realesrgan-x4plus/v0.1.0/RealESRGAN_x4plus.pth", ... }
 * ```
 */
export async function resolveUpscaleModel(
  spec: string,
  env: RunEnvironment,
): Promise<UpscaleModel> {
  if (existsSync(spec)) {
    if (statSync(spec).isDirectory()) {
      return { kind: "diffusion", path: spec, name: upscalerModelName(spec) };
    }
    return { kind: await weightFileKind(spec), path: spec, name: upscalerModelName(spec) };
  }
  const alias = lockAlias(env.lock, spec);
  if (alias !== undefined) {
    const model = env.lock!.models[alias]!;
    if (model.family === "controlnet") {
      throw new UsageError(`Model "${alias}" is a ControlNet, not an upscaler or diffusion model`, {
        hint: `pass a Stable Diffusion --model and --controlnet ${alias} (--mode controlnet-tile)`,
      });
    }
    if (model.family !== "esrgan") return { kind: "diffusion", path: alias, name: alias };
    return { kind: "esrgan", path: await lockedUpscalerFile(env, alias, model), name: alias };
  }
  if (/[\\/]/.test(spec) || /\.(pth|pt|safetensors|ckpt|bin)$/i.test(spec)) {
    throw new IoError(`Cannot read the model "${spec}": no such file or directory`, {
      hint: "check the path",
    });
  }
  throw new ModelNotFoundError(`Model "${spec}" is neither a file, a folder nor a known alias`, {
    hint: "pass an ESRGAN-family .pth/.safetensors, a Stable Diffusion model, or an alias " +
      "from denoise models list",
  });
}

/**
 * Turns the TypeError a loader throws for weights that are not an ESRGAN-family network into a
 * one-line bad-input error (exit 3); other errors pass through.
 */
export function notAnUpscalerError(error: unknown, path: string): unknown {
  if (error instanceof TypeError) {
    return new InputError(`"${path}" is not an ESRGAN-family upscaler: ${error.message}`, {
      hint: "pass a RRDBNet (ESRGAN, Real-ESRGAN) or SRVGGNetCompact .pth/.safetensors file",
      cause: error,
    });
  }
  return error;
}
