/**
 * Upscaling a whole image with an ESRGAN-family network, as Real-ESRGAN's
 * `RealESRGANer.enhance` does (realesrgan/utils.py):
 *
 * 1. colour runs through the model as RGB; a grey image is repeated into R, G and B, and the
 *    (clamped) output turned back to grey with OpenCV's weights `0.299 R + 0.587 G + 0.114 B`;
 * 2. alpha is upscaled on its own: with `alphaUpsampler: "realesrgan"` (the default) it is
 *    repeated into three channels, run through the model, clamped and turned to grey; with
 *    `"linear"` it is resized bilinearly. An alpha that is the same everywhere stays that value
 *    without a model pass (Real-ESRGAN would run it);
 * 3. values stay in [0, 1] floats whatever the bit depth (16-bit input: `v / 65535`), and the
 *    result keeps the input's channels and bit depth;
 * 4. any other output scale is the model's scale followed by a Lanczos resize.
 *
 * Unlike RealESRGANer, tiles overlap and are blended (lib/image/tiles.ts), and the image is not
 * pre-padded (`pre_pad`); the untiled output is the model's output on the image.
 *
 * @module
 */
import { type FloatImage, resizeFloatImage } from "../image/codec.ts";
import { tileSizeForBudget } from "../models/esrgan_cost.ts";
import { defaultOverlap, type TiledOptions, upscaleTiled } from "./tiled.ts";
import type { Upscaler } from "./upscaler.ts";

/** How alpha is upscaled (Real-ESRGAN's `alpha_upsampler`). */
export type AlphaUpsampler = "realesrgan" | "linear";

/** Options of {@linkcode upscaleImage}. */
export interface UpscaleImageOptions {
  /** Output size / input size, any value > 0 (default the model's scale). */
  scale?: number;
  /**
   * Window size in input pixels; 0 runs the whole image (default: the largest that fits
   * `memoryBudget`, and at least four overlaps).
   */
  tile?: number;
  /** Input pixels neighbouring windows share (default {@linkcode defaultOverlap}). */
  overlap?: number;
  /** Input pixels of each shared edge whose output is discarded (default overlap / 4). */
  margin?: number;
  /** Activation memory for the default tile size, in bytes (default 1 GiB). */
  memoryBudget?: number;
  /** How alpha is upscaled (default `"realesrgan"`). */
  alphaUpsampler?: AlphaUpsampler;
  /** Called after each window of each model pass. */
  onTile?: (done: number, total: number) => void;
}

/** OpenCV's `COLOR_BGR2GRAY` weights, in RGB order. */
const GREY = [0.299, 0.587, 0.114] as const;

/** Default activation budget of {@linkcode upscaleImage}. */
export const DEFAULT_MEMORY_BUDGET = 2 ** 30;

/**
 * The output size for `scale`: Real-ESRGAN's `int(w * outscale)` (at least 1 pixel).
 * Throws a RangeError for a scale that is not a positive finite number.
 *
 * @example
 * ```ts
 * import { upscaledSize } from "./upscale_image.ts";
 * console.assert(upscaledSize(100, 75, 2.5).join() === "250,187");
 * ```
 */
export function upscaledSize(width: number, height: number, scale: number): [number, number] {
  if (!(Number.isFinite(scale) && scale > 0)) {
    throw new RangeError(`Cannot upscale by ${scale}: the scale must be a number > 0`);
  }
  // The epsilon keeps 0.29 * 100 = 28.999999999999996 at 29.
  const side = (n: number) => Math.max(1, Math.floor(n * scale + 1e-9));
  return [side(width), side(height)];
}

/**
 * The tile {@linkcode upscaleImage} uses when given none: the largest that fits the memory
 * budget, but never so small that the overlaps would eat it (at least four overlaps).
 *
 * @example
 * ```ts
 * import { defaultTile } from "./upscale_image.ts";
 * import { rrdbNetConfig } from "../models/esrgan.ts";
 * console.assert(defaultTile(rrdbNetConfig(), { memoryBudget: 1 }) === 128);
 * ```
 */
