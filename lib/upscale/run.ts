/**
 * `runUpscale`: the one library call `denoise upscale` makes. It resolves the model, picks the
 * mode (the Job's, else the model's: lib/upscale/modes.ts), refuses outputs over the pixel limit
 * before any work, runs the mode, and returns the image with the Job to store: the upscale's
 * options, what the run chose, and the input's own Job under `source` (lib/job/upscale.ts).
 *
 * @module
 */
import { InputError } from "../errors.ts";
import type { FloatImage } from "../image/codec.ts";
import type { ProgressCallback } from "../io/progress.ts";
import { withFields } from "../job/define.ts";
import { UpscaleJob } from "../job/upscale.ts";
import type { Infotext } from "../meta/a1111.ts";
import type { RunEnvironment } from "../pipeline/resolve.ts";
import { DiffusionRunner, type RunExtension } from "../pipeline/run.ts";
import { defaultMode, modeFor } from "./modes.ts";
import { resolveUpscaleModel } from "./resolve.ts";

/** Default output limit: 8192 x 8192 pixels. */
export const DEFAULT_MAX_PIXELS = 8192 * 8192;

/** The image to upscale and what it says about itself. */
export interface UpscaleInput {
  image: FloatImage;
  /** Its Job (denoise's own, or one rebuilt from A1111 parameters), if any. */
  job?: Record<string, unknown> | undefined;
  /** Its A1111 parameters, if any. */
  infotext?: Infotext | undefined;
}

/** Options of {@linkcode runUpscale}. */
export interface RunUpscaleOptions {
  /** Largest output in pixels (default {@linkcode DEFAULT_MAX_PIXELS}). */
  maxPixels?: number | undefined;
  /** Called after each tile: (done, total) of a model pass or a denoising step. */
  onTile?: ((done: number, total: number) => void) | undefined;
  /** Denoising progress (img2img). */
  onProgress?: ProgressCallback | undefined;
  /** Run extensions for diffusion modes (ControlNet...). */
  extensions?: readonly RunExtension[] | undefined;
}

/** What {@linkcode runUpscale} made. */
export interface UpscaleOutcome {
  image: FloatImage;
  /** The Job to store with the image. */
  job: UpscaleJob;
  /** The A1111 parameters to store (undefined: none). */
  infotext: string | undefined;
  /** Tiles per model pass (esrgan) or per denoising step (img2img). */
  tiles: number;
  /** Seconds spent: opening models and running. */
  seconds: number;
}

/**
 * Upscales an image as a Job says; see the module documentation.
 *
 * @example
 * ```ts ignore
 * const job = UpscaleJob.parse({ command: "upscale", model: "realesrgan-x4plus" });
 * const { image: big, job: stored } = await runUpscale(env, job, { image });
 * ```
 */
export async function runUpscale(
  env: RunEnvironment,
  job: UpscaleJob,
  input: UpscaleInput,
  options: RunUpscaleOptions = {},
): Promise<UpscaleOutcome> {
  const t0 = performance.now();
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const model = job.model === undefined ? undefined : await resolveUpscaleModel(job.model, env);
  const mode = job.mode ?? defaultMode(model, job);
  const row = modeFor(mode, model, job);
  const { width: w, height: h } = input.image;
  const checkSize = (width: number, height: number) => {
    if (width * height > maxPixels) {
      throw new InputError(
        `Upscaling the ${w}x${h} image by ${job.scale ?? "the model's scale"} makes ` +
          `${width}x${height} = ${width * height} pixels, over the limit of ${maxPixels}`,
        { hint: `pass a smaller --scale, or --max-pixels ${width * height} to allow it` },
      );
    }
  };
  let runner: DiffusionRunner | undefined;
  try {
    const result = await row.run({
      env,
      job: { ...job, mode },
      image: input.image,
      model,
      source: input.job,
      sourceInfotext: input.infotext,
      runner: () =>
        runner ??= new DiffusionRunner(
          env,
          options.extensions ? { extensions: options.extensions } : {},
        ),
      checkSize,
      onTile: options.onTile,
      onProgress: options.onProgress,
    });
    // The stored Job: the options, what the run chose, and the input's own Job.
    const stored = withFields(UpscaleJob, job, {
      ...result.recorded,
      source: input.job,
    } as Partial<UpscaleJob>);
    if (input.job === undefined) delete stored.source;
    return {
      image: result.image,
      job: stored,
      infotext: result.infotext,
      tiles: result.tiles,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await runner?.release();
  }
}
