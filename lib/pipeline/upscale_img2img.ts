/**
 * Img2img super-resolution, one pass (book chapter 11.1, "Upscaling images using Img2img
 * diffusion"): the image, already resized to the output size, goes through img2img at a low
 * strength, so the model redraws fine detail and keeps the content. Any SD model, LoRA and prompt
 * work.
 *
 * Outputs larger than the model's native size are denoised in overlapping latent tiles blended
 * at every step (MultiDiffusion, lib/pipeline/multidiffusion.ts) and encoded and decoded by the
 * VAE in tiles (Diffusers' tiled VAE), so memory follows the tile, not the image, and no seam
 * shows. An image that fits in one tile runs exactly as `img2img` (generate.ts): the same draws,
 * the same calls, the same latents.
 *
 * @module
 */
import { type Nchw, needsTiling } from "../models/vae.ts";
import type { NoiseGenerator } from "../rng/mod.ts";
import type { UnetCall } from "./denoise.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import {
  checkSize,
  condition,
  type DiffusionParams,
  encodeImageLatents,
  runLoop,
  strengthSchedule,
} from "./generate.ts";
import { multiDiffusionUnet, type TileHook } from "./multidiffusion.ts";
import { batchGenerator } from "./sampling.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/** Parameters of {@linkcode upscaleImg2Img}. */
export interface UpscaleImg2ImgParams extends DiffusionParams {
  /** `[1, 3, H, W]` pixels in [-1, 1] at the output size; H and W multiples of the VAE factor. */
  image: Nchw;
  /** How much to redraw (the book: 0.3). */
  strength: number;
  /**
   * Side of the UNet's tiles in pixels, a multiple of the VAE factor (default: the model's native
   * size, 512 for SD 1.5, 1024 for SDXL); 0 runs the whole latent at once.
   */
  tile?: number | undefined;
  /** Pixels neighbouring tiles share (default a quarter of the tile). */
  overlap?: number | undefined;
  /**
   * Changes each tile's UNet input before its call: a ControlNet-tile upscale adds the residuals
   * of its ControlNet run on the tile's crop of the control image here.
   */
  tileHooks?: readonly TileHook[] | undefined;
  /** Called after each UNet tile call with (done, total) of the step. */
  onTile?: ((done: number, total: number) => void) | undefined;
}

/** What {@linkcode upscaleImg2Img} made. */
export interface UpscaleImg2ImgResult {
  /** Final latents `[N, C, H/f, W/f]`. */
  latents: Nchw;
  /** Decoded pixels `[N, 3, H, W]` in [-1, 1] (not clamped, not quantised). */
  pixels: Nchw;
  /** UNet tiles per step (1 when the latent ran whole). */
  tiles: number;
  /** True when the VAE ran in tiles. */
  vaeTiled: boolean;
  /** The noise generator, positioned after the last draw. */
  generator: NoiseGenerator;
}

/**
 * The default UNet tile of a model in pixels: its native size (`sample_size * f`).
 *
 * @example
 * ```ts ignore
 * console.log(defaultUpscaleTile(sd)); // 512 for SD 1.5
 * ```
 */
export function defaultUpscaleTile(sd: StableDiffusion): number {
  return sd.model.unet.config.sampleSize * vaeFactor(sd.model);
}

/**
 * The latent grid tiles start on: the UNet's downsampling factor (so each tile's convolutions
 * line up with the whole latent's), halved until a step between tiles spans at least two grid
 * cells (so rounding starts down to the grid never makes two tiles coincide).
 *
 * @example
 * ```ts
 * import { tileGridMultiple } from "./upscale_img2img.ts";
 * console.assert(tileGridMultiple(8, 64, 16) === 8); // SD 1.5 at 512 px tiles
 * console.assert(tileGridMultiple(8, 16, 4) === 4);
 * ```
 */
export function tileGridMultiple(downsampling: number, tile: number, overlap: number): number {
  let m = Math.max(1, downsampling);
  while (m > 1 && tile - overlap - (m - 1) < 2 * m) m /= 2;
  return m;
}

/**
 * One img2img super-resolution pass; see the module documentation. The steps are those of
 * `img2img`: scheduler and timesteps for `strength`, conditioning, the VAE posterior
 * sample (first draw), noise to the first kept timestep (second draw), the loop (here with the
 * tiled UNet), decode (to floats).
 *
 * @example
 * ```ts ignore
 * const { pixels } = await upscaleImg2Img(sd, { ...params, image, strength: 0.3 });
 * ```
 */
export async function upscaleImg2Img(
  sd: StableDiffusion,
  p: UpscaleImg2ImgParams,
): Promise<UpscaleImg2ImgResult> {
  const [, , height, width] = p.image.dims;
  checkSize(sd, width, height);
  const f = vaeFactor(sd.model);
  const tile = p.tile ?? defaultUpscaleTile(sd);
  const overlap = p.overlap ?? Math.floor(tile / 4 / f) * f;
  if (!Number.isInteger(tile) || tile < 0 || tile % f !== 0) {
    throw new RangeError(`The tile must be 0 or a multiple of ${f} pixels, got ${tile}`);
  }
  if (!Number.isInteger(overlap) || overlap < 0 || overlap % f !== 0) {
    throw new RangeError(`The tile overlap must be a multiple of ${f} pixels, got ${overlap}`);
  }
  const latentTile = tile === 0 ? Math.max(width, height) / f : tile / f;
  const latentDims = [1, sd.model.unet.config.inChannels, height / f, width / f];
  const vaeTiled = (p.vaeTiling ?? false) || needsTiling(latentDims, sd.model.vae.config);
  let tiles = 1;
  const multiple = tileGridMultiple(
    2 ** (sd.model.unet.config.blockOutChannels.length - 1),
    latentTile,
    overlap / f,
  );
  // The caller's own wrapper (if any) runs inside, on each tile.
  const unetWrapper = (unet: UnetCall) =>
    multiDiffusionUnet(p.unetWrapper ? p.unetWrapper(unet) : unet, {
      tile: latentTile,
      overlap: overlap / f,
      multiple,
      ...(p.tileHooks !== undefined ? { tileHooks: p.tileHooks } : {}),
      onTile: (done, total) => {
        tiles = total;
        p.onTile?.(done, total);
      },
    });
  // 1. Scheduler and timesteps
  const { scheduler, startIndex } = strengthSchedule(sd, p);
  // 2. Conditioning
  const conditioning = await condition(sd, p, scheduler, { width, height });
  // 3. Encode the image; the posterior sample is the first draw of each image's generator
  const rng = batchGenerator(p.rng, p.seeds);
  const init = await encodeImageLatents(sd, p.image, {
    n: p.seeds.length,
    rng,
    tiled: vaeTiled,
  });
  if (sd.options.lowMemory) await sd.releaseSession("vae_encoder");
  const shape = init.dims;
  // 4. Noise to the first kept timestep
  const noise = rng.randn(shape);
  const latents = scheduler.addNoise(init.data, noise, startIndex);
  // 5. Denoising loop, the UNet in tiles
  const final = await runLoop(sd, { ...p, unetWrapper }, {
    scheduler,
    latents,
    shape,
    startIndex,
    conditioning,
    rng,
  });
  // 6. Decode to floats
  const out: Nchw = { data: final, dims: shape };
  const pixels = await sd.decode(out, { tiled: vaeTiled });
  return { latents: out, pixels, tiles, vaeTiled, generator: rng };
}
