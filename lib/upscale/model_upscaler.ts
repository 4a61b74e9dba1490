/**
 * ESRGAN-family networks opened the way a run opens its models: by file or alias, built into the
 * run's graph cache, on the run's threads and execution provider; and as the pixel upscaler the
 * hires fix takes (lib/pipeline/hires.ts `ModelUpscaler`).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import type { RawImage } from "../image/codec.ts";
import type { ModelUpscaler, ModelUpscalerOpener } from "../pipeline/hires.ts";
import type { RunEnvironment } from "../pipeline/resolve.ts";
import { floatToRaw, rawToFloat } from "./pixels.ts";
import {
  lockAlias,
  notAnUpscalerError,
  resolveUpscaleModel,
  type UpscaleModel,
} from "./resolve.ts";
import { upscaleImage, type UpscaleImageOptions } from "./upscale_image.ts";
import { openUpscaler, type UpscalerFile } from "./upscaler.ts";

/**
 * Opens an ESRGAN-family weight file with the run's cache (`<cacheDir>/graphs`), threads and
 * execution provider. Weights that are not an upscaler are a one-line bad-input error.
 *
 * @example
 * ```ts ignore
 * const upscaler = await openUpscalerModel("RealESRGAN_x4plus.pth", env);
 * ```
 */
export async function openUpscalerModel(
  path: string,
  env: RunEnvironment,
): Promise<UpscalerFile> {
  try {
    return await openUpscaler(path, {
      cacheDir: join(env.cacheDir, "graphs"),
      ...(env.threads !== undefined ? { threads: env.threads } : {}),
      executionProvider: env.device ?? "cpu",
    });
  } catch (error) {
    throw notAnUpscalerError(error, path);
  }
}

const HIRES_HINT = "--hires-upscaler takes latent, lanczos, or an ESRGAN-family " +
  ".pth/.safetensors file or alias (denoise models list)";

/**
 * Resolves a hires fix's model upscaler (file or alias) without opening it, so a command can
 * refuse a bad `--hires-upscaler` before any work: a name that is neither a file nor a known
 * alias is a usage error, a diffusion model too.
 *
 * @example
 * ```ts ignore
 * await resolveHiresUpscaler("realesrgan-x4plus", env); // { kind: "esrgan", path: ... }
 * ```
 */
export async function resolveHiresUpscaler(
  spec: string,
  env: RunEnvironment,
): Promise<UpscaleModel> {
  if (!existsSync(spec) && lockAlias(env.lock, spec) === undefined && !/[\\/.]/.test(spec)) {
    throw new UsageError(`Unknown hires upscaler "${spec}"`, { hint: HIRES_HINT });
  }
  const model = await resolveUpscaleModel(spec, env);
  if (model.kind !== "esrgan") {
    throw new UsageError(`"${spec}" is a diffusion model, not an ESRGAN-family upscaler`, {
      hint: HIRES_HINT,
    });
  }
  return model;
}

/**
 * The hires fix's opener of pixel upscalers: a spec (file or alias) becomes a
 * {@linkcode ModelUpscaler} whose one pass is {@linkcode upscaleImage} at the model's own scale
 * on the 8-bit image (tiles from the default memory budget), rounded back to 8 bits.
 *
 * @example
 * ```ts ignore
 * await runJobs(env, jobs, { ...options, upscalers: upscalerOpener(env) });
 * ```
 */
export function upscalerOpener(
  env: RunEnvironment,
  options: Pick<UpscaleImageOptions, "memoryBudget"> = {},
): ModelUpscalerOpener {
  return async (spec: string): Promise<ModelUpscaler> => {
    const model = await resolveHiresUpscaler(spec, env);
    const upscaler = await openUpscalerModel(model.path, env);
    return {
      name: model.name,
      run: async (image: RawImage) =>
        floatToRaw(await upscaleImage(upscaler, rawToFloat(image), options)),
      release: () => upscaler.release(),
    };
  };
}
