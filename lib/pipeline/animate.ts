/**
 * Text to video, read top to bottom like Diffusers' `AnimateDiffPipeline.__call__` (0.27): same
 * prompt encoding, one noise draw of shape `[1, 4, F, h, w]` from the seeded generator, the
 * scheduler stepping the video latents (its ancestral noise drawn in that shape), the motion UNet
 * evaluated on frames as batch, and the VAE decoding frame by frame (Diffusers' "VAE slicing",
 * which bounds memory to one frame's decode). So a seed gives Diffusers' clip.
 *
 * The motion UNet must be registered on the model first (motion_unet.ts).
 *
 * @module
 */
import { type RawImage } from "../image/codec.ts";
import type { ProgressCallback } from "../io/progress.ts";
import type { MotionConfig } from "../models/motion.ts";
import type { ScheduleName, Scheduler } from "../schedulers/mod.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import type { ContextOptions } from "./context_windows.ts";
import { checkSize, decodeImages } from "./generate.ts";
import { MOTION_UNET } from "./motion_unet.ts";
import { makeGenerator, makeScheduler } from "./sampling.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";
import { checkClipLength, denoiseVideo, type VideoStepConditioning } from "./video_loop.ts";

/** Builds the per-step (per-frame) conditioning of a clip once the timesteps are known. */
export type VideoConditioner = (
  sd: StableDiffusion,
  scheduler: Scheduler,
  size: { width: number; height: number },
) => Promise<(i: number) => VideoStepConditioning>;

/** Parameters of {@linkcode animateVideo}. */
export interface AnimateParams {
  steps: number;
  /** Classifier-free guidance scale (no unconditional pass at 1 or below). */
  cfg: number;
  sampler?: string | undefined;
  schedule?: ScheduleName | undefined;
  seed: bigint;
  rng: "cpu" | "nv";
  width: number;
  height: number;
  frames: number;
  /** The motion module's config (its max length bounds each clip the UNet sees). */
  motion: MotionConfig;
  conditioner: VideoConditioner;
  /** Sliding context windows for clips longer than the module's positions. */
  context?: ContextOptions | undefined;
  /** Windows per UNet call (see video_loop.ts). */
  windowsPerCall?: number | undefined;
  /** Decode each frame in overlapping tiles. */
  vaeTiling?: boolean | undefined;
  /** Free the text encoders once the conditioning is built. */
  releaseTextEncoders?: boolean | undefined;
  onProgress?: ProgressCallback | undefined;
}

/** A made clip. */
export interface AnimateResult {
  /** Final latents `[1, C, F, h, w]` (scaled, as the UNet sees them). */
  latents: { data: Float32Array; dims: [number, number, number, number, number] };
  /** The decoded frames, in order. */
  frames: RawImage[];
}

function scaleInPlace(x: Float32Array, s: number): Float32Array {
  if (s !== 1) { for (let i = 0; i < x.length; i++) x[i] = Math.fround(x[i]! * s); }
  return x;
}

/**
 * Makes one clip:
 * 1. scheduler and timesteps; 2. prompt conditioning (per frame with prompt travel);
 * 3. initial noise `randn([1, C, F, h, w]) * init_noise_sigma` from the seeded generator;
 * 4. the denoising loop over the video latents (context windows when asked);
 * 5. VAE decode, one frame at a time.
 *
 * @example
 * ```ts ignore
 * using motion = await openMotionModule("mm_sd_v15_v2.ckpt", sd.model.unet.config);
 * await registerMotionUnet(sd, motion);
 * const plain = conditionerFor(promptOptions);
 * const clip = await animateVideo(sd, {
 *   steps: 20, cfg: 7.5, seed: 7n, rng: "cpu", width: 512, height: 512, frames: 16,
 *   motion: motion.config,
 *   conditioner: async (s, sch, size) => sharedConditioning(await plain(s, sch, size)),
 * });
 * ```
 */
export async function animateVideo(sd: StableDiffusion, p: AnimateParams): Promise<AnimateResult> {
  checkSize(sd, p.width, p.height);
  if (!Number.isInteger(p.frames) || p.frames < 1) {
    throw new RangeError(`--frames must be a positive integer, got ${p.frames}`);
  }
  checkClipLength(p.frames, p.motion.maxSeqLength, p.context);
  // 1. Scheduler
  const scheduler = makeScheduler(sd.model.schedulerConfig, p.sampler, p.schedule);
  scheduler.setTimesteps(p.steps);
  // 2. Conditioning
  const conditioning = await p.conditioner(sd, scheduler, { width: p.width, height: p.height });
  if (sd.options.lowMemory || p.releaseTextEncoders) {
    await sd.releaseSession("text_encoder");
    await sd.releaseSession("text_encoder_2");
  }
  // 3. Initial latents: one draw for the whole clip, [batch, channels, frames, h, w]
  const f = vaeFactor(sd.model);
  const channels = sd.model.unet.config.outChannels;
  const h = p.height / f;
  const w = p.width / f;
  const shape: [number, number, number, number, number] = [1, channels, p.frames, h, w];
  const rng = makeGenerator(p.rng, p.seed);
  const latents = scaleInPlace(rng.randn(shape), scheduler.initNoiseSigma);
  // 4. Denoising loop (the motion UNet is built, or loaded from the cache, before it starts)
  await sd.components.session(MOTION_UNET);
  const final = await denoiseVideo({
    scheduler,
    latents,
    shape,
    conditioning,
    guidanceScale: p.cfg,
    unet: sd.unetCall(MOTION_UNET),
    rng,
    maxFrames: p.motion.maxSeqLength,
    context: p.context,
    windowsPerCall: p.windowsPerCall,
    onProgress: p.onProgress,
  });
  if (sd.options.lowMemory) await sd.releaseSession(MOTION_UNET);
  // 5. Decode frame by frame: [1, C, F, h, w] -> F x [1, C, h, w]
  const plane = h * w;
  const frames: RawImage[] = [];
  p.onProgress?.({ task: "decode", step: 0, total: p.frames });
  for (let k = 0; k < p.frames; k++) {
    const frame = new Float32Array(channels * plane);
    for (let c = 0; c < channels; c++) {
      const from = (c * p.frames + k) * plane;
      frame.set(final.subarray(from, from + plane), c * plane);
    }
    const [image] = await decodeImages(
      sd,
      { data: frame, dims: [1, channels, h, w] },
      p.vaeTiling ?? false,
    );
    frames.push(image!);
    p.onProgress?.({ task: "decode", step: k + 1, total: p.frames });
  }
  return { latents: { data: final, dims: shape }, frames };
}
