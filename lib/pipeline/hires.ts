/**
 * A1111's hires fix (`generate --hires-scale`), after modules/processing.py
 * (`StableDiffusionProcessingTxt2Img.sample` and `sample_hr_pass`):
 * 1. txt2img at the base size (exactly {@linkcode txt2img}'s latents);
 * 2. upscale: "latent" resizes the latents with `F.interpolate(mode="bilinear",
 *    antialias=False)` (A1111's default "Latent" upscaler); "lanczos" decodes, resizes the 8-bit
 *    pixels with Lanczos and encodes again; a model upscaler (ESRGAN family) decodes, runs the
 *    model on the 8-bit pixels as A1111's `Upscaler.upscale` does (up to three passes until the
 *    image reaches the target, then PIL's Lanczos to the size on the grid of 8, then to the
 *    target; {@linkcode upscaleToSize}) and encodes again;
 * 3. img2img from those latents: A1111 runs exactly `hiresSteps` steps, the tail of a schedule
 *    of `int(hiresSteps / min(strength, 0.999))` steps (`setup_img2img_steps` with explicit
 *    steps), with noise from a fresh generator per image seeded like the first pass
 *    (`rng.ImageRNG(...)`, `noise = self.rng.next()`), whose stream then feeds ancestral steps;
 * 4. decode at the target size.
 *
 * Prompt schedules (`[a:b:0.5]`) in the second pass count through its whole N-step schedule, as
 * this project's img2img does (A1111 counts only the steps it runs).
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { imageToTensor, type RawImage, resizeImage } from "../image/codec.ts";
import { pilResize } from "../image/pil_resample.ts";
import type { Nchw } from "../models/vae.ts";
import type { NoiseGenerator } from "../rng/mod.ts";
import {
  checkSize,
  condition,
  decodeImages,
  encodeImageLatents,
  runLoop,
  txt2img,
  type Txt2ImgParams,
} from "./generate.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import { batchGenerator, makeScheduler } from "./sampling.ts";
import { interpolateBilinear } from "../tensor/interpolate.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/** Hires fix parameters: a txt2img run plus the second pass. */
export interface HiresParams extends Txt2ImgParams {
  /** Upscale factor of the second pass (A1111 "Upscale by"). */
  hiresScale: number;
  /** Steps the second pass runs (default: `steps`). */
  hiresSteps?: number | undefined;
  /** A1111 "Denoising strength" of the second pass, in (0, 1]. */
  hiresStrength: number;
  /**
   * "latent": bilinear in latent space; "lanczos": on decoded pixels; a model: on decoded pixels
   * with an upscaling network (see {@linkcode ModelUpscaler}).
   */
  hiresUpscaler: "latent" | "lanczos" | ModelUpscaler;
}

/**
 * A pixel upscaling network (ESRGAN family) as the hires fix uses it. The pipeline does not open
 * upscaler files itself: the runner gets an opener (lib/upscale) and hands the model over.
 */
export interface ModelUpscaler {
  /** The name the infotext shows ("Hires upscaler: <name>"). */
  readonly name: string;
  /** One pass of the network on 8-bit RGB (A1111's `do_upscale`): 8-bit RGB, larger. */
  run(image: RawImage): Promise<RawImage>;
  /** Frees the network (the runner calls it when the run ends). */
  release?(): Promise<void>;
}

/** Opens the model a Job's `hiresUpscaler` names (a file or an alias). */
export type ModelUpscalerOpener = (spec: string) => Promise<ModelUpscaler>;

/**
 * A1111's `Upscaler.upscale` followed by `images.resize_image`'s final resize (modules/upscaler.py
 * and images.py, resize mode "Just resize"): the model runs up to three times until the image
 * covers `int(w * s) // 8 * 8` x `int(h * s) // 8 * 8` (s = the larger of the two ratios; a pass
 * that does not grow the image stops the loop), the result is resized to that size with PIL's
 * Lanczos when it differs, and then to `width` x `height` when that differs too.
 *
 * @example
 * ```ts ignore
 * const big = await upscaleToSize(upscaler, image, 1024, 1024);
 * ```
 */
export async function upscaleToSize(
  upscaler: ModelUpscaler,
  image: RawImage,
  width: number,
  height: number,
): Promise<RawImage> {
  const scale = Math.max(width / image.width, height / image.height);
  let img = image;
  if (scale > 1) {
    const destW = Math.trunc(Math.floor((img.width * scale) / 8) * 8);
    const destH = Math.trunc(Math.floor((img.height * scale) / 8) * 8);
    for (let i = 0; i < 3; i++) {
      if (img.width >= destW && img.height >= destH && (i > 0 || scale !== 1)) break;
      const before = [img.width, img.height];
      img = await upscaler.run(img);
      if (img.width === before[0] && img.height === before[1]) break;
    }
    if (img.width !== destW || img.height !== destH) img = pilResize(img, destW, destH, "lanczos");
  }
  if (img.width !== width || img.height !== height) img = pilResize(img, width, height, "lanczos");
  return img;
}

/** The outcome of a hires fix batch. */
export interface HiresResult {
  /** Final latents `[N, C, H/f, W/f]` at the target size. */
  latents: Nchw;
  /** Decoded images at the target size. */
  images: RawImage[];
  /** The first pass's latents at the base size. */
  firstPass: Nchw;
  /** The second pass's generator, positioned after its last draw. */
  generator: NoiseGenerator;
}

