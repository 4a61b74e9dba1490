/**
 * The name table that maps LoRA module paths to a model's parameters. kohya-ss spells a module
 * path with "." replaced by "_" (`lora_unet_down_blocks_0_attentions_0_proj_in`), which cannot be
 * turned back into dots unambiguously; so the table is built the other way, from the model's own
 * parameter names: every `X.weight` / `X.bias` is indexed under `X` with dots replaced, and every
 * layout lora_file.ts reads is normalised to that spelling.
 *
 * @module
 */
import { unetKeyMap } from "../model_io/key_map.ts";
import type { UnetConfig } from "../models/config.ts";

/** A module's parameters. */
export interface ParameterEntry {
  /** The `.weight` parameter's full name, when the module has one. */
  weight?: string;
  /** The `.bias` parameter's full name, when the module has one. */
  bias?: string;
}

/** Parameters of one component, by normalised module path. */
export interface ParameterIndex {
  /** Module path ("." replaced by "_") -> its parameters. */
  modules: Map<string, ParameterEntry>;
  /** Parameter name -> shape. */
  shapes: Map<string, number[]>;
}

/** The normalised spelling of a dotted module path. */
export function normalisePath(path: string): string {
  return path.replaceAll(".", "_");
}

/**
 * Indexes parameter names (with shapes) by normalised module path.
 *
 * @example
 * ```ts
 * import { indexParameters } from "./lora_keys.ts";
 * const index = indexParameters(new Map([["down_blocks.0.attentions.0.proj_in.weight", [8, 8, 1, 1]]]));
 * console.assert(index.modules.get("down_blocks_0_attentions_0_proj_in")?.weight !== undefined);
 * ```
 */
export function indexParameters(
  shapes: ReadonlyMap<string, number[]>,
  aliases: ReadonlyMap<string, string> = new Map(),
): ParameterIndex {
  const modules = new Map<string, ParameterEntry>();
  const add = (alias: string, name: string) => {
    const match = /^(.*)\.(weight|bias)$/.exec(alias);
    if (match === null) return;
    const path = normalisePath(match[1]!);
    let entry = modules.get(path);
    if (entry === undefined) modules.set(path, entry = {});
    entry[match[2] as "weight" | "bias"] = name;
  };
  for (const name of shapes.keys()) add(name, name);
  for (const [name, alias] of aliases) if (shapes.has(name)) add(alias, name);
  return { modules, shapes: new Map(shapes) };
}

/**
 * Original-LDM (SGM) names of a UNet's parameters, as aliases for {@linkcode indexParameters}:
 * kohya-ss names SDXL UNet modules after the original `input_blocks` / `middle_block` /
 * `output_blocks` layout (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k`), and
 * A1111 accepts that spelling for SD 1.x too. The table itself is lib/model_io/key_map.ts.
 */
export function ldmUnetAliases(config: UnetConfig, names: Iterable<string>): Map<string, string> {
  const aliases = new Map<string, string>();
  let maps;
  try {
    maps = unetKeyMap(config, names, "");
  } catch {
    // A UNet the LDM table does not cover: its Diffusers names still match.
    return aliases;
  }
  for (const m of maps) if (m.op.kind === "copy") aliases.set(m.diffusers, m.ldm);
  return aliases;
}
