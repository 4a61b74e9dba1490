/**
 * AutoencoderKL as two ONNX graphs (encoder and decoder) built from a Diffusers config and
 * weights, plus the TypeScript around them: the Gaussian posterior, latent scaling and tiled
 * encode/decode with blended overlaps.
 *
 * Follows Diffusers 0.27 src/diffusers/models/autoencoders/autoencoder_kl.py and vae.py
 * (`Encoder`, `Decoder`, `DiagonalGaussianDistribution`, `tiled_encode`, `tiled_decode`).
 *
 * Graph interfaces (Optimum's names):
 * - encoder: `sample` `[batch, in_channels, height, width]` (pixels in [-1, 1]) ->
 *   `latent_parameters` `[batch, 2*latent_channels, height/f, width/f]`: the moments (mean, then
 *   logvar) after `quant_conv`; see {@linkcode latentDistribution}.
 * - decoder: `latent_sample` `[batch, latent_channels, h, w]` (already unscaled, see
 *   {@linkcode unscaleLatents}) -> `sample` `[batch, out_channels, h*f, w*f]`.
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import type { VaeConfig } from "./config.ts";
import {
  type AttentionKernel,
  conv2d,
  downsample2d,
  type GraphFloatType,
  groupNorm,
  ModelContext,
  resnetBlock2d,
  selectWeights,
  silu,
  spatialSelfAttention,
  upsample2d,
} from "./layers.ts";

/** Options of {@linkcode buildVaeEncoder} and {@linkcode buildVaeDecoder}. */
export interface VaeBuildOptions {
  /** Graph name (default "vae_encoder" / "vae_decoder"). */
  name?: string;
  /** Attention kernel of the mid block (default `"fused"`). */
  attention?: AttentionKernel;
  /**
   * Float type of weights and activations (default `"float32"`). With `"float16"` the weights
   * must be float16 sources; inputs and outputs stay float32 and group norms and softmax run
   * in float32. Real SD VAEs overflow float16 in the decoder (see {@linkcode vaeFloatType}).
   */
  floatType?: GraphFloatType;
}

/**
 * The float type to build a VAE in when `requested` is asked for: Diffusers' `force_upcast`
 * (in the raw `config.json`, default true as in Diffusers' AutoencoderKL) keeps it float32,
 * because SD 1.x/2.x/SDXL VAEs overflow float16 in the decoder's up blocks; `override`
 * (e.g. an fp16-fixed VAE known to be safe) wins over the config.
 *
 * @example
 * ```ts
 * import { vaeFloatType } from "./vae.ts";
 * console.assert(vaeFloatType({ force_upcast: true }, "float16") === "float32");
 * console.assert(vaeFloatType({ force_upcast: false }, "float16") === "float16");
 * console.assert(vaeFloatType({ force_upcast: true }, "float16", "float16") === "float16");
 * ```
 */
export function vaeFloatType(
  rawConfig: unknown,
  requested: GraphFloatType,
  override?: GraphFloatType,
): GraphFloatType {
  if (override !== undefined) return override;
  if (requested === "float32") return "float32";
  const obj = typeof rawConfig === "object" && rawConfig !== null
    ? rawConfig as Record<string, unknown>
    : {};
  return obj["force_upcast"] === false ? "float16" : "float32";
}

/** Spatial factor between pixels and latents: `2 ** (blocks - 1)` (8 for SD). */
export function vaeScaleFactor(config: VaeConfig): number {
  return 2 ** (config.blockOutChannels.length - 1);
}

/** Diffusers `UNetMidBlock2D` of the VAE: resnet, (attention, resnet). eps 1e-6, no temb. */
function vaeMidBlock(c: ModelContext, name: string, x: Value, config: VaeConfig): Value {
  const ch = config.blockOutChannels[config.blockOutChannels.length - 1]!;
  const groups = config.normNumGroups;
  const resnet = (j: number, v: Value) =>
    resnetBlock2d(c, `${name}.resnets.${j}`, v, null, {
      inChannels: ch,
      outChannels: ch,
      tembChannels: null,
      groups,
      eps: 1e-6,
    });
  let h = resnet(0, x);
  if (config.midBlockAddAttention) {
    h = spatialSelfAttention(c, `${name}.attentions.0`, h, ch, groups, 1e-6);
  }
  return resnet(1, h);
}