export function defaultTile(
  config: Upscaler["config"],
  options: Pick<UpscaleImageOptions, "overlap" | "memoryBudget"> = {},
): number {
  const overlap = options.overlap ?? defaultOverlap(config);
  return Math.max(
    tileSizeForBudget(config, options.memoryBudget ?? DEFAULT_MEMORY_BUDGET),
    4 * overlap,
  );
}

/**
 * Upscales an image (grey, grey + alpha, RGB or RGBA; 8 or 16 bits) with `upscaler`; see the
 * module documentation for how each part is treated. The result's values are in [0, 1].
 *
 * @example
 * ```ts ignore
 * const upscaler = await openUpscaler("RealESRGAN_x4plus.pth");
 * const image = await decodeFloatImage(await Deno.readFile("in.png"));
 * const big = await upscaleImage(upscaler, image, { scale: 2, tile: 256 });
 * await Deno.writeFile("out.png", await encodeFloatImage(big, "png"));
 * ```
 */
export async function upscaleImage(
  upscaler: Upscaler,
  image: FloatImage,
  options: UpscaleImageOptions = {},
): Promise<FloatImage> {
  const { config } = upscaler;
  const s = config.scale;
  const [outW, outH] = upscaledSize(image.width, image.height, options.scale ?? s);
  if (config.inChannels !== 3 || config.outChannels !== 3) {
    throw new TypeError(
      `Cannot upscale images with a ${config.inChannels}-to-${config.outChannels}-channel ` +
        `${config.architecture}; only RGB models (3 channels in and out) are supported`,
    );
  }
  const { width: w, height: h, channels } = image;
  const hasAlpha = channels === 2 || channels === 4;
  const colours = hasAlpha ? channels - 1 : channels;
  const alphaPlane = channels - 1;
  const plane = w * h;

  // 1. Plan the passes: colour, then alpha unless it is constant or resized.
  const alpha = hasAlpha ? image.data.subarray(alphaPlane * plane, (alphaPlane + 1) * plane) : null;
  const constantAlpha = alpha !== null && alpha.every((v) => v === alpha[0]);
  const alphaByModel = alpha !== null && !constantAlpha &&
    (options.alphaUpsampler ?? "realesrgan") === "realesrgan";
  const passes = alphaByModel ? 2 : 1;
  const overlap = options.overlap ?? defaultOverlap(config);
  const tile = options.tile ?? defaultTile(config, { overlap, ...options });
  const base = (pass: number): TiledOptions => ({
    tile,
    overlap,
    ...(options.margin === undefined ? {} : { margin: options.margin }),
    clamp: true,
    ...(options.onTile === undefined ? {} : {
      onTile: (done: number, total: number) => options.onTile!(pass * total + done, passes * total),
    }),
  });

  // 2. Colour (grey is repeated into RGB and mixed back).
  const W = w * s;
  const H = h * s;
  const out = new Float32Array(channels * W * H);
  const into = { data: out, plane: 0 };
  if (colours === 3) {
    await upscaleTiled(upscaler, image, { ...base(0), inputPlanes: [0, 1, 2], into });
  } else {
    await upscaleTiled(upscaler, image, {
      ...base(0),
      inputPlanes: [0, 0, 0],
      outputMix: [GREY],
      into,
    });
  }

  // 3. Alpha.
  if (alpha !== null) {
    const target = out.subarray(alphaPlane * W * H, (alphaPlane + 1) * W * H);
    if (constantAlpha) {
      target.fill(alpha[0]!);
    } else if (alphaByModel) {
      await upscaleTiled(upscaler, image, {
        ...base(1),
        inputPlanes: [alphaPlane, alphaPlane, alphaPlane],
        outputMix: [GREY],
        into: { data: out, plane: alphaPlane },
      });
    } else {
      const single = { width: w, height: h, channels: 1, bitDepth: image.bitDepth, data: alpha };
      target.set((await resizeFloatImage(single as FloatImage, W, H, { kernel: "linear" })).data);
    }
  }

  // 4. Any other scale: Lanczos from the model's output.
  const result: FloatImage = { width: W, height: H, channels, bitDepth: image.bitDepth, data: out };
  if (outW === W && outH === H) return result;
  return await resizeFloatImage(result, outW, outH, { kernel: "lanczos3" });
}
