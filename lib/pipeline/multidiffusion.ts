/**
 * MultiDiffusion (Bar-Tal et al. 2023, "MultiDiffusion: Fusing Diffusion Paths for Controlled
 * Image Generation"): a UNet call on latents larger than the model's native size, made of calls
 * on overlapping latent tiles whose outputs are blended into one prediction for the whole latent.
 * The loop then takes one scheduler step on the whole latent, so every tile moves with the same
 * noise level, the same conditioning and the same sampler state, and there is no seam to hide.
 *
 * What is averaged: the paper's step (Eq. 5, the closed-form solution of its least-squares
 * objective) is the per-pixel weighted average of each view's denoised result, and Diffusers'
 * `StableDiffusionPanoramaPipeline` does exactly that: it calls `scheduler.step` once per view
 * (with a copy of the scheduler's state per view) and averages the stepped views by count
 * (`value / count`). This module averages the UNet's outputs instead and steps once. For every
 * sampler denoise has, a step is per pixel and linear in the model output for a fixed latent
 * (`x' = a x + b eps (+ c noise)`, multistep samplers adding earlier outputs with fixed
 * coefficients), and the tile weights sum to 1 at every pixel, so the weighted average of the
 * per-view steps equals one step on the weighted average of the outputs. What differs is only
 * better: ancestral samplers draw one noise tensor for the whole latent instead of one per view
 * (averaging independent draws shrinks the noise where views overlap), and no per-view scheduler
 * state is needed. The one non-pixelwise piece, guidance rescale (a standard deviation over the
 * whole image), is applied to the blended prediction.
 *
 * The wrapper sees the batched UNet input (unconditional and conditional passes together), so
 * classifier-free guidance, which is linear too, combines blended outputs.
 *
 * Weights: each tile's output counts with the separable ramp of lib/image/tiles.ts (margin 0),
 * linear across each overlap and normalised to sum to 1 at every latent pixel; MultiDiffusion's
 * uniform weights (`count`) would change abruptly at a tile's edge, the ramp fades it.
 *
 * @module
 */
import { planTiles } from "../image/tiles.ts";
import type { NamedInput, UnetCall, UnetInput } from "./denoise.ts";

/** One latent tile of a {@linkcode multiDiffusionUnet} call. */
export interface LatentTile {
  /** Left and top edge in latent pixels. */
  x: number;
  y: number;
  width: number;
  height: number;
  /** Position in the call's tile order (row by row) and the number of tiles. */
  index: number;
  count: number;
}

/**
 * Changes one tile's UNet input before its call, e.g. ControlNet residuals computed from the
 * tile's crop of the control image (a ControlNet-tile upscale runs its ControlNet per tile).
 */
export type TileHook = (input: UnetInput, tile: LatentTile) => UnetInput | Promise<UnetInput>;

/** Options of {@linkcode multiDiffusionUnet}. */
export interface MultiDiffusionOptions {
  /**
   * Tile side in latent pixels. A latent no larger than this either way is run whole, as the
   * plain UNet (bit for bit), unless tile hooks are given.
   */
  tile: number;
  /** Latent pixels neighbouring tiles share, at least. */
  overlap: number;
  /**
   * Tile starts and sizes fall on this latent grid (default 1). The UNet's own downsampling grid
   * (`2 ** (levels - 1)`, 8 for SD) keeps each tile's convolutions aligned with the whole
   * latent's.
   */
  multiple?: number;
  /** Changes each tile's input before its call. */
  tileHooks?: readonly TileHook[];
  /** Called after each tile of a call with (done, total). */
  onTile?: (done: number, total: number) => void;
}

/**
 * `src[:, :, y0:y0+h, x0:x0+w]` of a `[B, C, H, W]` tensor.
 *
 * @example
 * ```ts
 * import { cropNchw } from "./multidiffusion.ts";
 * const t = Float32Array.from({ length: 12 }, (_, i) => i); // [1, 1, 3, 4]
 * console.assert(cropNchw(t, [1, 1, 3, 4], 1, 1, 2, 2).join() === "5,6,9,10");
 * ```
 */
export function cropNchw(
  src: Float32Array,
  dims: readonly number[],
  x0: number,
  y0: number,
  w: number,
  h: number,
): Float32Array {
  const [b, c, H, W] = dims as [number, number, number, number];
  const out = new Float32Array(b * c * h * w);
  for (let p = 0; p < b * c; p++) {
    for (let y = 0; y < h; y++) {
      const from = (p * H + y0 + y) * W + x0;
      out.set(src.subarray(from, from + w), (p * h + y) * w);
    }
  }
  return out;
}

