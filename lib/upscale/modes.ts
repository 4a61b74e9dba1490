/**
 * The upscale modes, as a table `runUpscale` looks up (a new mode is a new row): which models
 * each takes, and how it runs. esrgan runs an ESRGAN-family network (lib/upscale/upscale_image.ts);
 * img2img runs the book's img2img super-resolution with a Stable Diffusion model
 * (lib/upscale/img2img_upscale.ts); controlnet-tile the same guided by the tile ControlNet (book
 * 11.2, lib/upscale/controlnet_tile.ts); lanczos resizes.
 *
 * The esrgan and lanczos modes only change pixels, so the image keeps the infotext it came with
 * and A1111's "Extras" fields are appended to it (`Postprocess upscale by`, `Postprocess
 * upscaler`); img2img and controlnet-tile make a new image, whose infotext is that of its
 * diffusion run.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { type FloatImage, resizeFloatImage } from "../image/codec.ts";
import type { ProgressCallback } from "../io/progress.ts";
import type { UpscaleJob, UpscaleMode } from "../job/upscale.ts";
import { formatInfotext, type Infotext } from "../meta/a1111.ts";
import type { DiffusionRunner } from "../pipeline/run.ts";
import type { RunEnvironment } from "../pipeline/resolve.ts";
import { controlnetTileUpscale } from "./controlnet_tile.ts";
import { img2imgUpscale } from "./img2img_upscale.ts";
import { openUpscalerModel } from "./model_upscaler.ts";
import type { UpscaleModel, UpscaleModelKind } from "./resolve.ts";
import { planTiles } from "../image/tiles.ts";
import { inputMultiple } from "../models/esrgan.ts";
import { defaultOverlap } from "./tiled.ts";
import { defaultTile, upscaledSize, upscaleImage } from "./upscale_image.ts";

/** What a mode gets. */
export interface UpscaleModeRequest {
  env: RunEnvironment;
  /** The Job, its mode resolved. */
  job: UpscaleJob;
  image: FloatImage;
  /** The resolved `--model`, if any. */
  model: UpscaleModel | undefined;
  /** The input's own Job and infotext. */
  source?: Record<string, unknown> | undefined;
  sourceInfotext?: Infotext | undefined;
  /** Opens diffusion models (img2img); released by the caller. */
  runner: () => DiffusionRunner;
  /** Throws when an output of this size is over the limit; call it before the work. */
  checkSize: (width: number, height: number) => void;
  onTile?: ((done: number, total: number) => void) | undefined;
  onProgress?: ProgressCallback | undefined;
}

/** What a mode made. */
export interface UpscaleModeResult {
  image: FloatImage;
  /** Job fields the run chose (scale, tile, seed, defaults), to record. */
  recorded: Partial<UpscaleJob>;
  /** The infotext to store (undefined: none). */
  infotext: string | undefined;
  /** Tiles (per model pass; per step for img2img). */
  tiles: number;
}

/** One row of the mode table. */
export interface UpscaleModeRow {
  mode: UpscaleMode;
  /** The model kinds the mode takes ("none": no --model). */
  accepts: readonly (UpscaleModelKind | "none")[];
  /** The Job fields the mode reads besides `input`, `model`, `mode`, `scale` and `source`. */
  fields: readonly (keyof UpscaleJob)[];
  run: (request: UpscaleModeRequest) => Promise<UpscaleModeResult>;
}

/**
 * The input's infotext with A1111's Extras fields appended (A1111 keeps an image's parameters
 * when it upscales it in Extras and adds `Postprocess upscale by` and `Postprocess upscaler`);
 * `Postprocess upscale to` records the output size, so the text is a parameters line even for
 * an input that had none.
 *
 * @example
 * ```ts
 * import { postprocessInfotext } from "./modes.ts";
 * const text = postprocessInfotext(undefined, { scale: 2, upscaler: "Lanczos", width: 64, height: 32 });
 * console.assert(text === "Postprocess upscale by: 2, Postprocess upscaler: Lanczos, Postprocess upscale to: 64x32");
 * ```
 */
