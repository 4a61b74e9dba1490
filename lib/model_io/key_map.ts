/**
 * The one table between original-LDM checkpoint names (CompVis / Stability `model.diffusion_model.*`,
 * `first_stage_model.*`, `cond_stage_model.*`, `conditioner.embedders.*`) and Diffusers /
 * transformers parameter names. Every conversion in lib/convert goes through these functions, in
 * both directions.
 *
 * Semantics follow Diffusers' `scripts/convert_diffusers_to_original_stable_diffusion.py` and
 * `src/diffusers/loaders/single_file_utils.py` (v0.27 - v0.32): the UNet's `input_blocks` /
 * `middle_block` / `output_blocks` numbering, the VAE's `down.N.block.M` / reversed `up.N`, VAE
 * mid-block attention stored as 1x1 convolutions, and OpenCLIP's fused `in_proj` q/k/v and
 * transposed `text_projection`. Written from those semantics, not copied.
 *
 * @module
 */
import type { UnetConfig } from "../models/config.ts";

/** How a tensor changes on its way from the LDM file to the Diffusers file. */
export type TensorOp =
  /** Same bytes, same shape. */
  | { kind: "copy" }
  /** LDM 1x1 convolution `[o, i, 1, 1]` <-> Diffusers linear `[o, i]` (VAE attention). */
  | { kind: "conv1x1" }
  /** Rows `part*d .. (part+1)*d` of OpenCLIP's fused `in_proj_weight` / `in_proj_bias`. */
  | { kind: "qkv"; part: 0 | 1 | 2 }
  /** OpenCLIP's `text_projection` `[width, proj]` is the transpose of a Linear weight. */
  | { kind: "transpose" }
  /** transformers' `position_ids` buffer, which OpenCLIP checkpoints do not store. */
  | { kind: "positionIds" };

/** One Diffusers parameter and where it lives in an LDM checkpoint. */
export interface KeyMapping {
  /** Diffusers / transformers name inside the component file. */
  diffusers: string;
  /** Full LDM name (with the component prefix); empty for `positionIds`. */
  ldm: string;
  op: TensorOp;
}

/** Which text-encoder layout a checkpoint uses. */
export type TextEncoderLayout = "clip" | "openclip";

/** LDM name prefixes of each component. */
export const LDM_PREFIX = {
  unet: "model.diffusion_model.",
  vae: "first_stage_model.",
  sd1Text: "cond_stage_model.transformer.",
  sd2Text: "cond_stage_model.model.",
  sdxlText: "conditioner.embedders.0.transformer.",
  sdxlText2: "conditioner.embedders.1.model.",
  refinerText2: "conditioner.embedders.0.model.",
} as const;

const COPY: TensorOp = { kind: "copy" };

// ResnetBlock2D <-> LDM ResBlock (openaimodel.py): in_layers = [GroupNorm, SiLU, conv],
// out_layers = [GroupNorm, SiLU, Dropout, conv], emb_layers = [SiLU, Linear].
const UNET_RESNET: ReadonlyArray<[string, string]> = [
  ["norm1.", "in_layers.0."],
  ["conv1.", "in_layers.2."],
  ["norm2.", "out_layers.0."],
  ["conv2.", "out_layers.3."],
  ["time_emb_proj.", "emb_layers.1."],
  ["conv_shortcut.", "skip_connection."],
];

const UNET_TOP: ReadonlyArray<[string, string]> = [
  ["time_embedding.linear_1.", "time_embed.0."],
  ["time_embedding.linear_2.", "time_embed.2."],
  ["add_embedding.linear_1.", "label_emb.0.0."],
  ["add_embedding.linear_2.", "label_emb.0.2."],
  ["conv_in.", "input_blocks.0.0."],
  ["conv_norm_out.", "out.0."],
  ["conv_out.", "out.2."],
];

function replacePrefix(rest: string, table: ReadonlyArray<[string, string]>, what: string) {
  for (const [from, to] of table) if (rest.startsWith(from)) return to + rest.slice(from.length);
  throw new RangeError(`No LDM name is known for the ${what} parameter "${rest}"`);
}

/**
 * LDM names for a UNet's Diffusers parameters. The block numbering depends on the config
 * (layers per block, which blocks have attention), so the parsed config is needed.
 */
