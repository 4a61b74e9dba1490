/**
 * Inpainting (`img2img --mask`), read top to bottom like diffusers 0.27
 * `StableDiffusionInpaintPipeline.__call__` (pipelines/stable_diffusion/
 * pipeline_stable_diffusion_inpaint.py): the same mask preprocessing, the same generator draws in
 * the same order, and either the 9-channel UNet input `cat(latents, mask, masked_image_latents)`
 * or, for a normal 4-channel UNet, the known region blended back after every step.
 *
 * A1111 extras: `maskBlur` blurs the mask before it is binarised and pastes the original pixels
 * back through the blurred mask at the end (modules/processing.py `apply_overlay`).
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { type RawImage, tensorToImage } from "../image/codec.ts";
import {
  binarizeMask,
  blurMask,
  type MaskImage,
  overlayOriginal,
  resizeNearest,
} from "../image/mask.ts";
import type { NoiseGenerator } from "../rng/mod.ts";
import type { Scheduler } from "../schedulers/mod.ts";
import type { Nchw } from "../models/vae.ts";
import {
  checkSize,
  condition,
  decodeImages,
  type DiffusionParams,
  encodeImageLatents,
  runLoop,
  strengthSchedule,
} from "./generate.ts";
import { extraChannelsHook, type LoopHook } from "./denoise.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import { batchGenerator } from "./sampling.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/** Inpainting parameters. */
export interface InpaintParams extends DiffusionParams {
  /** The input as `[1, 3, H, W]` pixels in [-1, 1]; H and W multiples of the VAE factor. */
  image: Nchw;
  /** The mask, H x W: white repaints, black keeps. */
  mask: MaskImage;
  /** How much to repaint (Diffusers `strength`; 1 starts from pure noise). */
  strength: number;
  /** A1111 mask blur in pixels (0 = off, Diffusers' behaviour exactly). */
  maskBlur?: number;
}

/** What the denoising loop of an inpainting run starts from. */
export interface InpaintSetup {
  /** `[N, C, h, w]` latents at the first step's noise level. */
  latents: Float32Array;
  shape: [number, number, number, number];
  startIndex: number;
  /** The binarised mask on the latent grid, `[h * w]` of 0/1. */
  latentMask: Float32Array;
  /** 9-channel UNets: `[N, 1 + C, h, w]` mask and masked-image latents per image. */
  extraChannels?: { data: Float32Array; channels: number };
  /** 4-channel UNets: blends the known region back after step `i`. */
  afterStep?: (latents: Float32Array, i: number) => Float32Array;
  /** The mask after blurring (A1111), at image size. */
  mask: MaskImage;
}

/** Checks that the mask matches the image and the UNet can inpaint. */
function checkInputs(sd: StableDiffusion, p: InpaintParams): void {
  const [, , height, width] = p.image.dims;
  if (p.mask.width !== width || p.mask.height !== height) {
    throw new UsageError(
      `The mask is ${p.mask.width}x${p.mask.height} but the image is ${width}x${height}`,
      { hint: "pass a mask of the same size as the image" },
    );
  }
  const unet = sd.model.unet.config.inChannels;
  const latent = sd.model.vae.config.latentChannels;
  if (unet !== latent && unet !== 2 * latent + 1) {
    throw new RangeError(
      `Cannot inpaint with a UNet of ${unet} input channels: expected ${latent} (masked ` +
        `img2img) or ${2 * latent + 1} (an inpainting model)`,
    );
  }
}

/**
 * Steps 3-5 of the pipeline, exposed for tests: mask and masked image, the image latents and
 * initial latents, and the masked-image latents, drawing from `rng` in Diffusers' order:
 * 1. image latents (`prepare_latents`, only for 4-channel UNets or strength < 1);
 * 2. the noise `randn([N, C, h, w])`;
 * 3. masked-image latents (`prepare_mask_latents`, drawn even for 4-channel UNets, which do not
 *    use them, so that later ancestral noise matches).
 */
