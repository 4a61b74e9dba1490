/**
 * ControlNets in the original single-file layout (lllyasviel's `control_v11*.pth` and the
 * `.safetensors` copies A1111 and ComfyUI users have, from ControlNet's `cldm/cldm.py`): the one
 * table from their names to Diffusers' ControlNetModel names, and the Diffusers config detected
 * from tensor shapes alone.
 *
 * Original names, with or without the `control_model.` prefix (files that also hold a whole SD
 * model keep only the `control_model.*` tensors):
 * - `time_embed.{0,2}`, `label_emb.0.{0,2}` (SDXL), `input_blocks.0.0` (conv_in)
 * - `input_hint_block.{0,2,...,2m}`: the conditioning embedding's convs (SiLU between them)
 * - `input_blocks.N.0` ResBlocks, `input_blocks.N.1` SpatialTransformers, `input_blocks.N.0.op`
 *   downsamplers, numbered through all levels as in the UNet (lib/convert/key_map.ts does the same
 *   walk for whole checkpoints; this module derives it from the names so it needs no config)
 * - `middle_block.{0,1,2}`, `zero_convs.N.0`, `middle_block_out.0`
 *
 * The mapping follows the semantics of Diffusers' `convert_controlnet_to_diffusers` /
 * `single_file_utils.py`; written from them, not copied. Control-LoRA and ControlLLLite files
 * are a different architecture and are refused by name.
 *
 * @module
 */

/** The prefix of the ControlNet's tensors in lllyasviel's files. */
export const CONTROLNET_LDM_PREFIX = "control_model.";

// ResnetBlock2D <- LDM ResBlock: in_layers = [GroupNorm, SiLU, conv],
// out_layers = [GroupNorm, SiLU, Dropout, conv], emb_layers = [SiLU, Linear].
const RESNET: ReadonlyArray<[ldm: string, diffusers: string]> = [
  ["in_layers.0.", "norm1."],
  ["in_layers.2.", "conv1."],
  ["out_layers.0.", "norm2."],
  ["out_layers.3.", "conv2."],
  ["emb_layers.1.", "time_emb_proj."],
  ["skip_connection.", "conv_shortcut."],
];

const TOP: ReadonlyArray<[ldm: string, diffusers: string]> = [
  ["time_embed.0.", "time_embedding.linear_1."],
  ["time_embed.2.", "time_embedding.linear_2."],
  ["label_emb.0.0.", "add_embedding.linear_1."],
  ["label_emb.0.2.", "add_embedding.linear_2."],
  ["input_blocks.0.0.", "conv_in."],
  ["middle_block_out.0.", "controlnet_mid_block."],
];

const MIDDLE = ["mid_block.resnets.0.", "mid_block.attentions.0.", "mid_block.resnets.1."];

function replacePrefix(rest: string, table: ReadonlyArray<[string, string]>): string | null {
  for (const [from, to] of table) if (rest.startsWith(from)) return to + rest.slice(from.length);
  return null;
}

/** Which layout a file of ControlNet weights uses, from its names. */
export type ControlnetLayout = "diffusers" | "ldm";

/**
 * The layout of a ControlNet weight file from its tensor names: `"diffusers"`
 * (`controlnet_cond_embedding.*`), `"ldm"` (`input_hint_block.*`, with or without
 * `control_model.`); throws a RangeError for other files, naming the known look-alikes.
 *
 * @example
 * ```ts
 * import { controlnetLayout } from "./controlnet_single_file.ts";
 * console.assert(controlnetLayout(["control_model.input_hint_block.0.weight"]) === "ldm");
 * ```
 */
