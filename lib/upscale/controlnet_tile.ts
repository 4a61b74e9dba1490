/**
 * ControlNet-tile super-resolution (book chapter 11.2, "ControlNet Tile image upscaling"): the
 * image resized by k with Lanczos is both the init image and the control image of
 * `StableDiffusionControlNetImg2ImgPipeline` with the tile ControlNet
 * (`control_v11f1e_sd15_tile`), at the book's settings: strength 0.8, guidance 7, 50 steps (of
 * which 40 run), `controlnet_conditioning_scale` 1 (the book leaves its 0.8 commented out).
 *
 * It is the img2img upscale (img2img_upscale.ts: passes, prompt from the input, layouts) with a
 * guide: outputs larger than the model's native size are denoised in MultiDiffusion tiles, and
 * the net runs per tile on the tile's latents and the tile's crop of the control image
 * (lib/pipeline/controlnet_hook.ts `controlnetTileHooks`), since residuals computed for the whole
 * image cannot be cut into tiles. With one tile covering the image the run is exactly
 * `denoise controlnet --image R --control NET:R --strength 0.8` on the resized image R.
 *
 * Any net that fits the model runs (a canny net gives a "canny upscale"); a net made for another
 * base than the model is refused in one line that names both.
 *
 * @module
 */
import type { ControlMode } from "../job/controlnet.ts";
import type { UpscaleJob } from "../job/upscale.ts";
import { controlnetInfotext, ControlnetOpener, resolveControlnet } from "../pipeline/controlnet.ts";
import { controlnetTileHooks } from "../pipeline/controlnet_hook.ts";
import { modelName, type RunEnvironment } from "../pipeline/resolve.ts";
import {
  img2imgUpscale,
  type Img2ImgUpscaleOptions,
  type Img2ImgUpscaleResult,
  type PassImage,
  type UpscaleGuide,
} from "./img2img_upscale.ts";
import type { FloatImage } from "../image/codec.ts";

/** The book's settings (chapter 11.2), the defaults of a ControlNet-tile upscale. */
export const CONTROLNET_TILE_DEFAULTS = { strength: 0.8, steps: 50, cfg: 7, passes: 1 } as const;

/** The net a ControlNet-tile upscale uses when the Job names none (an alias of the lock). */
export const DEFAULT_TILE_CONTROLNET = "control_v11f1e_sd15_tile";

/** What {@linkcode controlnetTileUpscale} needs besides the Job and the image. */
export interface ControlnetTileUpscaleOptions
  extends Omit<Img2ImgUpscaleOptions, "mode" | "defaults" | "guide"> {
  /** Where models live and how aliases resolve (for the net). */
  env: RunEnvironment;
}

/**
 * The guide that adds one tile ControlNet to every pass, its control image the pass's resized
 * image.
 */
function tileGuide(
  env: RunEnvironment,
  job: UpscaleJob,
  net: string,
  scale: number,
  controlMode: ControlMode,
): UpscaleGuide {
  return {
    open: async (sd) => {
      let current: PassImage | undefined;
      const { units, hookOptions } = await new ControlnetOpener(env).open(sd, [{
        net,
        scale,
        start: 0,
        end: 1,
        image: (width, height) => {
          if (current === undefined || current.width !== width || current.height !== height) {
            throw new RangeError(
              `The tile ControlNet asked for a ${width}x${height} control image; the pass is ` +
                `${current?.width}x${current?.height}`,
            );
          }
          return Promise.resolve(current.control);
        },
      }], {
        modelLabel: `the model "${modelName(job.model, sd.model.dir)}"`,
        controlMode,
      });
      const { hook, tileHook } = controlnetTileHooks(units, hookOptions);
      return {
        pass: (image) => {
          current = image;
          return { hooks: [hook], tileHooks: [tileHook] };
        },
        infotext: controlnetInfotext([{ net, module: "none", scale, start: 0, end: 1 }], {
          controlMode,
        }),
      };
    },
  };
}

/**
 * Runs a ControlNet-tile upscale (see the module documentation). The net is resolved first, so
 * a missing one fails (exit 4) before the model is opened.
 *
 * @example
 * ```ts ignore
 * const runner = new DiffusionRunner(env);
 * const { image: big } = await controlnetTileUpscale(job, image, { env, runner, version: "denoise 0.1.0" });
 * await runner.release();
 * ```
 */
export async function controlnetTileUpscale(
  job: UpscaleJob,
  image: FloatImage,
  options: ControlnetTileUpscaleOptions,
): Promise<Img2ImgUpscaleResult> {
  const net = job.controlnet ?? DEFAULT_TILE_CONTROLNET;
  const scale = job.controlnetScale ?? 1;
  const controlMode = job.controlMode ?? "balanced";
  await resolveControlnet(net, options.env);
  const result = await img2imgUpscale(job, image, {
    ...options,
    mode: "controlnet-tile",
    defaults: CONTROLNET_TILE_DEFAULTS,
    guide: tileGuide(options.env, job, net, scale, controlMode),
  });
  return {
    ...result,
    recorded: {
      ...result.recorded,
      controlnet: net,
      controlnetScale: scale,
      controlMode,
    },
  };
}