export function unetKeyMap(
  config: UnetConfig,
  names: Iterable<string>,
  prefix: string = LDM_PREFIX.unet,
): KeyMapping[] {
  // Diffusers block/layer -> LDM input_blocks / output_blocks index.
  const down = new Map<string, string>();
  let at = 1;
  const nDown = config.downBlockTypes.length;
  for (let i = 0; i < nDown; i++) {
    const layers = config.layersPerBlock[i] ?? 0;
    for (let j = 0; j < layers; j++) {
      down.set(`${i}.resnets.${j}.`, `input_blocks.${at}.0.`);
      down.set(`${i}.attentions.${j}.`, `input_blocks.${at}.1.`);
      at++;
    }
    if (i < nDown - 1) {
      down.set(`${i}.downsamplers.0.conv.`, `input_blocks.${at}.0.op.`);
      at++;
    }
  }
  const up = new Map<string, string>();
  at = 0;
  const reversedLayers = [...config.layersPerBlock].reverse();
  const nUp = config.upBlockTypes.length;
  for (let i = 0; i < nUp; i++) {
    const layers = (reversedLayers[i] ?? 0) + 1;
    const hasAttention = config.upBlockTypes[i] === "CrossAttnUpBlock2D";
    for (let j = 0; j < layers; j++) {
      up.set(`${i}.resnets.${j}.`, `output_blocks.${at}.0.`);
      up.set(`${i}.attentions.${j}.`, `output_blocks.${at}.1.`);
      if (j === layers - 1 && i < nUp - 1) {
        up.set(`${i}.upsamplers.0.`, `output_blocks.${at}.${hasAttention ? 2 : 1}.`);
      }
      at++;
    }
  }
  const out: KeyMapping[] = [];
  for (const name of names) {
    let ldm: string;
    const block =
      /^(down_blocks|up_blocks)\.(\d+\.(?:resnets|attentions|downsamplers|upsamplers)\.\d+\.(?:conv\.)?)(.*)$/
        .exec(name);
    const mid = /^mid_block\.(resnets|attentions)\.(\d+)\.(.*)$/.exec(name);
    if (block) {
      const [, kind, head, rest] = block as unknown as [string, string, string, string];
      const table = kind === "down_blocks" ? down : up;
      // downsamplers key includes "conv." in the head; upsamplers keep it in rest.
      let key = head;
      let tail = rest;
      if (!table.has(key) && key.endsWith("conv.")) {
        key = key.slice(0, -"conv.".length);
        tail = "conv." + rest;
      }
      const base = table.get(key);
      if (base === undefined) {
        throw new RangeError(`No LDM name is known for the UNet parameter "${name}"`);
      }
      ldm = base + (key.includes(".resnets.") ? replacePrefix(tail, UNET_RESNET, "UNet") : tail);
    } else if (mid) {
      const [, kind, index, rest] = mid as unknown as [string, string, string, string];
      ldm = kind === "attentions"
        ? `middle_block.${1 + 2 * Number(index)}.${rest}`
        : `middle_block.${2 * Number(index)}.${replacePrefix(rest, UNET_RESNET, "UNet")}`;
    } else {
      ldm = replacePrefix(name, UNET_TOP, "UNet");
    }
    out.push({ diffusers: name, ldm: prefix + ldm, op: COPY });
  }
  return out;
}

const VAE_RESNET: ReadonlyArray<[string, string]> = [
  ["norm1.", "norm1."],
  ["conv1.", "conv1."],
  ["norm2.", "norm2."],
  ["conv2.", "conv2."],
  ["conv_shortcut.", "nin_shortcut."],
];

const VAE_ATTENTION: ReadonlyArray<[string, string]> = [
  ["group_norm.", "norm."],
  ["to_q.", "q."],
  ["to_k.", "k."],
  ["to_v.", "v."],
  ["to_out.0.", "proj_out."],
];

/**
 * LDM names for an AutoencoderKL's Diffusers parameters; `blocks` is the number of encoder
 * blocks (the decoder's `up` list is numbered in reverse).
 */
