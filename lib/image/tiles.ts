/**
 * Tile layouts for running an image model piece by piece: where the input windows go and how
 * their outputs are blended so that no seam shows. Pure arithmetic, no pixels.
 *
 * Windows overlap their neighbours by at least `overlap` input pixels. Inside each shared strip
 * the outer `margin` pixels on either side get weight 0 (there a window's output still feels its
 * cut edge through the model's receptive field, which sees zero padding instead of the
 * neighbouring pixels), and the rest is a linear ramp from one window to the other. Edges on the
 * image border keep weight 1, as the untiled model also sees the border there. The weights are
 * separable (`wx(x) * wy(y)`) and already divided by their sum along each axis, so the weights of
 * every output pixel sum to exactly 1.
 *
 * @module
 */

/** One input window along an axis: pixels `[start, end)`. */
export interface TileSpan {
  start: number;
  end: number;
}

/** The windows along one axis and their blend weights. */
export interface TileAxis {
  /** Input windows in order; the first starts at 0 and the last ends at the axis length. */
  spans: TileSpan[];
  /**
   * Per window, one weight per output pixel (`(end - start) * scale` values): a ramp in the
   * overlaps, normalised so that the weights of all windows at any output pixel sum to 1.
   */
  weights: Float32Array[];
}

/** Options of {@linkcode tileAxis} and {@linkcode planTiles}. */
export interface TileOptions {
  /** Window size in input pixels; 0 (or at least the image size) is one window. */
  tile: number;
  /** Input pixels that neighbouring windows share, at least (default 32). */
  overlap?: number;
  /**
   * Input pixels at each shared edge whose output is discarded (weight 0); default a quarter of
   * the overlap. Must be less than half the overlap, so a ramp remains.
   */
  margin?: number;
  /** Window starts and (except at the image's far edge) sizes are multiples of this (default 1). */
  multiple?: number;
  /** Output pixels per input pixel (default 1). */
  scale?: number;
}

/** A whole tile layout: columns x rows. */
export interface TileGrid {
  columns: TileAxis;
  rows: TileAxis;
  /** Number of windows (`columns.spans.length * rows.spans.length`). */
  count: number;
}

function resolved(options: TileOptions) {
  const tile = options.tile;
  const overlap = options.overlap ?? 32;
  const margin = options.margin ?? Math.floor(overlap / 4);
  const multiple = options.multiple ?? 1;
  const scale = options.scale ?? 1;
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) {
      throw new RangeError(`Invalid tiling: ${name} must be an integer >= ${min}, got ${v}`);
    }
  };
  int("tile", tile, 0);
  int("overlap", overlap, 0);
  int("margin", margin, 0);
  int("multiple", multiple, 1);
  int("scale", scale, 1);
  if (overlap > 0 && 2 * margin >= overlap) {
    throw new RangeError(
      `Invalid tiling: margin ${margin} must be less than half the overlap (${overlap}); ` +
        `raise the overlap or lower the margin`,
    );
  }
  return { tile, overlap, margin, multiple, scale };
}

/**
 * The windows along one axis of `length` input pixels, spread evenly, and their weights.
 *
 * @example
 * ```ts
 * import { tileAxis } from "./tiles.ts";
 * const axis = tileAxis(100, { tile: 40, overlap: 8, scale: 2 });
 * console.assert(axis.spans.length === 3 && axis.spans[2]!.end === 100);
 * // Every output pixel's weights sum to 1.
 * const sum = new Float32Array(200);
 * axis.spans.forEach((s, i) => axis.weights[i]!.forEach((w, p) => (sum[2 * s.start + p]! += w)));
 * console.assert(sum.every((v) => Math.abs(v - 1) < 1e-6));
 * ```
 */
export function tileAxis(length: number, options: TileOptions): TileAxis {
  const { tile, overlap, margin, multiple, scale } = resolved(options);
  if (!Number.isInteger(length) || length < 1) {
    throw new RangeError(
      `Invalid tiling: the image side must be a positive integer, got ${length}`,
    );
  }
  // Window size: a multiple of `multiple` (the last window may end off the grid, at the edge).
  const size = Math.floor(tile / multiple) * multiple;
  if (tile === 0 || size >= length) {
    return {
      spans: [{ start: 0, end: length }],
      weights: [new Float32Array(length * scale).fill(1)],
    };
  }
  // Starts are rounded down to the grid, which can shorten an overlap by up to multiple - 1.
  const step = size - overlap - (multiple - 1);
  if (step < 1) {
    throw new RangeError(
      `Invalid tiling: a ${tile}-pixel tile cannot overlap its neighbours by ${overlap} pixels` +
        `${
          multiple > 1 ? ` on a grid of ${multiple}` : ""
        }; use a larger tile or a smaller overlap`,
    );
  }
  const n = Math.ceil((length - size) / step) + 1;
  const spans: TileSpan[] = [];
  for (let i = 0; i < n; i++) {
    const start = Math.floor(Math.round((i * (length - size)) / (n - 1)) / multiple) * multiple;
    spans.push({ start, end: i === n - 1 ? length : start + size });
  }

  // Raw weights: 0 in the margin of a shared edge, then a linear ramp to 1 over the rest of the
  // overlap, evaluated at output pixel centres in input coordinates.
  const ramp = Math.max(overlap - 2 * margin, Number.MIN_VALUE);
  const weights = spans.map((span, i) => {
    const out = new Float32Array((span.end - span.start) * scale);
    for (let p = 0; p < out.length; p++) {
      const u = span.start + (p + 0.5) / scale;
      const left = i === 0 ? 1 : clamp01((u - span.start - margin) / ramp);
      const right = i === n - 1 ? 1 : clamp01((span.end - margin - u) / ramp);
      out[p] = Math.min(left, right);
    }
    return out;
  });
  // Normalise: divide by the sum over windows at each output pixel.
  const sum = new Float64Array(length * scale);
  spans.forEach((span, i) => weights[i]!.forEach((w, p) => (sum[span.start * scale + p]! += w)));
  for (let p = 0; p < sum.length; p++) {
    if (!(sum[p]! > 0)) {
      throw new RangeError(
        `Invalid tiling: output pixel ${p} gets no weight; raise the overlap above twice the margin`,
      );
    }
  }
  spans.forEach((span, i) => {
    const w = weights[i]!;
    for (let p = 0; p < w.length; p++) w[p] = w[p]! / sum[span.start * scale + p]!;
  });
  return { spans, weights };
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/**
 * The tile layout of a `width` x `height` image: windows and blend weights along each axis.
 * Window (column i, row j) covers columns `columns.spans[i]` and rows `rows.spans[j]`; its output
 * pixel (x, y) counts with weight `columns.weights[i][x] * rows.weights[j][y]`.
 *
 * @example
 * ```ts
 * import { planTiles } from "./tiles.ts";
 * console.assert(planTiles(1000, 600, { tile: 512, overlap: 32 }).count === 6);
 * console.assert(planTiles(1000, 600, { tile: 0 }).count === 1);
 * ```
 */
export function planTiles(width: number, height: number, options: TileOptions): TileGrid {
  const columns = tileAxis(width, options);
  const rows = tileAxis(height, options);
  return { columns, rows, count: columns.spans.length * rows.spans.length };
}
