/**
 * What running an ESRGAN-family network costs, from its config alone: floating-point operations
 * (to compare a run with the machine's peak) and activation memory per input pixel (to pick a
 * tile size that bounds peak memory by the tile, not by the image).
 *
 * @module
 */
import { inputMultiple, type UpscalerConfig } from "./esrgan.ts";

const KERNEL = 9; // every conv is 3x3

/**
 * Multiply-adds of the network's convolutions per input pixel (BasicSR `RRDBNet` /
 * `SRVGGNetCompact` forward; elementwise ops, resizes and concatenations are not counted).
 */
function macsPerPixel(config: UpscalerConfig): number {
  if (config.architecture === "SRVGGNetCompact") {
    const { inChannels, outChannels, features: nf, convs, scale } = config;
    return KERNEL *
      (inChannels * nf + convs * nf * nf + nf * outChannels * scale * scale);
  }
  const { inChannels, outChannels, features: nf, growthChannels: gc, blocks, upsamples } = config;
  const s = config.unshuffle;
  // ResidualDenseBlock: conv1..conv4 grow by gc, conv5 maps nf + 4gc back to nf.
  let dense = 0;
  for (let i = 0; i < 4; i++) dense += (nf + i * gc) * gc;
  dense += (nf + 4 * gc) * nf;
  // On the pixel-unshuffled grid (1/s² of the input's pixels).
  const low = inChannels * s * s * nf + 3 * blocks * dense + nf * nf;
  // conv_up_u runs at 4^u times the grid; conv_hr and conv_last at 4^U.
  let high = 0;
  for (let u = 1; u <= upsamples; u++) high += nf * nf * 4 ** u;
  high += (nf * nf + nf * outChannels) * 4 ** upsamples;
  return (KERNEL * (low + high)) / (s * s);
}

/**
 * Floating-point operations (2 per multiply-add, convolutions only) of one pass over a
 * `width` x `height` input. RealESRGAN_x4plus on 256x256 is about 2.35 TFLOP.
 *
 * @example
 * ```ts
 * import { rrdbNetConfig } from "./esrgan.ts";
 * import { upscalerFlops } from "./esrgan_cost.ts";
 * const tflop = upscalerFlops(rrdbNetConfig(), 256, 256) / 1e12;
 * console.assert(Math.abs(tflop - 2.35) < 0.01);
 * ```
 */
export function upscalerFlops(config: UpscalerConfig, width: number, height: number): number {
  return 2 * macsPerPixel(config) * width * height;
}

/**
 * Estimated peak activation bytes per input pixel of one float32 pass with onnxruntime's CPU
 * provider, from how many feature maps are alive at once at the largest resolution. Measured
 * growth of peak RSS during one pass on onnxruntime 1.30: RRDBNet x4 (64 features, growth 32)
 * 997 MiB at 256x256 (15.6 KB/px) and 246 MiB at 128x128, estimated 18.7 KB/px;
 * SRVGGNetCompact x4 (64 features) 1.15 KB/px at 256-512 px, estimated 1.5 KB/px. The estimate
 * errs high, so a budget is kept.
 *
 * @example
 * ```ts
 * import { rrdbNetConfig } from "./esrgan.ts";
 * import { activationBytesPerPixel } from "./esrgan_cost.ts";
 * console.assert(activationBytesPerPixel(rrdbNetConfig()) === 4 * (4 * 64 * 16 + 3 * 192));
 * ```
 */
export function activationBytesPerPixel(config: UpscalerConfig): number {
  if (config.architecture === "SRVGGNetCompact") {
    const { features: nf, outChannels, scale } = config;
    // Three body maps; the last conv's C*s² maps; shuffled output, nearest input and their sum.
    return 4 * (3 * nf + outChannels * scale * scale + 3 * outChannels * scale * scale);
  }
  const { features: nf, growthChannels: gc, upsamples, unshuffle: s } = config;
  // Four nf maps at the final resolution (resize, conv, activation, conv_hr); three dense-block
  // concatenations on the unshuffled grid.
  return (4 * (4 * nf * 4 ** upsamples + 3 * (nf + 4 * gc))) / (s * s);
}

/** Options of {@linkcode tileSizeForBudget}. */
export interface TileSizeOptions {
  /** Smallest tile returned (default 64). */
  min?: number;
  /** Tiles are multiples of this (default 8; also of the model's pixel-unshuffle factor). */
  multiple?: number;
}

/**
 * The largest square tile (input pixels per side) whose activations fit in `budgetBytes`, by
 * {@linkcode activationBytesPerPixel}. Weights and the output image are not part of the budget.
 *
 * @example
 * ```ts
 * import { rrdbNetConfig } from "./esrgan.ts";
 * import { tileSizeForBudget } from "./esrgan_cost.ts";
 * console.assert(tileSizeForBudget(rrdbNetConfig(), 2 ** 30) === 232);
 * ```
 */
export function tileSizeForBudget(
  config: UpscalerConfig,
  budgetBytes: number,
  options: TileSizeOptions = {},
): number {
  if (!(budgetBytes > 0)) {
    throw new RangeError(
      `Cannot pick a tile size: the memory budget must be > 0, got ${budgetBytes}`,
    );
  }
  const step = lcm(options.multiple ?? 8, inputMultiple(config));
  const min = Math.ceil((options.min ?? 64) / step) * step;
  const side = Math.floor(Math.sqrt(budgetBytes / activationBytesPerPixel(config)) / step) * step;
  return Math.max(min, side);
}

function lcm(a: number, b: number): number {
  let x = a;
  let y = b;
  while (y !== 0) [x, y] = [y, x % y];
  return (a / x) * b;
}
