/**
 * The trainable LoRA tensors as kohya-ss names them: `lora_unet_<module path with "." -> "_">`
 * (text encoders: `lora_te_`, SDXL's `lora_te1_` / `lora_te2_` + the transformers path)
 * plus `.lora_down.weight` (`[rank, in]`) and `.lora_up.weight` (`[out, rank]`); `.alpha`
 * entries are metadata here (the scale comes from the training options). Which modules are
 * trained is decided by which of them the record holds. Module paths use the spelling of
 * lib/adapters/lora_keys.ts (`normalisePath`).
 *
 * @module
 */
import { normalisePath } from "../adapters/lora_keys.ts";

/** One LoRA module to train: a down and an up matrix. */
export interface LoraParameterPair {
  /** kohya module name, e.g. `lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q`. */
  module: string;
  /** Graph input / record key of the down matrix. */
  down: string;
  /** Graph input / record key of the up matrix. */
  up: string;
  /** Elements of the down matrix (rank * in). */
  downSize: number;
  /** Elements of the up matrix (out * rank). */
  upSize: number;
}

const DOWN = ".lora_down.weight";
const UP = ".lora_up.weight";
const ALPHA = ".alpha";

/** The kohya module name of a UNet module path (`lora_unet_` + path with "." -> "_"). */
export function unetLoraModuleName(path: string): string {
  return `lora_unet_${normalisePath(path)}`;
}

/** The model part a kohya module name belongs to. */
export type LoraTarget = "unet" | "text_encoder" | "text_encoder_2";

/** kohya's prefix of each part (SD 1.x/2.x: `lora_te_`; SDXL: `lora_te1_` and `lora_te2_`). */
export const KOHYA_PREFIXES: ReadonlyArray<readonly [string, LoraTarget]> = [
  ["lora_unet_", "unet"],
  ["lora_te_", "text_encoder"],
  ["lora_te1_", "text_encoder"],
  ["lora_te2_", "text_encoder_2"],
];

/**
 * The part and kohya prefix of a module name, or undefined for a name of no known part.
 *
 * @example
 * ```ts
 * import { loraTargetOf } from "./lora_parameters.ts";
 * console.assert(loraTargetOf("lora_te2_text_model_encoder_layers_0_self_attn_q_proj")?.target === "text_encoder_2");
 * ```
 */
export function loraTargetOf(module: string): { target: LoraTarget; prefix: string } | undefined {
  for (const [prefix, target] of KOHYA_PREFIXES) {
    if (module.startsWith(prefix)) return { target, prefix };
  }
  return undefined;
}

/**
 * The modules of a kohya-named LoRA record, sorted by name. Throws on a tensor of unknown role
 * or part, a down without an up (or the reverse) and an empty record.
 *
 * @example
 * ```ts
 * import { loraParameterPairs } from "./lora_parameters.ts";
 * const pairs = loraParameterPairs({
 *   "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": new Float32Array(32),
 *   "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": new Float32Array(32),
 * });
 * console.assert(pairs.length === 1 && pairs[0]!.downSize === 32);
 * ```
 */
export function loraParameterPairs(
  lora: Readonly<Record<string, Float32Array>>,
): LoraParameterPair[] {
  const modules = new Map<string, { down?: Float32Array; up?: Float32Array }>();
  for (const [key, value] of Object.entries(lora)) {
    if (!(value instanceof Float32Array)) {
      throw new TypeError(`LoRA tensor "${key}" must be a Float32Array`);
    }
    if (key.endsWith(ALPHA)) continue;
    const role = key.endsWith(DOWN) ? "down" : key.endsWith(UP) ? "up" : null;
    if (role === null) {
      throw new RangeError(
        `LoRA tensor "${key}" is neither ${DOWN} nor ${UP}; pass kohya-named down/up weights`,
      );
    }
    const module = key.slice(0, -(role === "down" ? DOWN : UP).length);
    if (loraTargetOf(module) === undefined) {
      throw new RangeError(
        `LoRA tensor "${key}" is not a kohya UNet or text-encoder name (lora_unet_..., lora_te_...)`,
      );
    }
    const entry = modules.get(module) ?? {};
    entry[role] = value;
    modules.set(module, entry);
  }
  const pairs: LoraParameterPair[] = [];
  for (const [module, { down, up }] of [...modules].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (down === undefined || up === undefined) {
      throw new RangeError(
        `LoRA module "${module}" has no ${down === undefined ? DOWN : UP}; pass both matrices`,
      );
    }
    pairs.push({
      module,
      down: module + DOWN,
      up: module + UP,
      downSize: down.length,
      upSize: up.length,
    });
  }
  if (pairs.length === 0) {
    throw new RangeError("The LoRA has no lora_down/lora_up tensors; nothing to train");
  }
  return pairs;
}
