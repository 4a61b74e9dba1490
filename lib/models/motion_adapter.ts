/**
 * Motion modules as users have them, read into one layout (Diffusers' MotionAdapter parameter
 * names) with their config:
 * - the original AnimateDiff files (guoyww `mm_sd_v14.ckpt`, `mm_sd_v15.ckpt`,
 *   `mm_sd_v15_v2.ckpt`, `v3_sd15_mm.ckpt`, `mm_sdxl_v10_beta.ckpt`, and their .safetensors
 *   conversions), keys like
 *   `down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight`,
 *   read through lib/weights (the restricted unpickler for .ckpt);
 * - Diffusers MotionAdapter folders (`config.json` + `diffusion_pytorch_model.safetensors`) and
 *   single files already in Diffusers' names.
 *
 * Original names are renamed by {@linkcode ANIMATEDIFF_KEY_TABLE} (what Diffusers'
 * scripts/convert_animatediff_motion_module_to_diffusers.py does, except that the sinusoidal
 * tables are kept: each attention block's `pos_encoder.pe` holds the same table, which becomes
 * the transformer block's `pos_embed.pe`). The config of an original file is detected from its
 * shapes: block channels from the group norms, motion layers per block from the module count,
 * the mid block from its presence, the max length from the `pe` tables (24 for mm_sd_v14/v15,
 * 32 for v2, v3 and SDXL). The attention head count is not in the shapes; every published
 * module uses 8.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { float32ToFloat16Bits, type TensorSource } from "../onnx/graph.ts";
import { convertFloat } from "../onnx/tensor_sources.ts";
import { openWeights, type WeightSource } from "../weights/weight_source.ts";
import type { GraphFloatType } from "./layers.ts";
import {
  type MotionConfig,
  type MotionModules,
  motionModuleSites,
  parseMotionConfig,
  sinusoidalPositions,
} from "./motion.ts";

/** How a motion-module file names its tensors. */
export type MotionModuleLayout = "diffusers" | "animatediff";

/**
 * Original AnimateDiff name parts and their Diffusers spelling, applied in order to the part
 * after `…motion_modules.N.`; `null` drops the tensor (the second attention block's copy of the
 * position table).
 */
export const ANIMATEDIFF_KEY_TABLE: ReadonlyArray<readonly [RegExp, string | null]> = [
  [/^temporal_transformer\./, ""],
  [/\.attention_blocks\.0\.pos_encoder\.pe$/, ".pos_embed.pe"],
  [/\.attention_blocks\.1\.pos_encoder\.pe$/, null],
  [/\.attention_blocks\.0\./, ".attn1."],
  [/\.attention_blocks\.1\./, ".attn2."],
  [/\.norms\.0\./, ".norm1."],
  [/\.norms\.1\./, ".norm2."],
  [/\.ff_norm\./, ".norm3."],
];

