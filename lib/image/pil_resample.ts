/**
 * Pillow's convolution resampling (`Image.resize` with BOX, BILINEAR, HAMMING, BICUBIC or LANCZOS
 * on 8-bit images), bit for bit: the same filter kernels widened by the downscale factor, the
 * same coefficient rounding to 22-bit fixed point, and the same two passes (horizontal, then
 * vertical) each rounded back to 8 bits.
 *
 * Ported from Pillow 9.4 `src/libImaging/Resample.c` (`precompute_coeffs`,
 * `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`,
 * `ImagingResampleInner`) and `Image.resize` (a same-size resize is a copy). Image processors in
 * transformers (BLIP, CLIP) resize with PIL, so their pixels differ from sharp's (libvips) cubic
 * kernel by a few levels; this module reproduces PIL's.
 *
 * @module
 */
import type { RawImage } from "./codec.ts";

/** Pillow's resampling filters, by the names of `PIL.Image.Resampling`. */
export type PilFilter = "box" | "bilinear" | "hamming" | "bicubic" | "lanczos";

/** PIL's integer codes (`resample` in transformers' preprocessor_config.json) to filters. */
export const PIL_FILTER_CODES: Readonly<Record<number, PilFilter>> = {
  1: "lanczos",
  2: "bilinear",
  3: "bicubic",
  4: "box",
  5: "hamming",
};

interface Filter {
  fn: (x: number) => number;
  support: number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Readonly<Record<PilFilter, Filter>> = {
  box: { fn: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0), support: 0.5 },
  bilinear: {
    fn: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
    support: 1,
  },
  hamming: {
    fn: (x) => {
      const a = Math.abs(x);
      if (a === 0) return 1;
      if (a >= 1) return 0;
      const px = a * Math.PI;
      return Math.sin(px) / px * (0.54 + 0.46 * Math.cos(px));
    },
    support: 1,
  },
  bicubic: {
    // Keys' cubic convolution with a = -0.5.
    fn: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
    support: 2,
  },
  lanczos: { fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0), support: 3 },
};

const PRECISION_BITS = 32 - 8 - 2;

/** Per output pixel: first input index, tap count, and 22-bit integer weights. */
interface Coefficients {
  ksize: number;
  bounds: Int32Array;
  weights: Int32Array;
}

// precompute_coeffs + normalize_coeffs_8bpc (Resample.c); [in0, in1] is the box along the axis.
function coefficients(
  inSize: number,
  outSize: number,
  filter: Filter,
  in0 = 0,
  in1 = inSize,
): Coefficients {
  const scale = (in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    // C's (int) truncates toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      weights[xx * ksize + x] = w < 0
        ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS))
        : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