/**
 * Builds the VAE encoder graph from the `encoder.*` and `quant_conv.*` weights of an
 * AutoencoderKL file (float32 sources, lib/onnx `tensorSources(file)`; the decoder's weights
 * may be present and are ignored).
 *
 * @example
 * ```ts ignore
 * const config = parseVaeConfig(JSON.parse(await Deno.readTextFile("vae/config.json")));
 * const file = await SafetensorsFile.open("vae/diffusion_pytorch_model.safetensors");
 * const encoder = buildVaeEncoder(config, tensorSources(file));
 * ```
 */
export function buildVaeEncoder(
  config: VaeConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: VaeBuildOptions = {},
): OnnxModel {
  const g = new GraphBuilder(options.name ?? "vae_encoder");
  const own = selectWeights(weights, ["encoder.", "quant_conv."]);
  const c = new ModelContext(g, "AutoencoderKL encoder", own, {
    attention: options.attention ?? "fused",
    floatType: options.floatType ?? "float32",
  });
  const boc = config.blockOutChannels;
  const groups = config.normNumGroups;
  const lc = config.latentChannels;
  const x = g.input("sample", "float32", ["batch", config.inChannels, "height", "width"]);
  // [B, 3, H, W] -> [B, C0, H, W]
  let h = conv2d(c, "encoder.conv_in", c.fromF32(x), config.inChannels, boc[0]!);
  let channels = boc[0]!;
  for (let i = 0; i < boc.length; i++) {
    const name = `encoder.down_blocks.${i}`;
    for (let j = 0; j < config.layersPerBlock; j++) {
      h = resnetBlock2d(c, `${name}.resnets.${j}`, h, null, {
        inChannels: channels,
        outChannels: boc[i]!,
        tembChannels: null,
        groups,
        eps: 1e-6,
      });
      channels = boc[i]!;
    }
    if (i < boc.length - 1) {
      // [B, C, H, W] -> [B, C, H/2, W/2] (pad right/bottom by one, then stride-2 conv)
      h = downsample2d(c, `${name}.downsamplers.0`, h, channels, 0);
    }
  }
  h = vaeMidBlock(c, "encoder.mid_block", h, config);
  h = groupNorm(c, "encoder.conv_norm_out", h, channels, groups, 1e-6);
  h = g.scope("encoder.conv_act", () => silu(g, h));
  // [B, C, h, w] -> [B, 2*lc, h, w] (double_z)
  h = conv2d(c, "encoder.conv_out", h, channels, 2 * lc);
  if (config.useQuantConv) {
    h = conv2d(c, "quant_conv", h, 2 * lc, 2 * lc, { kernel: 1, padding: 0 });
  }
  g.output(c.toF32(h), "latent_parameters", "float32", [
    "batch",
    2 * lc,
    "latent_height",
    "latent_width",
  ]);
  c.finish();
  return g.build({ docString: "AutoencoderKL encoder built by denoise (lib/models/vae.ts)" });
}

/**
 * Builds the VAE decoder graph from the `decoder.*` and `post_quant_conv.*` weights.
 *
 * @example
 * ```ts ignore
 * const decoder = buildVaeDecoder(config, tensorSources(file));
 * ```
 */
