/**
 * The Job of `denoise controlnet`: every generate field (hires fix included), the img2img and
 * inpainting inputs, and the ControlNets with their control images, scales and guidance windows.
 *
 * A control records its image's path and SHA-256, so a replay (`--job`) reads the image again
 * and refuses one that changed; a control with no path read its image from stdin.
 *
 * @module
 */
import { z } from "zod";
import { defineJob } from "./define.ts";
import { diffusionFields } from "./diffusion.ts";

/**
 * What feeds a net: `"none"`, the control image as given (RGB, scaled to [0, 1]); `"inpaint"`,
 * the img2img input with the masked pixels set to -1 (`control_v11p_sd15_inpaint`'s convention,
 * A1111's `inpaint_global_harmonious`), made from `--image` and `--mask`.
 */
export const CONTROL_MODULES = ["none", "inpaint"] as const;

/**
 * A1111's ControlNet control modes (the extension's `control_mode`): `"balanced"` (plain),
 * `"prompt"` ("My prompt is more important": residuals scaled by `0.825 ** (12 - k)`) and
 * `"control"` ("ControlNet is more important": those scales, and zeros for the unconditional
 * pass).
 */
export const CONTROL_MODES = ["balanced", "prompt", "control"] as const;

/** One of {@linkcode CONTROL_MODES}. */
export type ControlMode = typeof CONTROL_MODES[number];

/** One ControlNet of a run. */
export const ControlUnit = z.object({
  /** A Diffusers ControlNet folder, an original-layout `.pth`/`.safetensors` file, or an alias. */
  net: z.string().min(1),
  /** What feeds the net (see {@linkcode CONTROL_MODULES}). */
  module: z.enum(CONTROL_MODULES).default("none"),
  /** The control image file; absent with module "none": it came from stdin. */
  image: z.string().min(1).optional(),
  /** SHA-256 of the control image file's bytes, checked when the Job is replayed. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex digits").optional(),
  /** Diffusers `controlnet_conditioning_scale`. */
  scale: z.number().min(-100).max(100).default(1),
  /** Diffusers `control_guidance_start`: the fraction of the steps before the net starts. */
  start: z.number().min(0).max(1).default(0),
  /** Diffusers `control_guidance_end`: the fraction of the steps after which the net stops. */
  end: z.number().min(0).max(1).default(1),
}).strict().refine((c) => c.start <= c.end, {
  message: "start must not be after end",
  path: ["start"],
}).refine((c) => c.module === "none" || c.image === undefined, {
  message: 'a control with module "inpaint" is made from the input image and mask, not a file',
  path: ["image"],
});

/** One ControlNet of a run. */
export type ControlUnit = z.infer<typeof ControlUnit>;

/** The Job of `denoise controlnet`. */
export const ControlnetJob = defineJob("controlnet", {
  ...diffusionFields,
  /** The nets, their control images, scales and guidance windows (residuals are summed). */
  controls: z.array(ControlUnit).min(1).max(16),
  /**
   * Diffusers `guess_mode`: the nets see the conditional passes only, residuals scaled by
   * `logspace(-1, 0, n)`, zeros for the unconditional pass.
   */
  guessMode: z.boolean().default(false),
  /**
   * A1111's control mode for every net (see {@linkcode CONTROL_MODES}); not with `guessMode`
   * (both set the residuals' scales).
   */
  controlMode: z.enum(CONTROL_MODES).default("balanced"),
  /** A1111 hires fix: upscale factor (unset = off); the control images follow the size. */
  hiresScale: z.number().min(1).max(8).optional(),
  /** Hires fix steps (default: the same as steps). */
  hiresSteps: z.number().int().min(1).max(1000).optional(),
  /** Hires fix denoising strength. */
  hiresStrength: z.number().min(0).max(1).default(0.7),
  /** Hires fix upscaler: in latent space or on decoded pixels. */
  hiresUpscaler: z.enum(["latent", "lanczos"]).default("latent"),
  /**
   * img2img (StableDiffusionControlNetImg2ImgPipeline): how much of the input image to repaint;
   * recorded when an input image is used (default 0.75).
   */
  strength: z.number().min(0).max(1).optional(),
  /** The img2img input image's name (the pixels come from --image). */
  image: z.string().optional(),
  /** Inpainting mask image (white repaints, black keeps); read again when the Job is replayed. */
  mask: z.string().optional(),
  /** A1111 mask blur in pixels; also pastes the original back through the blurred mask. */
  maskBlur: z.number().min(0).max(256).optional(),
});

/** A `denoise controlnet` Job. */
export type ControlnetJob = z.infer<typeof ControlnetJob>;
