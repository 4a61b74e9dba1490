/**
 * txt2img and img2img, read top to bottom like Diffusers' `StableDiffusionPipeline.__call__`
 * and `StableDiffusionImg2ImgPipeline.__call__`: same noise draws in the same order, same
 * scheduler calls, same latent scaling, so a seed gives Diffusers' image.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { type RawImage, tensorToImage } from "../image/codec.ts";
import type { ProgressCallback } from "../io/progress.ts";
import { type Nchw, sampleLatent, scaleLatents } from "../models/vae.ts";
import type { NoiseGenerator } from "../rng/mod.ts";
import { LCMScheduler, type Scheduler } from "../schedulers/mod.ts";
import {
  denoiseLatents,
  type DenoiseOptions,
  type LoopHook,
  passRowsHook,
  type StepConditioning,
  type UnetCall,
} from "./denoise.ts";
import { guidanceScaleEmbedding } from "./lcm.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import { batchGenerator, makeScheduler } from "./sampling.ts";
import type { ScheduleName } from "../schedulers/mod.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";
import { interpolateBilinear } from "../tensor/interpolate.ts";

/** Builds the per-step conditioning of a run (see conditioning.ts). */
export type Conditioner = (
  sd: StableDiffusion,
  scheduler: Scheduler,
  size: { width: number; height: number },
) => Promise<(i: number) => StepConditioning>;

/** Parameters shared by txt2img and img2img. */
export interface DiffusionParams {
  steps: number;
  cfg: number;
  sampler?: string | undefined;
  schedule?: ScheduleName | undefined;
  /** One seed per image of the batch (image k of a run uses seed + k). */
  seeds: bigint[];
  rng: "cpu" | "nv";
  guidanceRescale?: number;
  vaeTiling?: boolean;
  /** Produces the conditioning once the scheduler's timesteps are known. */
  conditioner: Conditioner;
  /** Free the text encoders once this run's conditioning is built (its last use in a run). */
  releaseTextEncoders?: boolean;
  /**
   * Free the UNet before the final VAE decode (its last use in a run), so the decoder's
   * activations do not come on top of the UNet's weights.
   */
  releaseUnet?: boolean;
  /** Refuse outputs above this many pixels (default: no limit). */
  maxPixels?: number | undefined;
  /**
   * Loop plug-ins the run adds to every denoising loop of the task (after the task's own), e.g.
   * ControlNet residuals.
   */
  hooks?: readonly LoopHook[] | undefined;
  /**
   * Wraps the model's UNet call for every loop of the task (MultiDiffusion's tiled UNet,
   * lib/pipeline/multidiffusion.ts); absent: the UNet as it is.
   */
  unetWrapper?: ((unet: UnetCall) => UnetCall) | undefined;
  onProgress?: ProgressCallback;
}

/** txt2img parameters. */
export interface Txt2ImgParams extends DiffusionParams {
  width: number;
  height: number;
  /**
   * Stop at this fraction of the noise schedule and return noisy latents (Diffusers
   * `denoising_end`, for handing over to the SDXL refiner); images are then not decoded.
   */
  denoisingEnd?: number;
  /** Decode the final latents (default true); false returns latents only. */
  decode?: boolean;
}

/** Refiner parameters: continue from latents handed over at `denoisingStart`. */
export interface RefineParams extends DiffusionParams {
  latents: Nchw;
  /** Diffusers `denoising_start`: the fraction of the schedule already done. */
  denoisingStart: number;
  /** Reuse the base pass's generator so the noise stream continues. */
  generator?: NoiseGenerator;
}

/** img2img parameters. */
export interface Img2ImgParams extends DiffusionParams {
  /** The input as `[1, 3, H, W]` pixels in [-1, 1]; H and W multiples of the VAE factor. */
  image: Nchw;
  strength: number;
  /**
   * A1111's "Just resize (latent upscale)": the image is encoded at its own size and its latents
   * are resized to this size (`F.interpolate(mode="bilinear")`, as A1111 does) before noising.
   */
  latentResize?: { width: number; height: number };
}

/** The outcome of one batch. */
export interface DiffusionResult {
  /** Final latents `[N, C, h, w]` (scaled, as the UNet sees them). */
  latents: Nchw;
  /** Decoded images, one per batch item (none when stopped early at `denoisingEnd`). */
  images: RawImage[];
  /** The noise generator, positioned after the last draw. */
  generator?: NoiseGenerator;
}

/**
 * Diffusers' `discrete_timestep_cutoff` for `denoising_end` / `denoising_start`:
 * `round(T - fraction * T)` with T the training timesteps.
 */
