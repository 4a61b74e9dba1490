/**
 * The Job of `denoise upscale`.
 *
 * An upscale Job records what it did to its input, and the input's own Job under `source`, so
 * an image that went through `generate | upscale | upscale` carries the whole chain: its Job is
 * the last upscale, whose `source` is the first upscale, whose `source` is the generate Job.
 * `source` is a fact about the input, written when the upscale runs (whatever a `--job` document
 * said); a Job's other fields are its options. Fields an upscale chose itself (the mode, the
 * scale, the tile, a seed, the img2img defaults) are written into the Job it stores, so
 * `upscale --job image.png` replays it exactly.
 *
 * @module
 */
import { z } from "zod";
import { defineJob } from "./define.ts";
import { CONTROL_MODES } from "./controlnet.ts";
import { diffusionFields } from "./diffusion.ts";

/**
 * The upscale modes: an ESRGAN-family network, img2img super-resolution with a Stable Diffusion
 * model (book 11.1), img2img guided by the tile ControlNet (book 11.2), or a plain Lanczos
 * resize.
 */
export const UPSCALE_MODES = ["esrgan", "img2img", "controlnet-tile", "lanczos"] as const;

/** One of {@linkcode UPSCALE_MODES}. */
export type UpscaleMode = typeof UPSCALE_MODES[number];

const d = diffusionFields;

/**
 * `denoise upscale [IMAGE|-] --model PATH|ALIAS [--scale F] [--mode ...] -o OUT`.
 *
 * @example
 * ```ts
 * import { UpscaleJob } from "./upscale.ts";
 * const job = UpscaleJob.parse({ command: "upscale", model: "realesrgan-x4plus", scale: 2 });
 * console.assert(job.mode === undefined && job.scale === 2 && job.version === 1);
 * ```
 */
export const UpscaleJob = defineJob("upscale", {
  /** The input image's name, for the record (the pixels come from the argument or stdin). */
  input: z.string().optional(),
  /**
   * An ESRGAN-family .pth/.safetensors or alias (esrgan mode), or a Stable Diffusion folder,
   * single file or alias (img2img and controlnet-tile modes); none for lanczos.
   */
  model: z.string().optional(),
  /**
   * How to upscale; default from the model (ESRGAN file: esrgan, diffusion model: img2img, or
   * controlnet-tile when `controlnet` is given).
   */
  mode: z.enum(UPSCALE_MODES).optional(),
  /** Output size / input size, > 0 (default: an ESRGAN model's own scale, else 2). */
  scale: z.number().positive().max(64).optional(),
  /**
   * Tile side in pixels: of the input for esrgan (0 = the whole image at once; default from a
   * memory budget), of the output for img2img and controlnet-tile (0 = one tile; default the
   * model's native size).
   */
  tile: z.number().int().min(0).max(65536).optional(),
  /** Pixels neighbouring tiles share (default: esrgan 32 model pixels, img2img a quarter tile). */
  tileOverlap: z.number().int().min(0).max(65536).optional(),
  /** How an ESRGAN upscale treats alpha: through the model as Real-ESRGAN, or bilinear. */
  alphaUpsampler: z.enum(["realesrgan", "linear"]).optional(),
  // img2img super-resolution (book 11.1) and ControlNet tile (11.2)
  /** The prompt (default: the input's own, from its Job or A1111 parameters). */
  prompt: d.prompt.unwrap().optional(),
  /** The negative prompt (default: the input's own). */
  negative: d.negative.unwrap().optional(),
  /** Prefix the book's quality-booster prompt ("8k, best quality, masterpiece, ..."). */
  qualityPrompt: z.boolean().optional(),
  /** How much to redraw (default 0.3, the book's; controlnet-tile 0.8). */
  strength: z.number().gt(0).max(1).optional(),
  /**
   * Sampling steps of the schedule whose tail runs (default 80, the book's, of which 0.3 runs
   * 24; controlnet-tile 50, of which 0.8 runs 40).
   */
  steps: d.steps.unwrap().optional(),
  /** Guidance scale (default 8, the book's; controlnet-tile 7). */
  cfg: d.cfg,
  /** Lanczos + img2img passes; each scales by scale^(1/passes) (default 1). */
  passes: z.number().int().min(1).max(8).optional(),
  sampler: d.sampler,
  schedule: d.schedule,
  seed: d.seed,
  rng: d.rng.unwrap().optional(),
  clipSkip: d.clipSkip.unwrap().optional(),
  vae: d.vae,
  precision: d.precision,
  promptSyntax: d.promptSyntax.unwrap().optional(),
  emphasis: d.emphasis.unwrap().optional(),
  guidanceRescale: d.guidanceRescale.unwrap().optional(),
  lora: d.lora,
  loraDir: d.loraDir,
  embedding: d.embedding,
  embeddingsDir: d.embeddingsDir,
  // ControlNet tile (book 11.2)
  /**
   * The ControlNet of a controlnet-tile upscale: a Diffusers folder, an original-layout file or an
   * alias (default the alias `control_v11f1e_sd15_tile`); it gets the resized image as its
   * control image, tile by tile.
   */
  controlnet: z.string().min(1).optional(),
  /** Its Diffusers `controlnet_conditioning_scale` (default 1). */
  controlnetScale: z.number().min(-100).max(100).optional(),
  /** A1111's control mode for it (default balanced). */
  controlMode: z.enum(CONTROL_MODES).optional(),
  /** The input's own Job (any command's), recorded when the upscale runs. */
  source: z.record(z.string(), z.unknown()).optional(),
});

/** A `denoise upscale` Job. */
export type UpscaleJob = z.infer<typeof UpscaleJob>;