export function postprocessInfotext(
  source: Infotext | undefined,
  fields: { scale: number; upscaler: string; width: number; height: number },
): string {
  const added = {
    "Postprocess upscale by": String(fields.scale),
    "Postprocess upscaler": fields.upscaler,
    "Postprocess upscale to": `${fields.width}x${fields.height}`,
  };
  const base: Infotext = source ?? { prompt: "", negativePrompt: "", params: {}, extraLines: [] };
  try {
    return formatInfotext({ ...base, params: { ...base.params, ...added } });
  } catch {
    // An infotext that cannot be written back as it was (hand-edited text): keep only ours.
    return formatInfotext({ prompt: "", negativePrompt: "", params: added, extraLines: [] });
  }
}

const esrgan: UpscaleModeRow = {
  mode: "esrgan",
  accepts: ["esrgan"],
  fields: ["tile", "tileOverlap", "alphaUpsampler"],
  run: async ({ env, job, image, model, sourceInfotext, checkSize, onTile }) => {
    // With a given scale the size is known before the model is read.
    if (job.scale !== undefined) checkSize(...upscaledSize(image.width, image.height, job.scale));
    const upscaler = await openUpscalerModel(model!.path, env);
    try {
      const { config } = upscaler;
      const scale = job.scale ?? config.scale;
      const [width, height] = upscaledSize(image.width, image.height, scale);
      checkSize(width, height);
      const overlap = job.tileOverlap ?? defaultOverlap(config);
      const tile = job.tile ?? defaultTile(config, { overlap });
      try {
        planTiles(image.width, image.height, { tile, overlap, multiple: inputMultiple(config) });
      } catch (error) {
        if (!(error instanceof RangeError)) throw error;
        throw new UsageError(error.message, {
          hint: "raise --tile (0 runs the whole image) or lower --tile-overlap",
        });
      }
      let tiles = 1;
      const out = await upscaleImage(upscaler, image, {
        scale,
        tile,
        overlap,
        ...(job.alphaUpsampler !== undefined ? { alphaUpsampler: job.alphaUpsampler } : {}),
        onTile: (done, total) => {
          tiles = total;
          onTile?.(done, total);
        },
      });
      return {
        image: out,
        recorded: { mode: "esrgan", scale, tile, tileOverlap: overlap },
        infotext: postprocessInfotext(sourceInfotext, {
          scale,
          upscaler: model!.name,
          width: out.width,
          height: out.height,
        }),
        tiles,
      };
    } finally {
      await upscaler.release();
    }
  },
};

/** The Job fields of an img2img super-resolution. */
const IMG2IMG_FIELDS = [
  "tile",
  "tileOverlap",
  "prompt",
  "negative",
  "qualityPrompt",
  "strength",
  "steps",
  "cfg",
  "passes",
  "sampler",
  "schedule",
  "seed",
  "rng",
  "clipSkip",
  "vae",
  "precision",
  "promptSyntax",
  "emphasis",
  "guidanceRescale",
  "lora",
  "loraDir",
  "embedding",
  "embeddingsDir",
] as const satisfies readonly (keyof UpscaleJob)[];

const img2img: UpscaleModeRow = {
  mode: "img2img",
  accepts: ["diffusion"],
  fields: IMG2IMG_FIELDS,
  run: async ({ env, job, image, source, runner, checkSize, onTile, onProgress }) => {
    const result = await img2imgUpscale(job, image, {
      runner: runner(),
      source,
      checkSize,
      onTile,
      onProgress,
      version: `denoise ${env.version}`,
    });
    return result;
  },
};

const controlnetTile: UpscaleModeRow = {
  mode: "controlnet-tile",
  accepts: ["diffusion"],
  fields: [...IMG2IMG_FIELDS, "controlnet", "controlnetScale", "controlMode"],
  run: async ({ env, job, image, source, runner, checkSize, onTile, onProgress }) => {
    return await controlnetTileUpscale(job, image, {
      env,
      runner: runner(),
      source,
      checkSize,
      onTile,
      onProgress,
      version: `denoise ${env.version}`,
    });
  },
};