// clip8: the accumulator >> PRECISION_BITS (arithmetic shift, i.e. floor), clamped to 0..255.
function clip8(ss: number): number {
  const v = Math.floor(ss / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resizes 8-bit pixels as Pillow's `Image.resize((width, height), resample)` does for an "RGB",
 * "L" or "RGBX"-like image (every channel filtered independently; Pillow premultiplies alpha for
 * "RGBA", which this function does not do, so pass images without alpha for exact results).
 * Returns the input itself when the size does not change, as Pillow returns a copy.
 *
 * @example
 * ```ts
 * import { pilResize } from "./pil_resample.ts";
 * const image = { width: 2, height: 1, channels: 3 as const, data: Uint8Array.of(0, 0, 0, 255, 255, 255) };
 * const out = pilResize(image, 4, 1, "bicubic");
 * console.assert(out.width === 4 && out.data.length === 12);
 * ```
 */
export function pilResize(
  image: RawImage,
  width: number,
  height: number,
  filter: PilFilter,
): RawImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`Cannot resize to ${width}x${height}: width and height must be >= 1`);
  }
  const kernel = FILTERS[filter];
  if (kernel === undefined) {
    throw new RangeError(
      `Unknown resampling filter "${filter}"; use one of ${Object.keys(FILTERS).join(", ")}`,
    );
  }
  if (image.width === width && image.height === height) return image;
  const c = image.channels;
  const horiz = coefficients(image.width, width, kernel);
  const vert = coefficients(image.height, height, kernel);
  // ImagingResampleInner: only the source rows the vertical pass reads are resampled
  // horizontally.
  const yFirst = vert.bounds[0]!;
  const yLast = vert.bounds[height * 2 - 2]! + vert.bounds[height * 2 - 1]!;
  let src = image.data;
  let srcWidth = image.width;
  let rowOffset = 0;
  if (width !== image.width) {
    const rows = yLast - yFirst;
    const tmp = new Uint8Array(width * rows * c);
    const half = 1 << (PRECISION_BITS - 1);
    for (let y = 0; y < rows; y++) {
      const inRow = (y + yFirst) * image.width * c;
      for (let xx = 0; xx < width; xx++) {
        const xmin = horiz.bounds[xx * 2]!;
        const xmax = horiz.bounds[xx * 2 + 1]!;
        const kOff = xx * horiz.ksize;
        for (let ch = 0; ch < c; ch++) {
          let ss = half;
          for (let x = 0; x < xmax; x++) {
            ss += src[inRow + (x + xmin) * c + ch]! * horiz.weights[kOff + x]!;
          }
          tmp[(y * width + xx) * c + ch] = clip8(ss);
        }
      }
    }
    src = tmp;
    srcWidth = width;
    rowOffset = yFirst;
  }
  if (height === image.height) {
    return { width, height, channels: c, data: src };
  }
  const out = new Uint8Array(width * height * c);
  const half = 1 << (PRECISION_BITS - 1);
  for (let yy = 0; yy < height; yy++) {
    const ymin = vert.bounds[yy * 2]! - rowOffset;
    const ymax = vert.bounds[yy * 2 + 1]!;
    const kOff = yy * vert.ksize;
    for (let i = 0; i < srcWidth * c; i++) {
      let ss = half;
      for (let y = 0; y < ymax; y++) {
        ss += src[(y + ymin) * srcWidth * c + i]! * vert.weights[kOff + y]!;
      }
      out[yy * srcWidth * c + i] = clip8(ss);
    }
  }
  return { width, height, channels: c, data: out };
}

/**
 * The line Pillow's `image.resize((w, n), box=(0, y, w, y))` (or its column form) repeats: a
 * resize from a zero-extent box at row (column) `at` of the image, which A1111's "resize and
 * fill" uses to stretch an edge into the bars. Every output line equals this one.
 *
 * @example
 * ```ts
 * import { pilZeroBoxLine } from "./pil_resample.ts";
 * const image = { width: 1, height: 2, channels: 1 as const, data: Uint8Array.of(100, 200) };
 * // bicubic around row 0: 1.125 * 100 - 0.125 * 200 = 87.5
 * console.assert(pilZeroBoxLine(image, "rows", 0, "bicubic")[0] === 88);
 * ```
 */
export function pilZeroBoxLine(
  image: RawImage,
  axis: "rows" | "columns",
  at: number,
  filter: PilFilter,
): Uint8Array {
  const kernel = FILTERS[filter];
  if (kernel === undefined) throw new RangeError(`Unknown resampling filter "${filter}"`);
  const c = image.channels;
  const along = axis === "rows" ? image.height : image.width;
  const across = axis === "rows" ? image.width : image.height;
  const coeff = coefficients(along, 1, kernel, at, at);
  const min = coeff.bounds[0]!;
  const count = coeff.bounds[1]!;
  const line = new Uint8Array(across * c);
  const half = 1 << (PRECISION_BITS - 1);
  for (let i = 0; i < across; i++) {
    for (let ch = 0; ch < c; ch++) {
      let ss = half;
      for (let k = 0; k < count; k++) {
        const j = min + k;
        const index = axis === "rows"
          ? (j * image.width + i) * c + ch
          : (i * image.width + j) * c + ch;
        ss += image.data[index]! * coeff.weights[k]!;
      }
      line[i * c + ch] = clip8(ss);
    }
  }
  return line;
}