export function controlnetLayout(names: readonly string[], label = "the file"): ControlnetLayout {
  let what = "it holds neither controlnet_cond_embedding.* nor input_hint_block.* weights";
  if (names.some((n) => n === "lora_controlnet" || n.endsWith(".up") || n.endsWith(".down"))) {
    what = "it is a Control-LoRA, which denoise does not support";
  } else if (names.some((n) => n.startsWith("lllite_"))) {
    what = "it is a ControlLLLite net, which denoise does not support";
  } else if (names.some((n) => n.startsWith("controlnet_cond_embedding."))) {
    return "diffusers";
  } else if (names.some((n) => /^(control_model\.)?input_hint_block\./.test(n))) {
    return "ldm";
  }
  throw new RangeError(
    `Cannot use ${label} as a ControlNet: ${what}; pass a Diffusers ControlNet folder or an ` +
      "original control_*.pth / .safetensors",
  );
}

/**
 * The Diffusers name of every ControlNet tensor of an original-layout file, by stored name. The
 * level structure is read from the names themselves (`input_blocks.N.0.op` ends a level), so no
 * config is needed. Tensors outside `control_model.` are skipped when that prefix is used (old
 * files bundle the whole SD model); any other unknown name is an error.
 *
 * @example
 * ```ts
 * import { controlnetKeysFromLdm } from "./controlnet_single_file.ts";
 * const map = controlnetKeysFromLdm([
 *   "control_model.input_blocks.1.0.in_layers.0.weight",
 *   "control_model.input_blocks.2.0.op.weight",
 *   "control_model.zero_convs.3.0.bias",
 *   "control_model.input_hint_block.0.weight",
 *   "control_model.input_hint_block.2.weight",
 *   "model.diffusion_model.out.2.weight",
 * ]);
 * console.assert(map.get("control_model.input_blocks.1.0.in_layers.0.weight") ===
 *   "down_blocks.0.resnets.0.norm1.weight");
 * console.assert(map.get("control_model.input_blocks.2.0.op.weight") ===
 *   "down_blocks.0.downsamplers.0.conv.weight");
 * console.assert(map.get("control_model.zero_convs.3.0.bias") === "controlnet_down_blocks.3.bias");
 * console.assert(map.get("control_model.input_hint_block.2.weight") ===
 *   "controlnet_cond_embedding.conv_out.weight");
 * console.assert(!map.has("model.diffusion_model.out.2.weight"));
 * ```
 */
export function controlnetKeysFromLdm(names: Iterable<string>): Map<string, string> {
  const all = [...names];
  const prefixed = all.some((n) => n.startsWith(CONTROLNET_LDM_PREFIX));
  const prefix = prefixed ? CONTROLNET_LDM_PREFIX : "";
  const own = all.filter((n) => n.startsWith(prefix));
  const bare = new Set(own.map((n) => n.slice(prefix.length)));

  // input_blocks.N (N >= 1) -> (level, layer) or a level's downsampler
  const blockIndices = [
    ...new Set(
      [...bare].flatMap((n) => {
        const m = /^input_blocks\.(\d+)\./.exec(n);
        return m && m[1] !== "0" ? [Number(m[1])] : [];
      }),
    ),
  ].sort((a, b) => a - b);
  const blocks = new Map<number, string>();
  let level = 0;
  let layer = 0;
  for (const n of blockIndices) {
    if (bare.has(`input_blocks.${n}.0.op.weight`)) {
      blocks.set(n, `down_blocks.${level}.downsamplers.0`);
      level++;
      layer = 0;
    } else {
      blocks.set(n, `down_blocks.${level}.#.${layer}`);
      layer++;
    }
  }
  // input_hint_block: convs at even indices; the first is conv_in, the last conv_out.
  const hint = [...bare].flatMap((n) => {
    const m = /^input_hint_block\.(\d+)\./.exec(n);
    return m ? [Number(m[1])] : [];
  });
  const lastHint = Math.max(...hint);

  const out = new Map<string, string>();
  const unknown: string[] = [];
  for (const stored of own) {
    const n = stored.slice(prefix.length);
    let m: RegExpExecArray | null;
    let name: string | null = null;
    if ((m = /^input_blocks\.([1-9]\d*)\.(0|1)\.(.*)$/.exec(n))) {
      const base = blocks.get(Number(m[1]))!;
      const rest = m[3]!;
      if (base.includes(".downsamplers.")) {
        name = m[2] === "0" && rest.startsWith("op.") ? `${base}.conv.${rest.slice(3)}` : null;
      } else if (m[2] === "0") {
        const r = replacePrefix(rest, RESNET);
        name = r === null ? null : `${base.replace("#", "resnets")}.${r}`;
      } else {
        name = `${base.replace("#", "attentions")}.${rest}`;
      }
    } else if ((m = /^middle_block\.([012])\.(.*)$/.exec(n))) {
      const i = Number(m[1]);
      const r = i === 1 ? m[2]! : replacePrefix(m[2]!, RESNET);
      name = r === null ? null : MIDDLE[i]! + r;
    } else if ((m = /^zero_convs\.(\d+)\.0\.(weight|bias)$/.exec(n))) {
      name = `controlnet_down_blocks.${m[1]}.${m[2]}`;
    } else if ((m = /^input_hint_block\.(\d+)\.(weight|bias)$/.exec(n))) {
      const k = Number(m[1]);
      const part = k === 0
        ? "conv_in"
        : k === lastHint
        ? "conv_out"
        : k % 2 === 0
        ? `blocks.${k / 2 - 1}`
        : null;
      name = part === null ? null : `controlnet_cond_embedding.${part}.${m[2]}`;
    } else {
      name = replacePrefix(n, TOP);
    }
    if (name === null) unknown.push(stored);
    else out.set(stored, name);
  }
  if (unknown.length > 0) {
    throw new RangeError(
      `Cannot read the ControlNet: no Diffusers name is known for ${unknown.length} tensor(s) ` +
        `(${unknown.slice(0, 4).map((n) => `"${n}"`).join(", ")}${
          unknown.length > 4 ? ", ..." : ""
        }); is it an original-layout ControlNet (control_model.input_hint_block.* ...)?`,
    );
  }
  return out;
}