const lanczos: UpscaleModeRow = {
  mode: "lanczos",
  accepts: ["none"],
  fields: [],
  run: async ({ job, image, sourceInfotext, checkSize }) => {
    const scale = job.scale ?? 2;
    const [width, height] = upscaledSize(image.width, image.height, scale);
    checkSize(width, height);
    const out = await resizeFloatImage(image, width, height, { kernel: "lanczos3" });
    return {
      image: out,
      recorded: { mode: "lanczos", scale },
      infotext: postprocessInfotext(sourceInfotext, { scale, upscaler: "Lanczos", width, height }),
      tiles: 1,
    };
  },
};

/**
 * The mode table. ControlNet tile (book 11.2) runs {@linkcode img2imgUpscale}'s passes with a
 * tile ControlNet whose residuals a tile hook computes per latent tile.
 */
export const UPSCALE_MODE_TABLE: Readonly<Record<UpscaleMode, UpscaleModeRow>> = {
  esrgan,
  img2img,
  "controlnet-tile": controlnetTile,
  lanczos,
};

/**
 * The mode a model means when the Job names none: an ESRGAN-family file esrgan, a diffusion model
 * img2img (controlnet-tile when the Job names a ControlNet), no model lanczos.
 *
 * @example
 * ```ts
 * import { defaultMode } from "./modes.ts";
 * console.assert(defaultMode(undefined) === "lanczos");
 * console.assert(defaultMode({ kind: "esrgan", path: "x.pth", name: "x" }) === "esrgan");
 * const sd = { kind: "diffusion" as const, path: "sd15", name: "sd15" };
 * console.assert(defaultMode(sd, { controlnet: "tile.pth" }) === "controlnet-tile");
 * ```
 */
export function defaultMode(
  model: UpscaleModel | undefined,
  job: Pick<UpscaleJob, "controlnet"> = {},
): UpscaleMode {
  if (model === undefined) return "lanczos";
  if (model.kind === "esrgan") return "esrgan";
  return job.controlnet !== undefined ? "controlnet-tile" : "img2img";
}

/** Fields every mode reads. */
const COMMON_FIELDS: readonly (keyof UpscaleJob)[] = [
  "command",
  "version",
  "input",
  "model",
  "mode",
  "scale",
  "source",
];

/**
 * The row of a mode, checked against the model it is given and the Job's fields (a usage error
 * when they do not go together: `--strength` with an ESRGAN model would be silently ignored).
 */
export function modeFor(
  mode: UpscaleMode,
  model: UpscaleModel | undefined,
  job?: UpscaleJob,
): UpscaleModeRow {
  const row = UPSCALE_MODE_TABLE[mode];
  const kind = model?.kind ?? "none";
  if (!row.accepts.includes(kind)) {
    const what = kind === "none"
      ? "no model"
      : kind === "esrgan"
      ? `an ESRGAN-family model ("${model!.name}")`
      : `a diffusion model ("${model!.name}")`;
    const wants = row.accepts.map((k) =>
      k === "none" ? "no --model" : k === "esrgan" ? "an ESRGAN-family --model" : "a Stable " +
        "Diffusion --model"
    ).join(" or ");
    throw new UsageError(`--mode ${mode} cannot run with ${what}`, {
      hint: `--mode ${mode} takes ${wants}`,
    });
  }
  const unused = Object.keys(job ?? {}).filter((key) =>
    (job as Record<string, unknown>)[key] !== undefined &&
    !COMMON_FIELDS.includes(key as keyof UpscaleJob) &&
    !row.fields.includes(key as keyof UpscaleJob)
  );
  if (unused.length > 0) {
    const flags = unused.map((k) => "--" + k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()));
    throw new UsageError(
      `${flags.join(", ")} ${unused.length > 1 ? "do" : "does"} not apply to ` +
        `--mode ${mode}`,
      { hint: `drop ${unused.length > 1 ? "them" : "it"}, or pick another mode` },
    );
  }
  return row;
}
