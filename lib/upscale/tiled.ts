/**
 * Running an upscaler over an image tile by tile (lib/image/tiles.ts layouts): each window is cut
 * from the input (reflect-padded at the image's far edges to the model's size multiple, as
 * Real-ESRGAN's `mod_pad` does), run through the session alone, and its output added into the
 * result with its blend weights. Peak activation memory is that of one window; the result is
 * the only image-sized buffer.
 *
 * @module
 */
import { planTiles } from "../image/tiles.ts";
import { inputMultiple, type UpscalerConfig } from "../models/esrgan.ts";
import { hostTensor } from "../onnx/session.ts";
import type { Upscaler } from "./upscaler.ts";

/** Float pixels, planar: `data` holds `planes * height * width` values. */
export interface PlanarImage {
  width: number;
  height: number;
  data: Float32Array;
}

/** Where {@linkcode upscaleTiled} writes: planes of an upscaled image buffer. */
export interface TiledTarget {
  /** `planes * (height * scale) * (width * scale)` values. */
  data: Float32Array;
  /** The first plane written. */
  plane: number;
}

/** Options of {@linkcode upscaleTiled}. */
export interface TiledOptions {
  /** Window size in input pixels; 0 runs the whole image at once (default 0). */
  tile?: number;
  /**
   * Input pixels neighbouring windows share (default {@linkcode defaultOverlap}: 32 pixels of
   * the model's working grid).
   */
  overlap?: number;
  /** Input pixels of each shared edge whose output is discarded (default overlap / 4). */
  margin?: number;
  /** Planes of the image fed to the model's input channels (default 0, 1, ..., C-1). */
  inputPlanes?: readonly number[];
  /**
   * Planes written, each a weighted sum of the model's output channels (default: the outputs
   * as they are). `[[0.299, 0.587, 0.114]]` writes one grey plane.
   */
  outputMix?: readonly (readonly number[])[];
  /** Clamp the model's outputs to [0, 1] before mixing and blending (default false: raw). */
  clamp?: boolean;
  /** Where to write (default a new buffer); the planes written are overwritten. */
  into?: TiledTarget;
  /** Called after each window. */
  onTile?: (done: number, total: number) => void;
}

/**
 * The default overlap of windows: 32 pixels of the grid the network works on, so 32 input
 * pixels, 64 for pixel-unshuffled x2 models and 128 for x1 ones (their receptive field, in input
 * pixels, is as many times larger). With the default margin (a quarter), 8 grid pixels of each
 * shared edge are discarded and 16 blended.
 *
 * @example
 * ```ts
 * import { defaultOverlap } from "./tiled.ts";
 * import { rrdbNetConfig } from "../models/esrgan.ts";
 * console.assert(defaultOverlap(rrdbNetConfig({ scale: 2 })) === 64);
 * ```
 */
export function defaultOverlap(config: UpscalerConfig): number {
  return 32 * inputMultiple(config);
}

/**
 * Upscales `image` with `upscaler`, tile by tile, and returns the buffer written
 * (`options.into.data`, or a new one with `outputMix.length` planes).
 *
 * @example
 * ```ts ignore
 * const out = await upscaleTiled(upscaler, { width: 640, height: 480, data }, { tile: 256 });
 * // out: [3, 1920, 2560] for an x4 model
 * ```
 */