/** Options of {@linkcode detectControlnetConfig}: what shapes cannot tell. */
export interface DetectControlnetOptions {
  /**
   * Shuffle-type nets average every residual (`global_pool_conditions`; A1111 reads it from the
   * net's yaml, `global_average_pooling`). Default false.
   */
  globalPoolConditions?: boolean;
  /**
   * Heads per block (Diffusers' `attention_head_dim`); default by family: 8 for SD 1.x, width/64
   * per block for SD 2.x and SDXL (their published configs).
   */
  attentionHeadDim?: number | number[];
  /** SDXL's `addition_time_embed_dim` (default 256). */
  additionTimeEmbedDim?: number;
  /** GroupNorm groups (default 32). */
  normNumGroups?: number;
}

function needShape(
  shapes: ReadonlyMap<string, readonly number[]>,
  name: string,
): readonly number[] {
  const s = shapes.get(name);
  if (s === undefined) {
    throw new RangeError(`Cannot detect the ControlNet's config: "${name}" is missing`);
  }
  return s;
}

/**
 * A Diffusers ControlNetModel `config.json` object for weights given by Diffusers name and
 * shape (from a Diffusers-layout file without config.json, or an original-layout file renamed
 * with {@linkcode controlnetKeysFromLdm}), detected from shapes only: channels, levels, layers,
 * attention blocks and transformer depth, context width (768 SD 1.x, 1024 SD 2.x, 2048 SDXL),
 * linear or 1x1-conv projections, SDXL's `label_emb`, the conditioning embedding's widths.
 *
 * @example
 * ```ts ignore
 * const shapes = new Map(names.map((n) => [map.get(n)!, source.info(n).shape]));
 * const config = parseControlnetConfig(detectControlnetConfig(shapes));
 * ```
 */