export function buildVaeDecoder(
  config: VaeConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: VaeBuildOptions = {},
): OnnxModel {
  const g = new GraphBuilder(options.name ?? "vae_decoder");
  const own = selectWeights(weights, ["decoder.", "post_quant_conv."]);
  const c = new ModelContext(g, "AutoencoderKL decoder", own, {
    attention: options.attention ?? "fused",
    floatType: options.floatType ?? "float32",
  });
  const reversed = [...config.blockOutChannels].reverse();
  const groups = config.normNumGroups;
  const lc = config.latentChannels;
  let h = c.fromF32(
    g.input("latent_sample", "float32", ["batch", lc, "latent_height", "latent_width"]),
  );
  if (config.usePostQuantConv) {
    h = conv2d(c, "post_quant_conv", h, lc, lc, { kernel: 1, padding: 0 });
  }
  // [B, lc, h, w] -> [B, C_last, h, w]
  h = conv2d(c, "decoder.conv_in", h, lc, reversed[0]!);
  h = vaeMidBlock(c, "decoder.mid_block", h, config);
  let channels = reversed[0]!;
  for (let i = 0; i < reversed.length; i++) {
    const name = `decoder.up_blocks.${i}`;
    for (let j = 0; j < config.layersPerBlock + 1; j++) {
      h = resnetBlock2d(c, `${name}.resnets.${j}`, h, null, {
        inChannels: channels,
        outChannels: reversed[i]!,
        tembChannels: null,
        groups,
        eps: 1e-6,
      });
      channels = reversed[i]!;
    }
    if (i < reversed.length - 1) {
      // [B, C, h, w] -> [B, C, 2h, 2w]
      h = upsample2d(c, `${name}.upsamplers.0`, h, channels, null);
    }
  }
  h = groupNorm(c, "decoder.conv_norm_out", h, channels, groups, 1e-6);
  h = g.scope("decoder.conv_act", () => silu(g, h));
  // [B, C0, H, W] -> [B, 3, H, W]
  h = conv2d(c, "decoder.conv_out", h, channels, config.outChannels);
  g.output(c.toF32(h), "sample", "float32", ["batch", config.outChannels, "height", "width"]);
  c.finish();
  return g.build({ docString: "AutoencoderKL decoder built by denoise (lib/models/vae.ts)" });
}

// ---------------------------------------------------------------------------------------------
// Posterior and scaling

/** A float32 NCHW tensor on the host. */
export interface Nchw {
  data: Float32Array;
  /** `[B, C, H, W]` */
  dims: [number, number, number, number];
}

/** Diffusers `DiagonalGaussianDistribution` of the encoder's moments. */
export interface LatentDistribution {
  mean: Nchw;
  /** `clamp(logvar, -30, 20)` */
  logvar: Nchw;
  /** `exp(0.5 * logvar)` */
  std: Nchw;
}

/**
 * Splits `latent_parameters` `[B, 2C, h, w]` into mean and log-variance (clamped to [-30, 20])
 * and standard deviation, as Diffusers' `DiagonalGaussianDistribution` (vae.py).
 *
 * @example
 * ```ts
 * import { latentDistribution } from "./vae.ts";
 * const d = latentDistribution({ data: new Float32Array([1, 0]), dims: [1, 2, 1, 1] });
 * console.assert(d.mean.data[0] === 1 && d.std.data[0] === 1);
 * ```
 */
export function latentDistribution(moments: Nchw): LatentDistribution {
  const [b, c2, h, w] = moments.dims;
  if (c2 % 2 !== 0) {
    throw new TypeError(`Cannot split latent parameters of shape [${moments.dims}]: odd channels`);
  }
  const c = c2 / 2;
  const plane = c * h * w;
  const mean = new Float32Array(b * plane);
  const logvar = new Float32Array(b * plane);
  const std = new Float32Array(b * plane);
  for (let n = 0; n < b; n++) {
    const src = n * 2 * plane;
    mean.set(moments.data.subarray(src, src + plane), n * plane);
    for (let i = 0; i < plane; i++) {
      const lv = Math.min(20, Math.max(-30, moments.data[src + plane + i]!));
      logvar[n * plane + i] = lv;
      std[n * plane + i] = Math.exp(0.5 * lv);
    }
  }
  const dims: Nchw["dims"] = [b, c, h, w];
  return { mean: { data: mean, dims }, logvar: { data: logvar, dims }, std: { data: std, dims } };
}