export function timestepCutoff(config: Record<string, unknown>, fraction: number): number {
  if (!(fraction > 0 && fraction < 1)) {
    throw new UsageError(`The refiner switch must be between 0 and 1, got ${fraction}`);
  }
  const trainSteps = Number(config.num_train_timesteps ?? 1000);
  return Math.round(trainSteps - fraction * trainSteps);
}

/** Checks that a size fits the VAE grid and the pixel budget. */
export function checkSize(
  sd: StableDiffusion,
  width: number,
  height: number,
  maxPixels?: number,
): void {
  if (maxPixels !== undefined && width * height > maxPixels) {
    throw new UsageError(
      `Image size ${width}x${height} is ${width * height} pixels, above the limit of ${maxPixels}`,
      { hint: "pass --max-pixels N (or set DENOISE_MAX_PIXELS) to allow larger images" },
    );
  }
  const f = vaeFactor(sd.model);
  if (width % f !== 0 || height % f !== 0) {
    throw new UsageError(
      `Image size ${width}x${height} is not a multiple of ${f}, the model's VAE factor`,
      { hint: `use e.g. ${Math.round(width / f) * f}x${Math.round(height / f) * f}` },
    );
  }
}

function scaleInPlace(x: Float32Array, s: number): Float32Array {
  if (s !== 1) { for (let i = 0; i < x.length; i++) x[i] = Math.fround(x[i]! * s); }
  return x;
}

/**
 * Images larger than this many pixels are decoded in tiles even without `--vae-tiling`: an SD
 * VAE decoder holds about 3-4 KB of activations per output pixel (256 and 128 channels at full
 * resolution), so 2 MPixel would need 6-8 GB at once; a tile needs what a 512x512 image does.
 */
export const AUTO_TILE_PIXELS = 1536 * 1536;

/**
 * Decodes final latents into 8-bit images, one image per VAE call (each image's pixels are the
 * same as in a batched call; the activations are one image's), tiled when asked or when an
 * image has more than {@linkcode AUTO_TILE_PIXELS} pixels. With `releaseUnet` the UNet sessions
 * are freed first.
 */
export async function decodeImages(
  sd: StableDiffusion,
  latents: Nchw,
  tiled: boolean,
  options: { releaseUnet?: boolean | undefined } = {},
): Promise<RawImage[]> {
  if (options.releaseUnet) {
    await sd.releaseSession("unet");
    await sd.releaseSession("unet_controlnet");
  }
  const [n, c, h, w] = latents.dims;
  const f = vaeFactor(sd.model);
  const tile = tiled || h * f * w * f > AUTO_TILE_PIXELS;
  const images: RawImage[] = [];
  const latentPlane = c * h * w;
  for (let k = 0; k < n; k++) {
    const one: Nchw = {
      data: latents.data.subarray(k * latentPlane, (k + 1) * latentPlane),
      dims: [1, c, h, w],
    };
    const pixels = await sd.decode(one, { tiled: tile });
    images.push(tensorToImage(pixels.data, w * f, h * f));
  }
  return images;
}

/**
 * Encodes `[1, 3, H, W]` pixels and returns `n` scaled latents `[N, C, h, w]`:
 * `scaling_factor * latent_dist.sample(generator)`, one posterior draw of `[N, C, h, w]` from
 * `rng` (with a batch generator, one `[1, C, h, w]` draw per image), as Diffusers'
 * `_encode_vae_image` and `retrieve_latents` do.
 */
export async function encodeImageLatents(
  sd: StableDiffusion,
  pixels: Nchw,
  options: { n: number; rng: NoiseGenerator; tiled?: boolean },
): Promise<Nchw> {
  const posterior = await sd.encode(pixels, { tiled: options.tiled ?? false });
  const { n } = options;
  const [b, c, h, w] = posterior.mean.dims;
  const shape: [number, number, number, number] = [n, c, h, w];
  const repeat = (x: Nchw): Nchw => {
    if (b === n) return x;
    const out = new Float32Array(n * x.data.length);
    for (let k = 0; k < n; k++) out.set(x.data, k * x.data.length);
    return { data: out, dims: shape };
  };
  const batched = {
    mean: repeat(posterior.mean),
    logvar: repeat(posterior.logvar),
    std: repeat(posterior.std),
  };
  const sample = sampleLatent(batched, options.rng.randn(shape));
  return { data: scaleLatents({ data: sample, dims: shape }, sd.model.vae.config), dims: shape };
}

/**
 * The scheduler for an img2img-style run: `set_timesteps(steps)` and the tail kept for
 * `strength` (Diffusers `get_timesteps`). An LCM with a guidance embedding on its LCMScheduler
 * instead runs every one of `steps` timesteps drawn from the first `strength` of the
 * distillation schedule (LatentConsistencyModelImg2ImgPipeline:
 * `set_timesteps(steps, strength=strength)`, no `get_timesteps`). Refuses a strength that
 * leaves no step.
 */