export function vaeKeyMap(
  blocks: number,
  names: Iterable<string>,
  prefix: string = LDM_PREFIX.vae,
): KeyMapping[] {
  const out: KeyMapping[] = [];
  for (const name of names) {
    let m: RegExpExecArray | null;
    let ldm: string;
    let op: TensorOp = COPY;
    if ((m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(name))) {
      ldm = `encoder.down.${m[1]}.block.${m[2]}.${replacePrefix(m[3]!, VAE_RESNET, "VAE")}`;
    } else if ((m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)$/.exec(name))) {
      ldm = `encoder.down.${m[1]}.downsample.${m[2]}`;
    } else if ((m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(name))) {
      const i = blocks - 1 - Number(m[1]);
      ldm = `decoder.up.${i}.block.${m[2]}.${replacePrefix(m[3]!, VAE_RESNET, "VAE")}`;
    } else if ((m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)$/.exec(name))) {
      ldm = `decoder.up.${blocks - 1 - Number(m[1])}.upsample.${m[2]}`;
    } else if ((m = /^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)$/.exec(name))) {
      ldm = `${m[1]}.mid.block_${Number(m[2]) + 1}.${replacePrefix(m[3]!, VAE_RESNET, "VAE")}`;
    } else if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(.*)$/.exec(name))) {
      ldm = `${m[1]}.mid.attn_1.${replacePrefix(m[2]!, VAE_ATTENTION, "VAE")}`;
      if (name.endsWith(".weight") && !m[2]!.startsWith("group_norm.")) op = { kind: "conv1x1" };
    } else if ((m = /^(encoder|decoder)\.conv_norm_out\.(.*)$/.exec(name))) {
      ldm = `${m[1]}.norm_out.${m[2]}`;
    } else if (
      /^(encoder\.|decoder\.)?(conv_in|conv_out|quant_conv|post_quant_conv)\./.test(name)
    ) {
      ldm = name;
    } else {
      throw new RangeError(`No LDM name is known for the VAE parameter "${name}"`);
    }
    out.push({ diffusers: name, ldm: prefix + ldm, op });
  }
  return out;
}

/**
 * LDM names for a transformers CLIP text model stored the OpenAI / Hugging Face way
 * (`cond_stage_model.transformer.text_model.*`): the names only gain a prefix.
 */
export function clipKeyMap(names: Iterable<string>, prefix: string): KeyMapping[] {
  return [...names].map((name) => ({ diffusers: name, ldm: prefix + name, op: COPY }));
}

const OPEN_CLIP_LAYER: ReadonlyArray<[string, string]> = [
  ["layer_norm1.", "ln_1."],
  ["layer_norm2.", "ln_2."],
  ["mlp.fc1.", "mlp.c_fc."],
  ["mlp.fc2.", "mlp.c_proj."],
  ["self_attn.out_proj.", "attn.out_proj."],
];

/**
 * LDM names for a transformers CLIP text model stored as OpenCLIP (SD 2.x
 * `cond_stage_model.model.*`, SDXL `conditioner.embedders.1.model.*`): q/k/v are thirds of
 * `attn.in_proj_*`, `text_projection` is transposed, `position_ids` is not stored.
 */
export function openClipKeyMap(names: Iterable<string>, prefix: string): KeyMapping[] {
  const out: KeyMapping[] = [];
  for (const name of names) {
    let m: RegExpExecArray | null;
    let ldm: string;
    let op: TensorOp = COPY;
    if (name === "text_model.embeddings.position_ids") {
      out.push({ diffusers: name, ldm: "", op: { kind: "positionIds" } });
      continue;
    } else if (name === "text_model.embeddings.token_embedding.weight") {
      ldm = "token_embedding.weight";
    } else if (name === "text_model.embeddings.position_embedding.weight") {
      ldm = "positional_embedding";
    } else if ((m = /^text_model\.final_layer_norm\.(weight|bias)$/.exec(name))) {
      ldm = `ln_final.${m[1]}`;
    } else if (name === "text_projection.weight") {
      ldm = "text_projection";
      op = { kind: "transpose" };
    } else if (
      (m = /^text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/.exec(
        name,
      ))
    ) {
      ldm = `transformer.resblocks.${m[1]}.attn.in_proj_${m[3]}`;
      op = { kind: "qkv", part: m[2] === "q" ? 0 : m[2] === "k" ? 1 : 2 };
    } else if ((m = /^text_model\.encoder\.layers\.(\d+)\.(.*)$/.exec(name))) {
      ldm = `transformer.resblocks.${m[1]}.${replacePrefix(m[2]!, OPEN_CLIP_LAYER, "OpenCLIP")}`;
    } else {
      throw new RangeError(`No LDM name is known for the OpenCLIP parameter "${name}"`);
    }
    out.push({ diffusers: name, ldm: prefix + ldm, op });
  }
  return out;
}

/**
 * The key an EMA copy of a UNet weight has in an LDM training checkpoint: `model_ema.` plus the
 * name after `model.` with its dots removed (LitEma's buffer naming).
 */
export function emaKey(ldmKey: string): string {
  if (!ldmKey.startsWith("model.")) return ldmKey;
  return "model_ema." + ldmKey.slice("model.".length).replaceAll(".", "");
}