/**
 * `mean + std * noise`: Diffusers' `latent_dist.sample(generator)` given the `randn` draw of the
 * latent shape (from lib/rng, so seeds match torch).
 */
export function sampleLatent(dist: LatentDistribution, noise: Float32Array): Float32Array {
  const { mean, std } = dist;
  if (noise.length !== mean.data.length) {
    throw new TypeError(
      `Cannot sample latents: noise has ${noise.length} values, the latent ${mean.data.length}`,
    );
  }
  const out = new Float32Array(noise.length);
  for (let i = 0; i < out.length; i++) out[i] = mean.data[i]! + std.data[i]! * noise[i]!;
  return out;
}

function perChannel(
  latents: Nchw,
  fn: (value: number, channel: number) => number,
): Float32Array {
  const [b, c, h, w] = latents.dims;
  const out = new Float32Array(latents.data.length);
  const plane = h * w;
  for (let n = 0; n < b; n++) {
    for (let ch = 0; ch < c; ch++) {
      const base = (n * c + ch) * plane;
      for (let i = 0; i < plane; i++) out[base + i] = fn(latents.data[base + i]!, ch);
    }
  }
  return out;
}

function channelStats(config: VaeConfig, channels: number): { mean: number[]; std: number[] } {
  const { latentsMean, latentsStd } = config;
  if (latentsMean === null || latentsStd === null) return { mean: [], std: [] };
  if (latentsMean.length !== channels || latentsStd.length !== channels) {
    throw new RangeError(
      `Cannot scale latents: latents_mean/latents_std have ${latentsMean.length}/` +
        `${latentsStd.length} entries for ${channels} channels; fix the VAE config`,
    );
  }
  return { mean: latentsMean, std: latentsStd };
}

/**
 * Encoder output -> diffusion latents: `(z - shift_factor) * scaling_factor`, or with per-channel
 * `latents_mean`/`latents_std` (SDXL-style configs) `(z - mean) * scaling_factor / std`, as
 * Diffusers' pipelines do after `vae.encode`.
 *
 * @example
 * ```ts
 * import { parseVaeConfig } from "./config.ts";
 * import { scaleLatents } from "./vae.ts";
 * const z = scaleLatents({ data: new Float32Array([1]), dims: [1, 1, 1, 1] }, parseVaeConfig({}));
 * console.assert(Math.abs(z[0]! - 0.18215) < 1e-7);
 * ```
 */
export function scaleLatents(latents: Nchw, config: VaeConfig): Float32Array {
  const s = config.scalingFactor;
  const { mean, std } = channelStats(config, latents.dims[1]);
  if (mean.length > 0) return perChannel(latents, (v, c) => (v - mean[c]!) * s / std[c]!);
  const shift = config.shiftFactor;
  return perChannel(latents, (v) => (v - shift) * s);
}

/**
 * Diffusion latents -> decoder input, the inverse of {@linkcode scaleLatents}:
 * `z / scaling_factor + shift_factor`, or `z * std / scaling_factor + mean`.
 */
export function unscaleLatents(latents: Nchw, config: VaeConfig): Float32Array {
  const s = config.scalingFactor;
  const { mean, std } = channelStats(config, latents.dims[1]);
  if (mean.length > 0) return perChannel(latents, (v, c) => v * std[c]! / s + mean[c]!);
  const shift = config.shiftFactor;
  return perChannel(latents, (v) => v / s + shift);
}

// ---------------------------------------------------------------------------------------------
// Tiling

/** Runs one tile through a VAE graph (e.g. a session's `run`) and returns its output. */
export type TileRunner = (tile: Nchw) => Promise<Nchw>;

