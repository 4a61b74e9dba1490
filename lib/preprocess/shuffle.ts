/**
 * The `shuffle` preprocessor: the content-shuffled image the shuffle ControlNet
 * (`control_v11e_sd15_shuffle`) expects, as controlnet_aux's `ContentShuffleDetector`: two smooth
 * random fields (`make_noise_disk`: a uniform grid of (H // f + 2) x (W // f + 2), enlarged with
 * OpenCV's INTER_CUBIC to (H + 2f) x (W + 2f), cropped by f on each side, normalised to [0, 1])
 * give each output pixel the source coordinates (x · (W - 1), y · (H - 1)), sampled with
 * `cv2.remap(..., INTER_LINEAR)`.
 *
 * Seeded: the grid is drawn from numpy's legacy generator, so with `seed` s the result equals
 * `np.random.seed(s); ContentShuffleDetector()(img, f=f, output_type="np")` on an image already at
 * its detect resolution (short side 512, sides multiples of 64, so controlnet_aux's resizes do
 * nothing).
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { remapBilinear } from "../image/remap.ts";
import { resizeCubicPlane } from "../image/resize_cubic.ts";
import { NumpyRandomState } from "../rng/numpy_random_state.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import { asPromise, type Preprocessor } from "./preprocessor.ts";

/** Options for {@linkcode shuffleControl}. */
export interface ShuffleOptions {
  /** Seed of numpy's generator (`np.random.seed`), 0 to 2^32 - 1, default 0. */
  seed?: number;
  /** Size in pixels of the random grid's cells (controlnet_aux's `f`), default 256. */
  f?: number;
}

/** The option schema of the shuffle preprocessor. */
export const SHUFFLE_OPTIONS: readonly OptionSpec[] = [
  {
    name: "seed",
    type: "integer",
    default: 0,
    min: 0,
    max: 0xffffffff,
    description: "seed of the shuffle (numpy's np.random.seed)",
  },
  {
    name: "f",
    type: "integer",
    default: 256,
    min: 1,
    max: 65536,
    description: "cell size of the random warp in pixels (smaller shuffles more finely)",
  },
];

/**
 * controlnet_aux's `make_noise_disk(H, W, 1, F)`: a smooth random field in [0, 1], H x W.
 */
function noiseDisk(rng: NumpyRandomState, h: number, w: number, f: number): Float64Array {
  const gh = Math.floor(h / f) + 2;
  const gw = Math.floor(w / f) + 2;
  const grid = rng.uniform(0, 1, gh * gw);
  const noise = resizeCubicPlane(grid, gw, gh, w + 2 * f, h + 2 * f, {
    x: f,
    y: f,
    width: w,
    height: h,
  });
  let min = Infinity;
  for (const v of noise) min = Math.min(min, v);
  let max = -Infinity;
  for (let i = 0; i < noise.length; i++) {
    noise[i] = noise[i]! - min;
    max = Math.max(max, noise[i]!);
  }
  for (let i = 0; i < noise.length; i++) noise[i] = noise[i]! / max;
  return noise;
}

/**
 * Content shuffle of an image (see the module doc), the same size as the input.
 *
 * @example
 * ```ts
 * import { shuffleControl } from "./shuffle.ts";
 * const data = Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => i % 251);
 * const a = shuffleControl({ width: 64, height: 64, channels: 3, data }, { seed: 1, f: 16 });
 * const b = shuffleControl({ width: 64, height: 64, channels: 3, data }, { seed: 1, f: 16 });
 * console.assert(a.data.every((v, i) => v === b.data[i]));
 * ```
 */
export function shuffleControl(image: RawImage, options: ShuffleOptions = {}): RgbImage {
  const o = resolveOptions("shuffle", SHUFFLE_OPTIONS, { ...options });
  const rgb = toRgb(image);
  const { width, height } = rgb;
  const f = o.f as number;
  const rng = new NumpyRandomState(o.seed as number);
  const x = noiseDisk(rng, height, width, f);
  const y = noiseDisk(rng, height, width, f);
  const mapX = new Float32Array(width * height);
  const mapY = new Float32Array(width * height);
  for (let i = 0; i < mapX.length; i++) {
    mapX[i] = x[i]! * (width - 1);
    mapY[i] = y[i]! * (height - 1);
  }
  return remapBilinear(rgb, mapX, mapY, width, height) as RgbImage;
}

/** The shuffle preprocessor for the registry. */
export const shufflePreprocessor: Preprocessor = {
  kind: "shuffle",
  summary: "content shuffle (seeded random smooth warp) for the shuffle ControlNet",
  reference: "controlnet_aux ContentShuffleDetector with np.random.seed(seed), f = 256",
  options: SHUFFLE_OPTIONS,
  run: (image, options) =>
    asPromise(() =>
      shuffleControl(image, resolveOptions("shuffle", SHUFFLE_OPTIONS, options) as ShuffleOptions)
    ),
};