export async function upscaleTiled(
  upscaler: Upscaler,
  image: PlanarImage,
  options: TiledOptions = {},
): Promise<Float32Array> {
  const { config, session } = upscaler;
  const { width: w, height: h } = image;
  const s = config.scale;
  const k = inputMultiple(config);
  const plane = w * h;
  const planes = image.data.length / plane;
  if (!Number.isInteger(planes) || planes < 1) {
    throw new TypeError(
      `Cannot upscale a ${w}x${h} image held in ${image.data.length} values (not whole planes)`,
    );
  }
  const inputPlanes = options.inputPlanes ?? [...Array(config.inChannels).keys()];
  if (inputPlanes.length !== config.inChannels || inputPlanes.some((p) => p >= planes)) {
    throw new RangeError(
      `Cannot feed planes [${inputPlanes}] of a ${planes}-plane image to a model with ` +
        `${config.inChannels} input channels`,
    );
  }
  const cout = config.outChannels;
  const mix = options.outputMix ??
    [...Array(cout).keys()].map((o) => [...Array(cout).keys()].map((m) => (m === o ? 1 : 0)));
  if (mix.some((row) => row.length !== cout)) {
    throw new RangeError(`Cannot mix ${cout} output channels with rows of another length`);
  }
  const identity = options.outputMix === undefined;
  const W = w * s;
  const H = h * s;
  const outPlane = W * H;
  const target = options.into ?? { data: new Float32Array(mix.length * outPlane), plane: 0 };
  if (target.data.length < (target.plane + mix.length) * outPlane) {
    throw new RangeError(
      `Cannot write ${mix.length} planes of ${W}x${H} from plane ${target.plane} into ` +
        `${target.data.length} values`,
    );
  }
  target.data.fill(0, target.plane * outPlane, (target.plane + mix.length) * outPlane);
  const clamp = options.clamp ?? false;

  const grid = planTiles(w, h, {
    tile: options.tile ?? 0,
    overlap: options.overlap ?? defaultOverlap(config),
    ...(options.margin === undefined ? {} : { margin: options.margin }),
    multiple: k,
    scale: s,
  });
  let done = 0;
  for (const [j, rows] of grid.rows.spans.entries()) {
    const wy = grid.rows.weights[j]!;
    for (const [i, cols] of grid.columns.spans.entries()) {
      const wx = grid.columns.weights[i]!;
      // 1. Cut the window, reflect-padded on the right and bottom to a multiple of k.
      const tw = cols.end - cols.start;
      const th = rows.end - rows.start;
      const pw = Math.ceil(tw / k) * k;
      const ph = Math.ceil(th / k) * k;
      const input = new Float32Array(config.inChannels * ph * pw);
      for (const [c, p] of inputPlanes.entries()) {
        const src = p * plane;
        const dst = c * ph * pw;
        for (let y = 0; y < ph; y++) {
          const sy = reflect(rows.start + y, h);
          for (let x = 0; x < pw; x++) {
            input[dst + y * pw + x] = image.data[src + sy * w + reflect(cols.start + x, w)]!;
          }
        }
      }
      // 2. Run it.
      const result = await session.run({
        image: hostTensor("float32", input, [1, config.inChannels, ph, pw]),
      });
      const out = result["upscaled"]!.data as Float32Array;
      const ow = pw * s;
      const oPlane = ph * s * ow;
      // 3. Add its weighted output (cropped to the window) into the result.
      for (const [o, row] of mix.entries()) {
        const dst = (target.plane + o) * outPlane;
        for (let y = 0; y < th * s; y++) {
          const wrow = wy[y]!;
          if (wrow === 0) continue;
          const at = dst + (rows.start * s + y) * W + cols.start * s;
          for (let x = 0; x < tw * s; x++) {
            const weight = wrow * wx[x]!;
            if (weight === 0) continue;
            let v = 0;
            if (identity) {
              v = out[o * oPlane + y * ow + x]!;
              if (clamp) v = v < 0 ? 0 : v > 1 ? 1 : v;
            } else {
              for (let m = 0; m < cout; m++) {
                let u = out[m * oPlane + y * ow + x]!;
                if (clamp) u = u < 0 ? 0 : u > 1 ? 1 : u;
                v += row[m]! * u;
              }
            }
            target.data[at + x] = target.data[at + x]! + weight * v;
          }
        }
      }
      options.onTile?.(++done, grid.count);
    }
  }
  return target.data;
}

/** torch `F.pad(mode="reflect")` index past the far edge (the edge pixel itself not repeated). */
function reflect(i: number, n: number): number {
  return i < n ? i : Math.max(0, 2 * (n - 1) - i);
}