/** Options of {@linkcode tiledDecode} and {@linkcode tiledEncode}. */
export interface TileOptions {
  /** Tile size in pixels (Diffusers `tile_sample_min_size`; default the config's sample_size). */
  tileSampleSize?: number;
  /** Fraction of a tile that overlaps its neighbour (default 0.25, as Diffusers). */
  overlap?: number;
  /** Called after each tile with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** Copies `src[:, :, y0:y0+h, x0:x0+w]` (clipped to the tensor) into a new tensor. */
function crop(src: Nchw, y0: number, x0: number, h: number, w: number): Nchw {
  const [b, c, H, W] = src.dims;
  const hh = Math.min(h, H - y0);
  const ww = Math.min(w, W - x0);
  const out = new Float32Array(b * c * hh * ww);
  for (let p = 0; p < b * c; p++) {
    for (let y = 0; y < hh; y++) {
      const from = (p * H + y0 + y) * W + x0;
      out.set(src.data.subarray(from, from + ww), (p * hh + y) * ww);
    }
  }
  return { data: out, dims: [b, c, hh, ww] };
}

/** Diffusers `blend_v`: fades the top rows of `b` in from the bottom rows of `a` (in place). */
function blendV(a: Nchw, b: Nchw, extent: number): void {
  const [, , ha, wa] = a.dims;
  const [n, c, hb, wb] = b.dims;
  const e = Math.min(ha, hb, extent);
  const w = Math.min(wa, wb);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < e; y++) {
      const ra = (p * ha + ha - e + y) * wa;
      const rb = (p * hb + y) * wb;
      for (let x = 0; x < w; x++) {
        b.data[rb + x] = a.data[ra + x]! * (1 - y / e) + b.data[rb + x]! * (y / e);
      }
    }
  }
}

/** Diffusers `blend_h`: fades the left columns of `b` in from the right columns of `a`. */
function blendH(a: Nchw, b: Nchw, extent: number): void {
  const [, , ha, wa] = a.dims;
  const [n, c, hb, wb] = b.dims;
  const e = Math.min(wa, wb, extent);
  const h = Math.min(ha, hb);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y++) {
      const ra = (p * ha + y) * wa + wa - e;
      const rb = (p * hb + y) * wb;
      for (let x = 0; x < e; x++) {
        b.data[rb + x] = a.data[ra + x]! * (1 - x / e) + b.data[rb + x]! * (x / e);
      }
    }
  }
}

/**
 * Runs `run` over overlapping tiles of `input` and stitches the outputs like Diffusers'
 * `tiled_decode` / `tiled_encode`: tiles start every `floor(tileIn * (1 - overlap))` input
 * pixels, each output tile is blended (in place, above first, then left) with its already
 * blended neighbours over `floor(tileOut * overlap)` pixels, and its top-left
 * `tileOut - blend` square is kept.
 */
async function tiled(
  input: Nchw,
  run: TileRunner,
  tileIn: number,
  tileOut: number,
  overlap: number,
  onProgress: ((done: number, total: number) => void) | undefined,
): Promise<Nchw> {
  const [, , H, W] = input.dims;
  const step = Math.floor(tileIn * (1 - overlap));
  const blend = Math.floor(tileOut * overlap);
  const limit = tileOut - blend;
  if (step <= 0 || limit <= 0) {
    throw new RangeError(`Cannot tile with tile size ${tileIn} and overlap ${overlap}`);
  }
  const ys: number[] = [];
  const xs: number[] = [];
  for (let y = 0; y < H; y += step) ys.push(y);
  for (let x = 0; x < W; x += step) xs.push(x);
  const total = ys.length * xs.length;
  const rows: Nchw[][] = [];
  for (const y of ys) {
    const row: Nchw[] = [];
    for (const x of xs) {
      row.push(await run(crop(input, y, x, tileIn, tileIn)));
      onProgress?.(rows.length * xs.length + row.length, total);
    }
    rows.push(row);
  }
  // Blend in Diffusers' order: tiles are modified in place and later blends read them.
  for (let i = 0; i < rows.length; i++) {
    for (let j = 0; j < rows[i]!.length; j++) {
      const tile = rows[i]![j]!;
      if (i > 0) blendV(rows[i - 1]![j]!, tile, blend);
      if (j > 0) blendH(rows[i]![j - 1]!, tile, blend);
    }
  }
  // Keep tile[:, :, :limit, :limit] of each and concatenate.
  const [b, c] = rows[0]![0]!.dims;
  const heights = rows.map((r) => Math.min(limit, r[0]!.dims[2]));
  const widths = rows[0]!.map((t) => Math.min(limit, t.dims[3]));
  const outH = heights.reduce((s, v) => s + v, 0);
  const outW = widths.reduce((s, v) => s + v, 0);
  const out = new Float32Array(b * c * outH * outW);
  let oy = 0;
  for (let i = 0; i < rows.length; i++) {
    let ox = 0;
    for (let j = 0; j < rows[i]!.length; j++) {
      const t = rows[i]![j]!;
      const [, , th, tw] = t.dims;
      for (let p = 0; p < b * c; p++) {
        for (let y = 0; y < heights[i]!; y++) {
          const from = (p * th + y) * tw;
          out.set(t.data.subarray(from, from + widths[j]!), (p * outH + oy + y) * outW + ox);
        }
      }
      ox += widths[j]!;
    }
    oy += heights[i]!;
  }
  return { data: out, dims: [b, c, outH, outW] };
}