/**
 * The UNet over overlapping latent tiles, blended (see the module documentation). Inputs in
 * `extra` at the latent's spatial size (`[B, C, H, W]`) are cut with the sample; 2-D inputs
 * (SDXL `text_embeds` / `time_ids`, `timestep_cond`) go to every tile as they are; any other
 * 4-D input (ControlNet residuals at lower resolutions) must be made per tile by a tile hook,
 * and is refused otherwise.
 *
 * @example
 * ```ts
 * import { multiDiffusionUnet } from "./multidiffusion.ts";
 * // A "UNet" that returns its input: the blend of tile outputs is the input again.
 * const unet = multiDiffusionUnet(async (x) => x.sample, { tile: 8, overlap: 4 });
 * const sample = Float32Array.from({ length: 20 * 12 }, (_, i) => i);
 * const out = await unet({ sample, sampleShape: [1, 1, 12, 20], timestep: 1,
 *   hiddenStates: new Float32Array(4), hiddenShape: [1, 1, 4], extra: {} });
 * console.assert(out.every((v, i) => Math.abs(v - sample[i]!) < 1e-3));
 * ```
 */
export function multiDiffusionUnet(unet: UnetCall, options: MultiDiffusionOptions): UnetCall {
  const hooks = options.tileHooks ?? [];
  return async (input) => {
    const [b, c, h, w] = input.sampleShape;
    if (h <= options.tile && w <= options.tile && hooks.length === 0) return await unet(input);
    const grid = planTiles(w, h, {
      tile: options.tile,
      overlap: options.overlap,
      margin: 0,
      multiple: options.multiple ?? 1,
    });
    // Which extra inputs are cut with the sample.
    const spatial = new Set<string>();
    for (const [name, value] of Object.entries(input.extra)) {
      if (value.dims.length !== 4) continue;
      if (value.dims[2] === h && value.dims[3] === w) {
        spatial.add(name);
      } else if (hooks.length === 0) {
        throw new TypeError(
          `Cannot tile the UNet input "${name}" of shape [${value.dims.join(", ")}] over a ` +
            `${w}x${h} latent: only inputs at the latent's size are cut into tiles; compute ` +
            `it per tile with a tile hook`,
        );
      }
    }
    let out: Float32Array | undefined;
    let outChannels = 0;
    let index = 0;
    for (const [j, rows] of grid.rows.spans.entries()) {
      const wy = grid.rows.weights[j]!;
      for (const [i, cols] of grid.columns.spans.entries()) {
        const wx = grid.columns.weights[i]!;
        const tw = cols.end - cols.start;
        const th = rows.end - rows.start;
        // 1. Cut the tile's input: [B, C, H, W] -> [B, C, th, tw].
        const extra: Record<string, NamedInput> = {};
        for (const [name, value] of Object.entries(input.extra)) {
          extra[name] = spatial.has(name)
            ? {
              data: cropNchw(value.data, value.dims, cols.start, rows.start, tw, th),
              dims: [value.dims[0]!, value.dims[1]!, th, tw],
            }
            : value;
        }
        let tileInput: UnetInput = {
          ...input,
          sample: cropNchw(input.sample, input.sampleShape, cols.start, rows.start, tw, th),
          sampleShape: [b, c, th, tw],
          extra,
        };
        const tile: LatentTile = {
          x: cols.start,
          y: rows.start,
          width: tw,
          height: th,
          index,
          count: grid.count,
        };
        for (const hook of hooks) tileInput = await hook(tileInput, tile);
        // 2. Run it.
        const result = await unet(tileInput);
        if (out === undefined) {
          outChannels = result.length / (b * th * tw);
          if (!Number.isInteger(outChannels) || outChannels < 1) {
            throw new TypeError(
              `The UNet returned ${result.length} values for a [${b}, ${c}, ${th}, ${tw}] tile`,
            );
          }
          out = new Float32Array(b * outChannels * h * w);
        }
        if (result.length !== b * outChannels * th * tw) {
          throw new TypeError(
            `The UNet returned ${result.length} values for a [${b}, ${c}, ${th}, ${tw}] tile, ` +
              `expected ${b * outChannels * th * tw}`,
          );
        }
        // 3. Add its weighted output into the whole prediction.
        for (let p = 0; p < b * outChannels; p++) {
          for (let y = 0; y < th; y++) {
            const wrow = wy[y]!;
            if (wrow === 0) continue;
            const src = (p * th + y) * tw;
            const dst = (p * h + rows.start + y) * w + cols.start;
            for (let x = 0; x < tw; x++) {
              out[dst + x] = out[dst + x]! + wrow * wx[x]! * result[src + x]!;
            }
          }
        }
        options.onTile?.(++index, grid.count);
      }
    }
    return out!;
  };
}
