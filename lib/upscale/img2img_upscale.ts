/**
 * Img2img super-resolution of a whole image, as the book's chapter 11.1 does it: resize by k
 * with Lanczos (PIL's, on 8-bit pixels, for 8-bit images; libvips' Lanczos3 on 16-bit samples
 * for 16-bit ones), then img2img at a low strength (default 0.3, guidance 8, 80 steps of which
 * the last 24 run) with any Stable Diffusion model, LoRA and prompt; `passes` repeats it, each
 * pass scaling by `scale^(1/passes)`, as the book's "multiple-step super-resolution" does. The
 * denoising runs in MultiDiffusion tiles when the image is larger than the model's native size
 * (lib/pipeline/upscale_img2img.ts).
 *
 * Grey images run as RGB and are mixed back to grey; alpha is resized with Lanczos on its own;
 * the result keeps the input's bit depth.
 *
 * The prompt, when the Job gives none, is the input's own: the prompt of its Job (or of the first
 * Job down its `source` chain that has one), which for images made elsewhere is the Job rebuilt
 * from their A1111 parameters.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import {
  type FloatImage,
  imageToTensor,
  type RawImage,
  resizeFloatImage,
  tensorToImage,
} from "../image/codec.ts";
import { pilResize } from "../image/pil_resample.ts";
import { infotextFor } from "../job/infotext.ts";
import { Img2ImgJob } from "../job/diffusion.ts";
import type { UpscaleJob } from "../job/upscale.ts";
import type { ProgressCallback } from "../io/progress.ts";
import type { Nchw } from "../models/vae.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import { seedValue } from "../pipeline/batch.ts";
import { modelName } from "../pipeline/resolve.ts";
import type { DiffusionRunner } from "../pipeline/run.ts";
import { randomSeed } from "../pipeline/sampling.ts";
import { controlTensor } from "../pipeline/control_image.ts";
import type { LoopHook } from "../pipeline/denoise.ts";
import type { TileHook } from "../pipeline/multidiffusion.ts";
import type { StableDiffusion } from "../pipeline/stable_diffusion.ts";
import { defaultUpscaleTile, upscaleImg2Img } from "../pipeline/upscale_img2img.ts";
import { floatToRaw, floatToTensor, restoreLayout, tensorToFloat } from "./pixels.ts";
import { upscaledSize } from "./upscale_image.ts";

/** The book's super-resolution prompt prefix (`sr_prompt`), added with `qualityPrompt`. */
export const QUALITY_PROMPT =
  "8k, best quality, masterpiece, realistic, photo-realistic, ultra detailed, sharp focus, " +
  "raw photo, ";

/** The book's negative prompt for super-resolution, used with `qualityPrompt` when none is set. */
export const QUALITY_NEGATIVE = "worst quality, low quality, lowres, bad anatomy";

/** The book's settings (chapter 11.1), the defaults of an img2img upscale. */
export const IMG2IMG_UPSCALE_DEFAULTS = { strength: 0.3, steps: 80, cfg: 8, passes: 1 } as const;

/**
 * The sizes of the passes: pass k of n resizes to `int(side * scale^(k/n))`, rounded down to the
 * VAE grid (the book's `get_width_height`), at least one grid cell; the last pass is the output.
 *
 * @example
 * ```ts
 * import { passSizes } from "./img2img_upscale.ts";
 * const sizes = passSizes(256, 256, 6, 2, 8);
 * console.assert(sizes.map((s) => s.width).join() === "624,1536");
 * ```
 */
export function passSizes(
  width: number,
  height: number,
  scale: number,
  passes: number,
  factor: number,
): Array<{ width: number; height: number }> {
  const snap = (v: number) => Math.max(factor, Math.floor(v / factor) * factor);
  const out: Array<{ width: number; height: number }> = [];
  for (let k = 1; k <= passes; k++) {
    const [w, h] = upscaledSize(width, height, k === passes ? scale : scale ** (k / passes));
    out.push({ width: snap(w), height: snap(h) });
  }
  return out;
}

/**
 * The prompt and negative prompt of an image's Job: its own, or those of the first Job down its
 * `source` chain that has a prompt. Undefined when none has.
 *
 * @example
 * ```ts
 * import { promptFromSource } from "./img2img_upscale.ts";
 * const job = { command: "upscale", source: { command: "generate", prompt: "a fox", negative: "" } };
 * console.assert(promptFromSource(job)?.prompt === "a fox");
 * ```
 */