export function strengthSchedule(
  sd: StableDiffusion,
  p: Pick<DiffusionParams, "sampler" | "schedule" | "steps"> & { strength: number },
  hint = "raise --strength or --steps",
): { scheduler: Scheduler; startIndex: number } {
  const scheduler = makeScheduler(sd.model.schedulerConfig, p.sampler, p.schedule);
  if (sd.model.unet.config.timeCondProjDim !== null && scheduler instanceof LCMScheduler) {
    scheduler.setTimesteps(p.steps, p.strength);
    return { scheduler, startIndex: 0 };
  }
  const { timesteps, startIndex } = scheduler.img2imgTimesteps(p.steps, p.strength);
  if (timesteps.length === 0) {
    throw new UsageError(`Strength ${p.strength} with ${p.steps} steps leaves no denoising step`, {
      hint,
    });
  }
  return { scheduler, startIndex };
}

/** Builds the conditioning, then frees the text encoders in low-memory mode or when asked. */
export async function condition(
  sd: StableDiffusion,
  p: Pick<DiffusionParams, "conditioner" | "releaseTextEncoders">,
  scheduler: Scheduler,
  size: { width: number; height: number },
): Promise<(i: number) => StepConditioning> {
  const conditioning = await p.conditioner(sd, scheduler, size);
  if (sd.options.lowMemory || p.releaseTextEncoders) {
    await sd.releaseSession("text_encoder");
    await sd.releaseSession("text_encoder_2");
  }
  return conditioning;
}

/** What {@linkcode runLoop} adds to the Job's own loop options. */
export type LoopOptions = Omit<
  DenoiseOptions,
  "guidanceScale" | "guidanceRescale" | "guidance" | "unet" | "onProgress"
>;

/**
 * The denoising loop with the Job's guidance, the model's UNet and progress; frees the UNet after
 * in low-memory mode. A UNet with `time_cond_proj_dim` (LCM) gets the guidance scale as its
 * `timestep_cond` embedding, one row per image, and runs without CFG (Diffusers'
 * LatentConsistencyModelPipeline).
 */
export async function runLoop(
  sd: StableDiffusion,
  p: Pick<DiffusionParams, "cfg" | "guidanceRescale" | "hooks" | "unetWrapper" | "onProgress">,
  loop: LoopOptions,
): Promise<Float32Array> {
  const condDim = sd.model.unet.config.timeCondProjDim;
  const hooks = [...(loop.hooks ?? []), ...(p.hooks ?? [])];
  if (condDim !== null) {
    const rows = guidanceScaleEmbedding(new Array(loop.shape[0]).fill(p.cfg), condDim);
    hooks.push(passRowsHook("timestep_cond", rows, condDim));
  }
  const final = await denoiseLatents({
    ...loop,
    hooks,
    ...(condDim !== null ? { guidance: "embedded" as const } : {}),
    guidanceScale: p.cfg,
    guidanceRescale: p.guidanceRescale ?? 0,
    unet: p.unetWrapper ? p.unetWrapper(sd.unetCall()) : sd.unetCall(),
    ...(p.onProgress ? { onProgress: p.onProgress } : {}),
  });
  if (sd.options.lowMemory) {
    await sd.releaseSession("unet");
    await sd.releaseSession("unet_controlnet");
  }
  return final;
}

/** Decodes final latents into a result. */
async function finish(
  sd: StableDiffusion,
  p: Pick<DiffusionParams, "vaeTiling" | "releaseUnet">,
  latents: Nchw,
  generator: NoiseGenerator,
): Promise<DiffusionResult> {
  const images = await decodeImages(sd, latents, p.vaeTiling ?? false, {
    releaseUnet: p.releaseUnet,
  });
  return { latents, images, generator };
}

/**
 * txt2img:
 * 1. scheduler and timesteps; 2. conditioning per step; 3. initial noise
 * `randn([N, C, h, w]) * init_noise_sigma` from the seeded generator; 4. denoising loop (the
 * same generator feeds ancestral noise); 5. VAE decode.
 */