/**
 * The second pass's size: `int(base * scale)` as A1111's `hr_upscale_to_x/y`, rounded down to
 * the VAE grid (A1111 interpolates the latents to `target // 8`).
 *
 * @example
 * ```ts
 * import { hiresSize } from "./hires.ts";
 * console.assert(hiresSize(512, 512, { scale: 1.5, factor: 8 }).width === 768);
 * console.assert(hiresSize(520, 512, { scale: 1.5, factor: 8 }).width === 776);
 * ```
 */
export function hiresSize(
  width: number,
  height: number,
  options: { scale: number; factor: number },
): { width: number; height: number } {
  const { scale, factor } = options;
  if (!(scale >= 1) || !Number.isFinite(scale)) {
    throw new RangeError(`Hires scale must be a finite number >= 1, got ${scale}`);
  }
  const snap = (v: number) => Math.floor(Math.trunc(v * scale) / factor) * factor;
  return { width: snap(width), height: snap(height) };
}

/**
 * The first pass: {@linkcode txt2img}'s steps 1-4 (scheduler, conditioning, seeded noise, loop),
 * returning the latents without decoding them. Equal to `txt2img(sd, p).latents`.
 */
export async function hiresFirstPass(sd: StableDiffusion, p: Txt2ImgParams): Promise<Nchw> {
  return (await txt2img(sd, { ...p, decode: false })).latents;
}

/** A1111's lowres image: `(255 * clamp((x + 1) / 2, 0, 1)).astype(np.uint8)` (truncating). */
function truncatedImage(pixels: Float32Array, width: number, height: number): RawImage {
  const plane = width * height;
  const data = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.min(1, Math.max(0, Math.fround(Math.fround(pixels[c * plane + i]! + 1) / 2)));
      data[i * 3 + c] = Math.trunc(Math.fround(255 * v));
    }
  }
  return { width, height, channels: 3, data };
}

/** Runs the hires fix (see the module documentation for the steps). */
export async function hiresFix(sd: StableDiffusion, p: HiresParams): Promise<HiresResult> {
  const f = vaeFactor(sd.model);
  const target = hiresSize(p.width, p.height, { scale: p.hiresScale, factor: f });
  checkSize(sd, target.width, target.height, p.maxPixels);
  const steps = p.hiresSteps ?? p.steps;
  if (!(p.hiresStrength > 0 && p.hiresStrength <= 1)) {
    throw new UsageError(`Hires strength ${p.hiresStrength} leaves no denoising step`, {
      hint: "pass --hires-strength between 0 (exclusive) and 1",
    });
  }
  const onProgress = p.onProgress;
  // 1. First pass at the base size
  const firstPass = await hiresFirstPass(sd, p);
  const n = p.seeds.length;
  const [, c] = firstPass.dims;
  const [h, w] = [target.height / f, target.width / f];
  const shape: [number, number, number, number] = [n, c, h, w];
  // 2. Upscale
  let upscaled: Nchw;
  if (p.hiresUpscaler === "latent") {
    upscaled = interpolateBilinear(firstPass, h, w);
  } else {
    const decoded = await sd.decode(firstPass, { tiled: p.vaeTiling ?? false });
    const plane = 3 * p.width * p.height;
    const pixels = new Float32Array(n * 3 * target.width * target.height);
    for (let k = 0; k < n; k++) {
      const low = truncatedImage(
        decoded.data.subarray(k * plane, (k + 1) * plane),
        p.width,
        p.height,
      );
      const high = p.hiresUpscaler === "lanczos"
        ? await resizeImage(low, target.width, target.height, { kernel: "lanczos3" })
        : await upscaleToSize(p.hiresUpscaler, low, target.width, target.height);
      pixels.set(imageToTensor(high), k * 3 * target.width * target.height);
    }
    // A1111 encodes with its own (global) RNG before the pass's noise generator is made; a
    // separate generator per seed keeps the noise stream below the first draws of the seed.
    const data = new Float32Array(n * c * h * w);
    for (let k = 0; k < n; k++) {
      const one = await encodeImageLatents(sd, {
        data: pixels.subarray(
          k * 3 * target.width * target.height,
          (k + 1) * 3 * target.width * target.height,
        ),
        dims: [1, 3, target.height, target.width],
      }, { n: 1, rng: batchGenerator(p.rng, [p.seeds[k]!]), tiled: p.vaeTiling ?? false });
      data.set(one.data, k * c * h * w);
    }
    upscaled = { data, dims: shape };
  }
  // 3. img2img: the last `steps` steps of an int(steps / min(strength, 0.999))-step schedule
  const scheduler = makeScheduler(sd.model.schedulerConfig, p.sampler, p.schedule);
  const total = Math.trunc(steps / Math.min(p.hiresStrength, 0.999));
  scheduler.setTimesteps(total);
  const startIndex = (total - steps) * scheduler.order;
  if (startIndex >= scheduler.timesteps.length) {
    throw new UsageError(`Hires steps ${steps} with strength ${p.hiresStrength} leave no step`, {
      hint: "raise --hires-steps or --hires-strength",
    });
  }
  const conditioning = await condition(sd, p, scheduler, target);
  const rng = batchGenerator(p.rng, p.seeds);
  const noise = rng.randn(shape);
  const latents = scheduler.addNoise(upscaled.data, noise, startIndex);
  const final = await runLoop(sd, { ...p, ...(onProgress ? { onProgress } : {}) }, {
    scheduler,
    latents,
    shape,
    startIndex,
    conditioning,
    rng,
  });
  // 4. Decode at the target size
  const out: Nchw = { data: final, dims: shape };
  return {
    latents: out,
    images: await decodeImages(sd, out, p.vaeTiling ?? false),
    firstPass,
    generator: rng,
  };
}
