/**
 * The name table that maps LoRA module paths to a model's parameters. kohya-ss spells a module
 * path with "." replaced by "_" (`lora_unet_down_blocks_0_attentions_0_proj_in`), which cannot be
 * turned back into dots unambiguously; so the table is built the other way, from the model's own
 * parameter names: every `X.weight` / `X.bias` is indexed under `X` with dots replaced, and every
 * layout lora_file.ts reads is normalised to that spelling.
 *
 * @module
 */

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
export function indexParameters(shapes: ReadonlyMap<string, number[]>): ParameterIndex {
  const modules = new Map<string, ParameterEntry>();
  for (const name of shapes.keys()) {
    const match = /^(.*)\.(weight|bias)$/.exec(name);
    if (match === null) continue;
    const path = normalisePath(match[1]!);
    let entry = modules.get(path);
    if (entry === undefined) modules.set(path, entry = {});
    entry[match[2] as "weight" | "bias"] = name;
  }
  return { modules, shapes: new Map(shapes) };
}