export async function txt2img(sd: StableDiffusion, p: Txt2ImgParams): Promise<DiffusionResult> {
  checkSize(sd, p.width, p.height, p.maxPixels);
  // 1. Scheduler
  const scheduler = makeScheduler(sd.model.schedulerConfig, p.sampler, p.schedule);
  scheduler.setTimesteps(p.steps);
  // 2. Conditioning
  const conditioning = await condition(sd, p, scheduler, { width: p.width, height: p.height });
  // 3. Initial latents
  const f = vaeFactor(sd.model);
  const channels = sd.model.unet.config.outChannels;
  const shape: [number, number, number, number] = [
    p.seeds.length,
    channels,
    p.height / f,
    p.width / f,
  ];
  const rng = batchGenerator(p.rng, p.seeds);
  const latents = scaleInPlace(rng.randn(shape), scheduler.initNoiseSigma);
  // 4. Denoising loop (to `denoising_end` when handing over to a refiner)
  let endIndex: number | undefined;
  if (p.denoisingEnd !== undefined) {
    const cutoff = timestepCutoff(sd.model.schedulerConfig, p.denoisingEnd);
    endIndex = [...scheduler.timesteps].filter((t) => t >= cutoff).length;
  }
  const final = await runLoop(sd, p, {
    scheduler,
    latents,
    shape,
    ...(endIndex !== undefined ? { endIndex } : {}),
    conditioning,
    rng,
  });
  // 5. Decode
  const out: Nchw = { data: final, dims: shape };
  if (endIndex !== undefined || p.decode === false) {
    return { latents: out, images: [], generator: rng };
  }
  return await finish(sd, p, out, rng);
}

/**
 * The SDXL refiner stage (StableDiffusionXLImg2ImgPipeline with `denoising_start`): the tail of
 * the schedule below the cutoff (one more step for second-order schedulers with an even count),
 * starting from the handed-over latents with no new noise, then decode.
 */
export async function refine(sd: StableDiffusion, p: RefineParams): Promise<DiffusionResult> {
  const [, , h, w] = p.latents.dims;
  const f = vaeFactor(sd.model);
  // 1. Scheduler: the timesteps below the cutoff
  const scheduler = makeScheduler(sd.model.schedulerConfig, p.sampler, p.schedule);
  scheduler.setTimesteps(p.steps);
  const cutoff = timestepCutoff(sd.model.schedulerConfig, p.denoisingStart);
  let count = [...scheduler.timesteps].filter((t) => t < cutoff).length;
  if (scheduler.order === 2 && count % 2 === 0) count += 1;
  const startIndex = scheduler.timesteps.length - count;
  if (count <= 0) {
    throw new UsageError(`The refiner switch ${p.denoisingStart} leaves the refiner no step`, {
      hint: "lower --refiner-switch or raise --steps",
    });
  }
  // 2. Conditioning
  const conditioning = await p.conditioner(sd, scheduler, { width: w * f, height: h * f });
  if (sd.options.lowMemory) await sd.releaseSession("text_encoder_2");
  // 3. The loop, continuing the base pass's noise stream
  const rng = p.generator ?? batchGenerator(p.rng, p.seeds);
  const final = await runLoop(sd, p, {
    scheduler,
    latents: p.latents.data,
    shape: p.latents.dims,
    startIndex,
    conditioning,
    rng,
  });
  return await finish(sd, p, { data: final, dims: p.latents.dims }, rng);
}

/**
 * img2img:
 * 1. scheduler, and the tail of its timesteps for `strength` (Diffusers `get_timesteps`);
 * 2. conditioning; 3. encode the image: `latent_dist.sample(generator)` draws first, then
 * `scaling_factor`; 4. `add_noise` with a second draw at the first kept timestep; 5. the loop;
 * 6. decode.
 */
export async function img2img(sd: StableDiffusion, p: Img2ImgParams): Promise<DiffusionResult> {
  const [, , imageHeight, imageWidth] = p.image.dims;
  checkSize(sd, imageWidth, imageHeight);
  const { width, height } = p.latentResize ?? { width: imageWidth, height: imageHeight };
  checkSize(sd, width, height, p.maxPixels);
  // 1. Scheduler and timesteps
  const { scheduler, startIndex } = strengthSchedule(sd, p);
  // 2. Conditioning
  const conditioning = await condition(sd, p, scheduler, { width, height });
  // 3. Encode the image; the posterior sample is the first draw of each image's generator
  const rng = batchGenerator(p.rng, p.seeds);
  let init = await encodeImageLatents(sd, p.image, {
    n: p.seeds.length,
    rng,
    tiled: p.vaeTiling ?? false,
  });
  if (sd.options.lowMemory) await sd.releaseSession("vae_encoder");
  if (p.latentResize !== undefined) {
    const f = vaeFactor(sd.model);
    init = interpolateBilinear(init, height / f, width / f);
  }
  const shape = init.dims;
  // 4. Noise to the first kept timestep
  const noise = rng.randn(shape);
  const latents = scheduler.addNoise(init.data, noise, startIndex);
  // 5. Denoising loop
  const final = await runLoop(sd, p, { scheduler, latents, shape, startIndex, conditioning, rng });
  // 6. Decode
  return await finish(sd, p, { data: final, dims: shape }, rng);
}