export function detectControlnetConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: DetectControlnetOptions = {},
): Record<string, unknown> {
  const convIn = needShape(shapes, "conv_in.weight");
  const names = [...shapes.keys()];
  const count = (re: RegExp) =>
    new Set(names.flatMap((n) => {
      const m = re.exec(n);
      return m ? [Number(m[1])] : [];
    })).size;

  // 1. Down path: levels, resnets per level, attention per level
  const levels = count(/^down_blocks\.(\d+)\./);
  if (levels === 0) throw new RangeError("Cannot detect the ControlNet's config: no down blocks");
  const blockOut: number[] = [];
  const types: string[] = [];
  const depth: number[] = [];
  let layers = -1;
  for (let i = 0; i < levels; i++) {
    const n = count(new RegExp(`^down_blocks\\.${i}\\.resnets\\.(\\d+)\\.`));
    if (layers !== -1 && n !== layers) {
      throw new RangeError(
        `Cannot detect the ControlNet's config: level ${i} has ${n} resnets, level 0 has ${layers}`,
      );
    }
    layers = n;
    blockOut.push(needShape(shapes, `down_blocks.${i}.resnets.0.conv1.weight`)[0]!);
    const attn = count(
      new RegExp(`^down_blocks\\.${i}\\.attentions\\.0\\.transformer_blocks\\.(\\d+)\\.`),
    );
    types.push(attn > 0 ? "CrossAttnDownBlock2D" : "DownBlock2D");
    depth.push(attn > 0 ? attn : 1);
  }
  const midDepth = count(/^mid_block\.attentions\.0\.transformer_blocks\.(\d+)\./);
  if (midDepth > 0) {
    if (types[levels - 1] === "CrossAttnDownBlock2D" && depth[levels - 1] !== midDepth) {
      throw new RangeError(
        `Cannot detect the ControlNet's config: the mid block has ${midDepth} transformer ` +
          `layers and the last level ${depth[levels - 1]}; ControlNetModel needs them equal`,
      );
    }
    depth[levels - 1] = midDepth;
  }

  // 2. Attention: context width and projection kind
  const toK = names.find((n) =>
    /attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight$/.test(n)
  );
  const projIn = names.find((n) => /attentions\.0\.proj_in\.weight$/.test(n));
  const crossDim = toK === undefined ? 768 : needShape(shapes, toK)[1]!;
  const linear = projIn !== undefined && needShape(shapes, projIn).length === 2;

  // 3. Added embedding (SDXL)
  const addIn = shapes.get("add_embedding.linear_1.weight");
  const textTime = addIn !== undefined;

  // 4. Conditioning embedding widths: conv_in, then every second block (the stride-2 ones)
  const hintIn = needShape(shapes, "controlnet_cond_embedding.conv_in.weight");
  const widths = [hintIn[0]!];
  const blocks = count(/^controlnet_cond_embedding\.blocks\.(\d+)\./);
  for (let k = 1; k < blocks; k += 2) {
    widths.push(needShape(shapes, `controlnet_cond_embedding.blocks.${k}.weight`)[0]!);
  }

  const family = textTime
    ? "sdxl"
    : crossDim === 1024 || (crossDim !== 768 && linear)
    ? "sd2"
    : "sd15";
  const heads = options.attentionHeadDim ??
    (family === "sd15" ? 8 : blockOut.map((c) => Math.max(1, Math.round(c / 64))));
  const config: Record<string, unknown> = {
    _class_name: "ControlNetModel",
    act_fn: "silu",
    attention_head_dim: heads,
    block_out_channels: blockOut,
    conditioning_channels: hintIn[1]!,
    conditioning_embedding_out_channels: widths,
    controlnet_conditioning_channel_order: "rgb",
    cross_attention_dim: crossDim,
    down_block_types: types,
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    global_pool_conditions: options.globalPoolConditions ?? false,
    in_channels: convIn[1]!,
    layers_per_block: layers,
    mid_block_scale_factor: 1,
    mid_block_type: midDepth > 0 ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D",
    norm_eps: 1e-5,
    norm_num_groups: options.normNumGroups ?? 32,
    transformer_layers_per_block: depth.every((d) => d === depth[0]) ? depth[0] : depth,
    use_linear_projection: linear,
  };
  if (textTime) {
    config["addition_embed_type"] = "text_time";
    config["addition_time_embed_dim"] = options.additionTimeEmbedDim ?? 256;
    config["projection_class_embeddings_input_dim"] = addIn[1]!;
  }
  return config;
}