const SITE = /^((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.(.+)$/;

/**
 * The Diffusers MotionAdapter name of an original AnimateDiff tensor name (names already in
 * Diffusers' spelling come back unchanged); null for a tensor Diffusers does not keep;
 * undefined for a name that is no motion-module tensor.
 *
 * @example
 * ```ts
 * import { animatediffKeyToDiffusers } from "./motion_adapter.ts";
 * const k = animatediffKeyToDiffusers("down_blocks.0.motion_modules.0.temporal_transformer." +
 *   "transformer_blocks.0.attention_blocks.0.to_q.weight");
 * console.assert(k === "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight");
 * ```
 */
export function animatediffKeyToDiffusers(key: string): string | null | undefined {
  const m = SITE.exec(key);
  if (m === null) return undefined;
  let rest = m[3]!;
  for (const [pattern, replacement] of ANIMATEDIFF_KEY_TABLE) {
    if (!pattern.test(rest)) continue;
    if (replacement === null) return null;
    rest = rest.replace(pattern, replacement);
  }
  return `${m[1]}.motion_modules.${m[2]}.${rest}`;
}

/**
 * The original AnimateDiff names of a Diffusers MotionAdapter tensor (the inverse of
 * {@linkcode animatediffKeyToDiffusers}): one name, or two for a position table, which the
 * original keeps in both attention blocks. Undefined for a name that is no motion-module tensor.
 *
 * @example
 * ```ts
 * import { diffusersKeyToAnimatediff } from "./motion_adapter.ts";
 * const [k] = diffusersKeyToAnimatediff("mid_block.motion_modules.0.transformer_blocks.0.norm3.bias")!;
 * console.assert(k === "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.ff_norm.bias");
 * ```
 */
export function diffusersKeyToAnimatediff(key: string): string[] | undefined {
  const m = SITE.exec(key);
  if (m === null) return undefined;
  const prefix = `${m[1]}.motion_modules.${m[2]}.temporal_transformer.`;
  const table = /^(transformer_blocks\.\d+)\.pos_embed\.pe$/.exec(m[3]!);
  if (table !== null) {
    return [0, 1].map((a) => `${prefix}${table[1]}.attention_blocks.${a}.pos_encoder.pe`);
  }
  const rest = m[3]!
    .replace(/\.attn1\./, ".attention_blocks.0.")
    .replace(/\.attn2\./, ".attention_blocks.1.")
    .replace(/\.norm1\./, ".norms.0.")
    .replace(/\.norm2\./, ".norms.1.")
    .replace(/\.norm3\./, ".ff_norm.");
  return [prefix + rest];
}

/** Options of {@linkcode detectMotionConfig}. */
export interface DetectMotionConfigOptions {
  /** Attention heads (not visible in shapes; default 8, as every published module). */
  numAttentionHeads?: number;
  /** Max length when no `pos_embed.pe` table is present (default 32, Diffusers' default). */
  maxSeqLength?: number;
}

function fmt(shape: readonly number[] | undefined): string {
  return shape === undefined ? "none" : `[${shape.join(", ")}]`;
}

/**
 * A MotionAdapter config detected from tensor shapes (Diffusers names). Throws a TypeError when
 * the blocks do not form an adapter (uneven layers, up blocks that do not mirror the down
 * blocks, position tables of different lengths).
 *
 * @example
 * ```ts
 * import { detectMotionConfig } from "./motion_adapter.ts";
 * const config = detectMotionConfig(new Map([
 *   ["down_blocks.0.motion_modules.0.norm.weight", [320]],
 *   ["down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe", [1, 24, 320]],
 *   ["up_blocks.0.motion_modules.0.norm.weight", [320]],
 *   ["up_blocks.0.motion_modules.1.norm.weight", [320]],
 * ]));
 * console.assert(config.maxSeqLength === 24 && !config.useMotionMidBlock);
 * ```
 */
export function detectMotionConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: DetectMotionConfigOptions = {},
): MotionConfig {
  const bad = (why: string) => new TypeError(`Cannot read the motion module: ${why}`);
  const down = new Map<number, Map<number, number>>();
  const up = new Map<number, Map<number, number>>();
  const mid = new Set<number>();
  const tables = new Set<number>();
  const blocks = new Set<number>();
  for (const [name, shape] of shapes) {
    const norm = /^(down_blocks|up_blocks)\.(\d+)\.motion_modules\.(\d+)\.norm\.weight$/.exec(name);
    if (norm !== null) {
      const side = norm[1] === "down_blocks" ? down : up;
      const i = Number(norm[2]);
      if (!side.has(i)) side.set(i, new Map());
      side.get(i)!.set(Number(norm[3]), shape[0]!);
    }
    const midNorm = /^mid_block\.motion_modules\.(\d+)\.norm\.weight$/.exec(name);
    if (midNorm !== null) mid.add(Number(midNorm[1]));
    if (name.endsWith(".pos_embed.pe")) {
      if (shape.length !== 3 || shape[0] !== 1) {
        throw bad(`"${name}" has shape ${fmt(shape)}, expected [1, max_length, channels]`);
      }
      tables.add(shape[1]!);
    }
    const block = /^down_blocks\.0\.motion_modules\.0\.transformer_blocks\.(\d+)\.norm1\.weight$/
      .exec(name);
    if (block !== null) blocks.add(Number(block[1]));
  }
  const n = down.size;
  if (n === 0) throw bad("it has no down_blocks.N.motion_modules.M.norm.weight");
  const channels: number[] = [];
  let layers = -1;
  for (let i = 0; i < n; i++) {
    const modules = down.get(i);
    if (modules === undefined) throw bad(`down block ${i} is missing`);
    if (layers === -1) layers = modules.size;
    if (modules.size !== layers) {
      throw bad(`down block ${i} has ${modules.size} motion modules, block 0 has ${layers}`);
    }
    channels.push(modules.get(0)!);
  }
  if (up.size !== n) throw bad(`it has ${n} down blocks but ${up.size} up blocks`);
  for (let i = 0; i < n; i++) {
    const modules = up.get(i);
    const want = channels[n - 1 - i]!;
    if (modules === undefined || modules.size !== layers + 1 || modules.get(0) !== want) {
      throw bad(
        `up block ${i} should have ${layers + 1} motion modules of ${want} channels, it has ` +
          `${modules?.size ?? 0} of ${modules?.get(0) ?? "?"}`,
      );
    }
  }
  if (tables.size > 1) {
    throw bad(`its position tables have different lengths (${[...tables].join(", ")})`);
  }
  const heads = options.numAttentionHeads ?? 8;
  return parseMotionConfig({
    block_out_channels: channels,
    motion_layers_per_block: layers,
    motion_mid_block_layers_per_block: mid.size > 0 ? mid.size : 1,
    use_motion_mid_block: mid.size > 0,
    motion_num_attention_heads: heads,
    motion_max_seq_length: tables.size === 1 ? [...tables][0]! : (options.maxSeqLength ?? 32),
    ...(blocks.size > 1 ? { motion_transformer_layers_per_block: blocks.size } : {}),
  });
}

/** Options of {@linkcode openMotionAdapter}. */
export interface OpenMotionAdapterOptions {
  /** Float type of the graph the weights are for (default `"float32"`). */
  floatType?: GraphFloatType;
  /** Attention heads when the file does not say (original files; default 8). */
  numAttentionHeads?: number;
  /** Diffusers folder variant: `"fp16"` reads `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
}

/** An open motion-module file: config and weights for the UNet builder's `motion` option. */
export interface MotionAdapterFile extends MotionModules {
  /** The weights file. */
  path: string;
  /** How the file named its tensors. */
  layout: MotionModuleLayout;
  /** Closes the file (after the graph is written). */
  close(): void;
  [Symbol.dispose](): void;
}

function folderWeights(dir: string, variant: string | undefined): string {
  const stem = variant === undefined
    ? "diffusion_pytorch_model"
    : `diffusion_pytorch_model.${variant}`;
  for (const ext of [".safetensors", ".bin"]) {
    const path = join(dir, stem + ext);
    if (existsSync(path)) return path;
  }
  throw new RangeError(
    `Cannot load the motion adapter "${dir}": it has no ${stem}.safetensors; pass a Diffusers ` +
      `MotionAdapter folder or a motion-module file (.ckpt, .safetensors)`,
  );
}

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

/**
 * Opens a motion module: a Diffusers MotionAdapter folder, or a single .ckpt / .safetensors file
 * in the original AnimateDiff layout or in Diffusers' names. Throws a RangeError naming the
 * first tensor that belongs to no motion module (a UNet checkpoint, a motion LoRA, ...) and a
 * TypeError when the blocks do not form an adapter or contradict config.json.
 *
 * @example
 * ```ts ignore
 * using mm = await openMotionAdapter("models/mm_sd_v15_v2.ckpt");
 * console.log(mm.layout, mm.config.maxSeqLength); // "animatediff" 32
 * const model = buildUnet(unetConfig, unetWeights, { motion: mm });
 * ```
 */
export async function openMotionAdapter(
  path: string,
  options: OpenMotionAdapterOptions = {},
): Promise<MotionAdapterFile> {
  const floatType = options.floatType ?? "float32";
  const isFolder = statSync(path).isDirectory();
  const weightsPath = isFolder ? folderWeights(path, options.variant) : path;
  const declared = isFolder && existsSync(join(path, "config.json"))
    ? parseMotionConfig(JSON.parse(await Deno.readTextFile(join(path, "config.json"))))
    : undefined;
  const source = await openWeights(weightsPath);
  try {
    const names = source.names();
    const layout: MotionModuleLayout = names.some((n) => n.includes(".temporal_transformer."))
      ? "animatediff"
      : "diffusers";
    const renamed = new Map<string, string>();
    const dropped: string[] = [];
    for (const name of names) {
      const target = layout === "animatediff" ? animatediffKeyToDiffusers(name) : name;
      if (target === undefined || (layout === "diffusers" && !SITE.test(name))) {
        throw new RangeError(
          `Cannot load the motion module "${basename(weightsPath)}": tensor "${name}" belongs to ` +
            `no motion module; pass an AnimateDiff motion module (mm_sd_v15_v2.ckpt, ...) or a ` +
            `Diffusers MotionAdapter, not a UNet, checkpoint or LoRA`,
        );
      }
      if (target === null) {
        dropped.push(name);
        continue;
      }
      if (renamed.has(target)) {
        throw new RangeError(
          `Cannot load "${basename(weightsPath)}": two tensors map to "${target}"`,
        );
      }
      renamed.set(target, name);
    }
    const shapes = new Map<string, number[]>();
    for (const [target, name] of renamed) shapes.set(target, source.info(name).shape);
    for (const name of dropped) {
      // The second attention block's table must match the first's (it is not used).
      const first = name.replace(".attention_blocks.1.", ".attention_blocks.0.");
      if (!source.has(first) || fmt(source.info(first).shape) !== fmt(source.info(name).shape)) {
        throw new TypeError(
          `Cannot read the motion module "${basename(weightsPath)}": "${name}" has shape ` +
            `${fmt(source.info(name).shape)} but "${first}" has ` +
            `${fmt(source.has(first) ? source.info(first).shape : undefined)}`,
        );
      }
    }
    const detectOptions: DetectMotionConfigOptions = {};
    const heads = options.numAttentionHeads ?? declared?.numAttentionHeads[0];
    if (heads !== undefined) detectOptions.numAttentionHeads = heads;
    if (declared !== undefined) detectOptions.maxSeqLength = declared.maxSeqLength;
    const detected = detectMotionConfig(shapes, detectOptions);
    const config = declared ?? detected;
    if (declared !== undefined) checkDeclared(declared, detected, weightsPath);
    const weights = new Map<string, TensorSource>();
    for (const [target, name] of renamed) {
      weights.set(target, await tensorSource(source, name, floatType));
    }
    addMissingPositions(weights, config, floatType);
    return {
      path: weightsPath,
      layout,
      config,
      weights,
      close: () => source.close(),
      [Symbol.dispose]: () => source.close(),
    };
  } catch (error) {
    source.close();
    throw error;
  }
}

function checkDeclared(declared: MotionConfig, detected: MotionConfig, path: string): void {
  const facts = (c: MotionConfig) =>
    JSON.stringify({
      block_out_channels: c.blockOutChannels,
      motion_layers_per_block: c.layersPerBlock,
      use_motion_mid_block: c.useMotionMidBlock,
      motion_mid_block_layers_per_block: c.midBlockLayers,
      motion_max_seq_length: c.maxSeqLength,
      motion_transformer_layers_per_block: c.transformerLayers,
    });
  const [a, b] = [facts(declared), facts(detected)];
  if (a !== b) {
    throw new TypeError(
      `Cannot load the motion adapter "${path}": its config.json (${a}) does not describe its ` +
        `weights (${b}); fix config.json or re-download the folder`,
    );
  }
}

async function tensorSource(
  source: WeightSource,
  name: string,
  floatType: GraphFloatType,
): Promise<TensorSource> {
  const info = source.info(name);
  if (!FLOAT_DTYPES.has(info.dtype)) {
    throw new TypeError(
      `Cannot read the motion module "${basename(source.path)}": "${name}" is ${info.dtype}, ` +
        `not a float tensor`,
    );
  }
  const shape = [...info.shape];
  const inPlace = (floatType === "float32" && info.dtype === "F32") ||
    (floatType === "float16" && info.dtype === "F16");
  const at = inPlace ? await source.location(name) : undefined;
  if (at !== undefined) {
    return { dtype: floatType, shape, file: at.path, offset: at.byteOffset, length: at.byteLength };
  }
  return {
    dtype: floatType,
    shape,
    load: async () => convertFloat((await source.read(name)).data, info.dtype, floatType),
  };
}

/**
 * Files without position tables (Diffusers drops them when converting): every transformer block
 * gets the sinusoidal table Diffusers computes at init.
 */
function addMissingPositions(
  weights: Map<string, TensorSource>,
  config: MotionConfig,
  floatType: GraphFloatType,
): void {
  for (const site of motionModuleSites(config)) {
    for (let b = 0; b < config.transformerLayers; b++) {
      const block = `${site.name}.transformer_blocks.${b}`;
      const name = `${block}.pos_embed.pe`;
      if (weights.has(name) || !weights.has(`${block}.norm1.weight`)) continue;
      const table = sinusoidalPositions(config.maxSeqLength, site.channels);
      const shape = [1, config.maxSeqLength, site.channels];
      weights.set(
        name,
        floatType === "float32"
          ? { dtype: "float32", shape, data: table }
          : { dtype: "float16", shape, data: Uint16Array.from(table, float32ToFloat16Bits) },
      );
    }
  }
}
