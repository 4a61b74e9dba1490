/**
 * The Jobs of the diffusion commands (`generate`, `img2img`): the fields they share and each
 * command's own.
 *
 * @module
 */
import { z } from "zod";
import { RESIZE_MODES } from "../image/resize_mode.ts";
import { SIGMA_SCHEDULES } from "../schedulers/sigma_schedules.ts";
import { defineJob, Seed } from "./define.ts";

/**
 * Graph precisions: fp32; fp16 (halves memory on CUDA); int8 (CPU: UNet and text encoder weights
 * quantised per output channel, activations at run time; lib/models/quantize.ts).
 */
export const PRECISIONS = ["fp32", "fp16", "int8"] as const;

/** One of {@linkcode PRECISIONS}. */
export type Precision = typeof PRECISIONS[number];

/** The fields every diffusion Job shares (generate, img2img and the commands built on them). */
export const diffusionFields = {
  /** The prompt, in A1111 syntax unless `promptSyntax` is "plain". */
  prompt: z.string().default(""),
  /**
   * The negative prompt. Absent and empty differ, as in Diffusers: an SDXL model with
   * `force_zeros_for_empty_prompt` uses zeros for the unconditional pass only when no negative
   * is given, and encodes `""` when it is given empty.
   */
  negative: z.string().optional(),
  /** A model folder, single file or alias; required to run. */
  model: z.string().optional(),
  /** Sampling steps. */
  steps: z.number().int().min(1).max(1000).default(20),
  /** Classifier-free guidance scale; default per model family. */
  cfg: z.number().min(0).max(100).optional(),
  /** A denoise sampler name, A1111 label or Diffusers class; default the model's scheduler. */
  sampler: z.string().optional(),
  /** Sigma schedule (default the sampler's own). */
  schedule: z.enum(SIGMA_SCHEDULES).optional(),
  /** Seed of the first image; image k of a run uses seed + k. */
  seed: Seed.optional(),
  /** Noise source: torch CPU generator, or A1111's NV (philox) source. */
  rng: z.enum(["cpu", "nv"]).default("cpu"),
  /** Image size in pixels (default from the model). */
  width: z.number().int().min(8).max(16384).optional(),
  height: z.number().int().min(8).max(16384).optional(),
  /** Images per denoising batch (one noise tensor, as Diffusers' num_images_per_prompt). */
  batchSize: z.number().int().min(1).max(64).default(1),
  /** Batches run one after another; batch k starts at seed + k * batchSize. */
  batchCount: z.number().int().min(1).max(10000).default(1),
  /** A1111 clip skip: 1 uses the last CLIP layer, 2 the penultimate. */
  clipSkip: z.number().int().min(1).max(12).default(1),
  /** Another VAE (folder) to decode with. */
  vae: z.string().optional(),
  /** Decode (and encode) in overlapping tiles to bound memory. */
  vaeTiling: z.boolean().default(false),
  /**
   * Precision of the graphs: fp16 halves memory on CUDA (the VAE stays fp32 when its config has
   * force_upcast); int8 (CPU) quantises the UNet's and text encoders' weights per output channel
   * and their activations at run time, the VAE stays fp32. Absent: fp32 on cpu, fp16 on cuda.
   */
  precision: z.enum(PRECISIONS).optional(),
  /** Prompt language: A1111 syntax or plain text. */
  promptSyntax: z.enum(["a1111", "plain"]).default("a1111"),
  /** How token weights apply (A1111 "Emphasis mode"; "none" keeps brackets as text). */
  emphasis: z.enum(["original", "no-norm", "ignore", "none"]).default("original"),
  /** Diffusers guidance_rescale (0 = off). */
  guidanceRescale: z.number().min(0).max(1).default(0),
  /** LoRA files merged before the run: a scale, or separate text-encoder / UNet scales. */
  lora: z.array(
    z.object({
      path: z.string().min(1),
      scale: z.number().default(1),
      te: z.number().optional(),
      unet: z.number().optional(),
    }).strict(),
  ).optional(),
  /** Folder searched for the LoRAs of `<lora:name:te:unet>` prompt tags. */
  loraDir: z.string().optional(),
  /** Textual-inversion files; the token is the file stem unless given. */
  embedding: z.array(z.object({ path: z.string().min(1), token: z.string().optional() }).strict())
    .optional(),
  /** Folder of embeddings usable by name in the prompts. */
  embeddingsDir: z.string().optional(),
  /** SDXL micro-conditioning: the original size (default the image size). */
  originalSize: z.object({
    width: z.number().int().positive(),
    height: z.number().int().positive(),
  })
    .strict().optional(),
  /** SDXL micro-conditioning: crop coordinates of the top-left corner (default 0, 0). */
  cropsCoordsTopLeft: z.object({
    top: z.number().int().nonnegative(),
    left: z.number().int().nonnegative(),
  })
    .strict().optional(),
  /** SDXL micro-conditioning: the target size (default the image size). */
  targetSize: z.object({ width: z.number().int().positive(), height: z.number().int().positive() })
    .strict().optional(),
};

/** The Job of `denoise generate`. */
export const GenerateJob = defineJob("generate", {
  ...diffusionFields,
  /** A1111 hires fix: upscale factor (unset = off). */
  hiresScale: z.number().min(1).max(8).optional(),
  /** Hires fix steps (default: the same as steps). */
  hiresSteps: z.number().int().min(1).max(1000).optional(),
  /** Hires fix denoising strength. */
  hiresStrength: z.number().min(0).max(1).default(0.7),
  /**
   * Hires fix upscaler: "latent" (in latent space), "lanczos" (on decoded pixels), or an
   * ESRGAN-family model (a .pth/.safetensors file or an alias from models.lock.json) run on the
   * decoded pixels.
   */
  hiresUpscaler: z.string().min(1).default("latent"),
  /** An SDXL refiner model that finishes the denoising (folder or alias). */
  refiner: z.string().optional(),
  /** Fraction of the schedule the base model denoises before the refiner takes over. */
  refinerSwitch: z.number().gt(0).lt(1).default(0.8),
});

/** A `denoise generate` Job. */
export type GenerateJob = z.infer<typeof GenerateJob>;

/** The Job of `denoise img2img`. */
export const Img2ImgJob = defineJob("img2img", {
  ...diffusionFields,
  /** How much of the input to repaint (A1111 "Denoising strength"). */
  strength: z.number().min(0).max(1).default(0.75),
  /** The input image's name, for the record (the pixels come from --image). */
  image: z.string().optional(),
  /** Inpainting mask image (white repaints, black keeps); read again when the Job is replayed. */
  mask: z.string().optional(),
  /** A1111 mask blur in pixels; also pastes the original back through the blurred mask. */
  maskBlur: z.number().min(0).max(256).optional(),
  /** A1111 "Inpaint area: Only masked": inpaint a crop around the mask at the processing size. */
  inpaintFullRes: z.boolean().default(false),
  /** A1111 "Masked area padding": pixels around the mask's bounding box. */
  inpaintFullResPadding: z.number().int().min(0).max(16384).default(32),
  /**
   * How the input is brought to `width` x `height` when they differ from its size (A1111's
   * "Resize mode"; not used with `inpaintFullRes`, where the size is the processing size).
   */
  resizeMode: z.enum(RESIZE_MODES).default("just-resize"),
});

/** A `denoise img2img` Job. */
export type Img2ImgJob = z.infer<typeof Img2ImgJob>;