export async function prepareInpaint(
  sd: StableDiffusion,
  p: InpaintParams,
  options: { scheduler: Scheduler; rng: NoiseGenerator; startIndex: number },
): Promise<InpaintSetup> {
  checkInputs(sd, p);
  const { scheduler, rng, startIndex } = options;
  const [, , height, width] = p.image.dims;
  const f = vaeFactor(sd.model);
  const n = p.seeds.length;
  const c = sd.model.vae.config.latentChannels;
  const [h, w] = [height / f, width / f];
  const shape: [number, number, number, number] = [n, c, h, w];
  const plane = h * w;
  const tiled = p.vaeTiling ?? false;
  const nineChannels = sd.model.unet.config.inChannels !== c;
  const strengthMax = p.strength === 1;

  // Mask: A1111 blur (optional), then Diffusers' binarisation at 0.5.
  const mask = blurMask(p.mask, p.maskBlur ?? 0);
  const binary = binarizeMask(mask);
  // masked_image = init_image * (mask < 0.5)
  const masked = new Float32Array(p.image.data.length);
  const pixels = width * height;
  for (let ch = 0; ch < 3; ch++) {
    for (let i = 0; i < pixels; i++) {
      masked[ch * pixels + i] = binary[i]! < 0.5 ? p.image.data[ch * pixels + i]! : 0;
    }
  }
  // F.interpolate(mask, size=(h, w)), mode "nearest"
  const latentMask = resizeNearest(binary, width, height, w, h);

  // 1. Image latents
  let imageLatents: Float32Array | undefined;
  if (!nineChannels || !strengthMax) {
    imageLatents = (await encodeImageLatents(sd, p.image, { n, rng, tiled })).data;
  }
  // 2. Noise; pure noise at strength 1, else the image noised to the first kept timestep.
  const noise = rng.randn(shape);
  let latents: Float32Array;
  if (strengthMax) {
    latents = new Float32Array(noise.length);
    for (let i = 0; i < noise.length; i++) {
      latents[i] = Math.fround(noise[i]! * scheduler.initNoiseSigma);
    }
  } else {
    latents = scheduler.addNoise(imageLatents!, noise, startIndex);
  }
  // 3. Masked-image latents
  const maskedLatents = await encodeImageLatents(
    sd,
    { data: masked, dims: p.image.dims },
    { n, rng, tiled },
  );
  if (sd.options.lowMemory) await sd.releaseSession("vae_encoder");

  const setup: InpaintSetup = { latents, shape, startIndex, latentMask, mask };
  if (nineChannels) {
    // Per image: [mask (1 channel), masked_image_latents (C channels)]
    const e = 1 + c;
    const extra = new Float32Array(n * e * plane);
    for (let k = 0; k < n; k++) {
      extra.set(latentMask, k * e * plane);
      extra.set(
        maskedLatents.data.subarray(k * c * plane, (k + 1) * c * plane),
        (k * e + 1) * plane,
      );
    }
    setup.extraChannels = { data: extra, channels: e };
  } else {
    const known = imageLatents!;
    const total = scheduler.timesteps.length;
    setup.afterStep = (x, i) => {
      // init_latents_proper: the image noised to the next timestep (none after the last step).
      const proper = i + 1 < total ? scheduler.addNoise(known, noise, i + 1) : known;
      const out = new Float32Array(x.length);
      for (let j = 0; j < x.length; j++) {
        const m = latentMask[j % plane]!;
        // (1 - init_mask) * init_latents_proper + init_mask * latents
        out[j] = Math.fround(Math.fround((1 - m) * proper[j]!) + Math.fround(m * x[j]!));
      }
      return out;
    };
  }
  return setup;
}

/**
 * What an inpainting setup adds to the denoising loop: the extra input channels of a 9-channel
 * UNet, or the known region blended back after each step for a 4-channel one.
 */
export function inpaintHooks(setup: InpaintSetup): LoopHook[] {
  const hooks: LoopHook[] = [];
  if (setup.extraChannels) hooks.push(extraChannelsHook(setup.extraChannels));
  if (setup.afterStep) hooks.push({ afterStep: setup.afterStep });
  return hooks;
}

/** The outcome of an inpainting batch. */
export interface InpaintResult {
  /** Final latents `[N, C, h, w]` (scaled, as the UNet sees them). */
  latents: Nchw;
  /** Decoded images, one per batch item. */
  images: RawImage[];
  /** The binarised mask on the latent grid, `[h * w]` of 0/1. */
  latentMask: Float32Array;
  /** The noise generator, positioned after the last draw. */
  generator: NoiseGenerator;
}

/**
 * Inpainting:
 * 1. scheduler, and the tail of its timesteps for `strength` (`get_timesteps`);
 * 2. conditioning;
 * 3-5. mask, image latents, noise, masked-image latents ({@linkcode prepareInpaint});
 * 6. the loop: 9-channel UNets see `cat(scaled latents, mask, masked_image_latents)`; 4-channel
 *    UNets get the known region blended back after every step;
 * 7. decode; with `maskBlur`, the original pixels pasted back through the blurred mask (A1111).
 */
export async function inpaint(sd: StableDiffusion, p: InpaintParams): Promise<InpaintResult> {
  const [, , height, width] = p.image.dims;
  checkSize(sd, width, height, p.maxPixels);
  checkInputs(sd, p);
  // 1. Scheduler and timesteps
  const { scheduler, startIndex } = strengthSchedule(sd, p);
  // 2. Conditioning
  const conditioning = await condition(sd, p, scheduler, { width, height });
  // 3-5. Mask, latents and masked-image latents
  const rng = batchGenerator(p.rng, p.seeds);
  const setup = await prepareInpaint(sd, p, { scheduler, rng, startIndex });
  // 6. Denoising loop
  const final = await runLoop(sd, p, {
    scheduler,
    latents: setup.latents,
    shape: setup.shape,
    startIndex,
    conditioning,
    rng,
    hooks: inpaintHooks(setup),
  });
  // 7. Decode, and the A1111 overlay when the mask is blurred
  const out: Nchw = { data: final, dims: setup.shape };
  let images = await decodeImages(sd, out, p.vaeTiling ?? false, { releaseUnet: p.releaseUnet });
  if ((p.maskBlur ?? 0) > 0) {
    const original: RawImage = tensorToImage(p.image.data, width, height);
    images = images.map((image) => overlayOriginal(image, original, setup.mask));
  }
  return { latents: out, images, latentMask: setup.latentMask, generator: rng };
}