export function promptFromSource(
  source: Record<string, unknown> | undefined,
): { prompt: string; negative: string } | undefined {
  let job: unknown = source;
  for (let depth = 0; depth < 64 && isRecord(job); depth++) {
    if (typeof job.prompt === "string" && job.prompt !== "") {
      return { prompt: job.prompt, negative: typeof job.negative === "string" ? job.negative : "" };
    }
    job = job.source;
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A pass's image, resized, as a guide sees it. */
export interface PassImage {
  width: number;
  height: number;
  /** The resized image as a ControlNet's `controlnet_cond`: `[1, 3, height, width]` in [0, 1]. */
  control: Float32Array;
}

/** What a guide adds to one pass. */
export interface PassGuide {
  /** Loop hooks of the pass's denoising loop. */
  hooks: LoopHook[];
  /** Hooks run on each UNet tile (lib/pipeline/multidiffusion.ts). */
  tileHooks: TileHook[];
}

/**
 * Extra guidance for every pass of an upscale (a ControlNet-tile upscale's nets): opened once on
 * the model, then asked for each pass's hooks with the pass's resized image.
 */
export interface UpscaleGuide {
  open(sd: StableDiffusion): Promise<{
    pass: (image: PassImage) => PassGuide;
    /** Infotext fields (A1111's ControlNet unit). */
    infotext: Record<string, string>;
  }>;
}

/** What {@linkcode img2imgUpscale} needs besides the Job and the image. */
export interface Img2ImgUpscaleOptions {
  /** Opens the model (with its LoRAs) and prepares the diffusion parameters. */
  runner: DiffusionRunner;
  /** The input's Job, for the prompt when the Job has none. */
  source?: Record<string, unknown> | undefined;
  /** Throws when the output would be too large (called before any model runs). */
  checkSize?: (width: number, height: number) => void;
  onTile?: ((done: number, total: number) => void) | undefined;
  onProgress?: ProgressCallback | undefined;
  /** Recorded in the infotext's Version field. */
  version: string;
  /** The mode recorded in the Job (default "img2img"). */
  mode?: "img2img" | "controlnet-tile";
  /** The defaults of strength, steps, cfg and passes (default the book's 11.1 settings). */
  defaults?: Readonly<Record<keyof typeof IMG2IMG_UPSCALE_DEFAULTS, number>>;
  /** Guidance added to every pass (ControlNet tile). */
  guide?: UpscaleGuide | undefined;
}

/** What {@linkcode img2imgUpscale} made. */
export interface Img2ImgUpscaleResult {
  image: FloatImage;
  /** Job fields the run chose (defaults, seed, sizes), to record. */
  recorded: Partial<UpscaleJob>;
  /** The A1111 parameters of the run. */
  infotext: string;
  /** UNet tiles per step of the last pass. */
  tiles: number;
}

/** A grey or colour float image's colour planes as RGB (grey repeated). */
function colourPlanes(image: FloatImage): FloatImage {
  const plane = image.width * image.height;
  const data = new Float32Array(3 * plane);
  const from = image.channels <= 2 ? [0, 0, 0] : [0, 1, 2];
  from.forEach((p, c) => data.set(image.data.subarray(p * plane, (p + 1) * plane), c * plane));
  return { width: image.width, height: image.height, channels: 3, bitDepth: image.bitDepth, data };
}

/**
 * Runs an img2img super-resolution (see the module documentation). `job.scale` is the output
 * size over the input size (default 2).
 *
 * @example
 * ```ts ignore
 * const runner = new DiffusionRunner(env);
 * const { image: big } = await img2imgUpscale(job, image, { runner, version: "denoise 0.1.0" });
 * await runner.release();
 * ```
 */
export async function img2imgUpscale(
  job: UpscaleJob,
  image: FloatImage,
  options: Img2ImgUpscaleOptions,
): Promise<Img2ImgUpscaleResult> {
  const d = options.defaults ?? IMG2IMG_UPSCALE_DEFAULTS;
  const scale = job.scale ?? 2;
  const passes = job.passes ?? d.passes;
  const strength = job.strength ?? d.strength;
  const steps = job.steps ?? d.steps;
  const seed = job.seed ?? seedValue(randomSeed());
  const found = promptFromSource(options.source);
  const prompt = job.prompt ?? found?.prompt ?? "";
  const negative = job.negative ?? found?.negative ?? (job.qualityPrompt ? QUALITY_NEGATIVE : "");
  const used = (job.qualityPrompt ? QUALITY_PROMPT : "") + prompt;
  // 1. The img2img Job each pass runs (its defaults filled by the schema).
  const fields: Record<string, unknown> = {
    command: "img2img",
    prompt: used,
    negative,
    model: job.model,
    steps,
    cfg: job.cfg ?? d.cfg,
    sampler: job.sampler,
    schedule: job.schedule,
    seed,
    rng: job.rng,
    clipSkip: job.clipSkip,
    vae: job.vae,
    precision: job.precision,
    promptSyntax: job.promptSyntax,
    emphasis: job.emphasis,
    guidanceRescale: job.guidanceRescale,
    lora: job.lora,
    loraDir: job.loraDir,
    embedding: job.embedding,
    embeddingsDir: job.embeddingsDir,
    strength,
  };
  const inner = Img2ImgJob.parse(
    Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
  );
  // The output size on the usual grid of 8, checked before any model is opened.
  const planned = passSizes(image.width, image.height, scale, passes, 8);
  options.checkSize?.(planned.at(-1)!.width, planned.at(-1)!.height);
  const { sd, params, cfg, precision, infotext: extra } = await options.runner.prepare(
    inner,
    [BigInt(seed)],
    options.onProgress ? { onProgress: options.onProgress } : {},
  );
  const f = vaeFactor(sd.model);
  const tile = job.tile ?? defaultUpscaleTile(sd);
  const overlap = job.tileOverlap ?? Math.floor(tile / 4 / f) * f;
  if (tile % f !== 0 || overlap % f !== 0) {
    throw new UsageError(
      `In img2img mode --tile and --tile-overlap must be multiples of ${f} pixels (the VAE ` +
        `factor), got ${tile} and ${overlap}`,
      { hint: `use e.g. --tile ${Math.max(f, Math.round(tile / f) * f)}` },
    );
  }
  if (tile !== 0 && overlap >= tile) {
    throw new UsageError(`The tile overlap ${overlap} must be smaller than the tile ${tile}`);
  }
  const guide = await options.guide?.open(sd);
  // 2. The passes: Lanczos to the pass's size, then img2img (tiled when large).
  const eight = image.bitDepth === 8;
  let rgb8: RawImage | undefined = eight ? floatToRaw(colourPlanes(image)) : undefined;
  let rgb16: FloatImage | undefined = eight ? undefined : colourPlanes(image);
  let pixels: Nchw | undefined;
  let tiles = 1;
  const sizes = passSizes(image.width, image.height, scale, passes, f);
  for (const size of sizes) {
    // The pass's image, resized: the init image, and a guide's control image.
    const resized8 = eight ? pilResize(rgb8!, size.width, size.height, "lanczos") : undefined;
    const resized16 = eight
      ? undefined
      : await resizeFloatImage(rgb16!, size.width, size.height, { kernel: "lanczos3" });
    const input: Nchw = resized8
      ? { data: imageToTensor(resized8), dims: [1, 3, size.height, size.width] }
      : floatToTensor(resized16!);
    const added = guide?.pass({
      ...size,
      // Diffusers' control image: RGB / 255 (8-bit), the samples as they are (16-bit).
      control: resized8
        ? controlTensor(resized8, size.width, size.height)
        : resized16!.data.slice(0, 3 * size.width * size.height),
    });
    const result = await upscaleImg2Img(sd, {
      ...params,
      ...(added ? { hooks: [...(params.hooks ?? []), ...added.hooks] } : {}),
      image: input,
      strength,
      tile,
      overlap,
      tileHooks: added?.tileHooks,
      onTile: options.onTile,
    });
    pixels = result.pixels;
    tiles = result.tiles;
    // Between passes the image is what the pass would save: 8-bit for 8-bit inputs (the book's
    // PNG), floats for 16-bit ones.
    if (eight) rgb8 = tensorToImage(pixels.data, size.width, size.height);
    else rgb16 = tensorToFloat(pixels.data, size.width, size.height, 16);
  }
  // 3. Back to the input's layout.
  const { width, height } = sizes.at(-1)!;
  const rgb = tensorToFloat(pixels!.data, width, height, image.bitDepth);
  let alpha: Float32Array | undefined;
  if (image.channels === 2 || image.channels === 4) {
    const plane = image.width * image.height;
    const a = image.data.subarray((image.channels - 1) * plane, image.channels * plane);
    const one: FloatImage = { ...image, channels: 1, data: a };
    alpha = (await resizeFloatImage(one, width, height, { kernel: "lanczos3" })).data;
  }
  const out = restoreLayout(rgb, image.channels, alpha);
  // 4. What to record.
  const recorded: Partial<UpscaleJob> = {
    mode: options.mode ?? "img2img",
    scale,
    tile,
    tileOverlap: overlap,
    prompt,
    negative,
    strength,
    steps,
    cfg,
    passes,
    seed,
    precision,
  };
  const infotext = infotextFor({ ...inner, cfg }, {
    width,
    height,
    cfg,
    schedulerClass: String(sd.model.schedulerConfig._class_name ?? ""),
    schedulerConfig: sd.model.schedulerConfig,
    modelName: modelName(job.model, sd.model.dir),
    version: options.version,
    extra: {
      ...extra,
      ...guide?.infotext,
      "SD upscale upscaler": "Lanczos",
      "SD upscale by": String(scale),
      ...(passes > 1 ? { "SD upscale passes": String(passes) } : {}),
      "SD upscale tile": String(tile),
      "SD upscale overlap": String(overlap),
    },
  });
  return { image: out, recorded, infotext, tiles };
}