/**
 * Whether Diffusers (with `enable_tiling()`) would tile: latents larger than one latent tile
 * (`sample_size / f`) in either direction.
 *
 * @example
 * ```ts
 * import { parseVaeConfig } from "./config.ts";
 * import { needsTiling } from "./vae.ts";
 * const config = parseVaeConfig({ sample_size: 512, block_out_channels: [1, 1, 1, 1],
 *   down_block_types: Array(4).fill("DownEncoderBlock2D"),
 *   up_block_types: Array(4).fill("UpDecoderBlock2D") });
 * console.assert(needsTiling([1, 4, 64, 64], config) === false);
 * console.assert(needsTiling([1, 4, 64, 96], config) === true);
 * ```
 */
export function needsTiling(
  latentDims: readonly number[],
  config: VaeConfig,
  options: Pick<TileOptions, "tileSampleSize"> = {},
): boolean {
  const tile = Math.floor((options.tileSampleSize ?? config.sampleSize) / vaeScaleFactor(config));
  return (latentDims[2] ?? 0) > tile || (latentDims[3] ?? 0) > tile;
}

/**
 * Decodes latents `[B, C, h, w]` (already unscaled) tile by tile with the decoder `run`, as
 * Diffusers' `AutoencoderKL.tiled_decode`: latent tiles of `tileSampleSize / f`, overlapping by
 * `overlap`, blended linearly in pixel space. Memory stays bounded by one tile.
 *
 * @example
 * ```ts ignore
 * const image = await tiledDecode(latents, config, async (tile) => {
 *   const out = await session.run({ latent_sample: hostTensor("float32", tile.data, tile.dims) });
 *   return { data: out.sample.data as Float32Array, dims: out.sample.dims as Nchw["dims"] };
 * });
 * ```
 */
export function tiledDecode(
  latents: Nchw,
  config: VaeConfig,
  run: TileRunner,
  options: TileOptions = {},
): Promise<Nchw> {
  const f = vaeScaleFactor(config);
  const sampleTile = options.tileSampleSize ?? config.sampleSize;
  const latentTile = Math.floor(sampleTile / f);
  return tiled(latents, run, latentTile, sampleTile, options.overlap ?? 0.25, options.onProgress);
}

/**
 * Encodes an image `[B, 3, H, W]` tile by tile with the encoder `run` (returning moments), as
 * Diffusers' `AutoencoderKL.tiled_encode`; returns the blended `latent_parameters`.
 */
export function tiledEncode(
  image: Nchw,
  config: VaeConfig,
  run: TileRunner,
  options: TileOptions = {},
): Promise<Nchw> {
  const f = vaeScaleFactor(config);
  const sampleTile = options.tileSampleSize ?? config.sampleSize;
  const latentTile = Math.floor(sampleTile / f);
  return tiled(image, run, sampleTile, latentTile, options.overlap ?? 0.25, options.onProgress);
}
