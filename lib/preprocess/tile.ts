/**
 * The `tile` preprocessor: the blurred, detail-free copy the tile ControlNet
 * (`control_v11f1e_sd15_tile`) was trained to sharpen, as the A1111 ControlNet extension's
 * `tile_resample` makes it: shrink by a "down sampling rate" with OpenCV's INTER_AREA
 * (`int(H / rate)` x `int(W / rate)`; rates below 1.1 leave the image alone), then, so the
 * control image keeps the input's size, enlarge back with a bicubic kernel (the extension lets its
 * control-map resize do that step; see `resizeBack`).
 *
 * @module
 */
import { type RawImage, resizeImage } from "../image/codec.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { resizeArea } from "../image/resize_area.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import type { Preprocessor } from "./preprocessor.ts";

/** Options for {@linkcode tileControl}. */
export interface TileOptions {
  /** The extension's "Down Sampling Rate" (thr_a), 1 to 8, default 1 (no change). */
  downsample?: number;
  /**
   * Enlarge the shrunk image back to the input size (sharp's bicubic), default true. With false
   * the output is the shrunk image itself, as tile_resample returns it.
   */
  resizeBack?: boolean;
}

/** The option schema of the tile preprocessor. */
export const TILE_OPTIONS: readonly OptionSpec[] = [
  {
    name: "downsample",
    type: "number",
    default: 1,
    min: 1,
    max: 8,
    description: "down-sampling rate: shrink by this factor (area average); below 1.1 no change",
  },
  {
    name: "resizeBack",
    type: "boolean",
    default: true,
    description: "enlarge the shrunk image back to the input size (else return it shrunk)",
  },
];

/**
 * Tile control image: `cv2.resize(img, (int(W / rate), int(H / rate)), INTER_AREA)`, enlarged
 * back to W x H with a bicubic kernel unless `resizeBack` is false. Throws RangeError when the
 * rate would shrink a side below one pixel.
 *
 * @example
 * ```ts
 * import { tileControl } from "./tile.ts";
 * const data = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i % 2 ? 255 : 0));
 * const blurred = await tileControl({ width: 8, height: 8, channels: 3, data }, { downsample: 2 });
 * console.assert(blurred.width === 8 && blurred.height === 8);
 * ```
 */
export async function tileControl(image: RawImage, options: TileOptions = {}): Promise<RgbImage> {
  const o = resolveOptions("tile", TILE_OPTIONS, { ...options });
  const rate = o.downsample as number;
  const rgb = toRgb(image);
  if (rate < 1.1) return rgb;
  const { width, height } = rgb;
  const w = Math.trunc(width / rate);
  const h = Math.trunc(height / rate);
  if (w < 1 || h < 1) {
    throw new RangeError(
      `tile: a down-sampling rate of ${rate} shrinks ${width}x${height} below one pixel: use a rate of at most ${
        Math.min(width, height)
      }`,
    );
  }
  const small = resizeArea(rgb, w, h) as RgbImage;
  if (!o.resizeBack) return small;
  const back = await resizeImage(small, width, height, { kernel: "cubic" });
  return { width, height, channels: 3, data: back.data };
}

/** The tile preprocessor for the registry. */
export const tilePreprocessor: Preprocessor = {
  kind: "tile",
  summary: "down-sampled (blurred) copy for the tile ControlNet",
  reference: "A1111 sd-webui-controlnet `tile_resample` (INTER_AREA by the rate), then bicubic",
  options: TILE_OPTIONS,
  run: async (image, options) =>
    await tileControl(image, resolveOptions("tile", TILE_OPTIONS, options) as TileOptions),
};
