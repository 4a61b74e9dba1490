/**
 * Reading LoRA-family files into modules: which tensors of the file belong to which model
 * module, and how they combine (plain LoRA / LoCon, LyCORIS LoHa and LoKr, full diffs, DoRA
 * magnitudes). Every community key layout is normalised here, in tables, to one form: the
 * component ("unet", "text_encoder", "text_encoder_2") and the module path with "." replaced by
 * "_" (kohya's spelling), which lora_keys.ts matches against the model's parameter names.
 *
 * Layouts read (key suffixes after the module name):
 * - kohya-ss sd-scripts / A1111 / LoCon: `lora_unet_…`, `lora_te_…`, `lora_te1_…`, `lora_te2_…`
 *   with `.lora_down.weight`, `.lora_up.weight`, `.lora_mid.weight`, `.alpha`, `.dora_scale`.
 * - LyCORIS (KohakuBlueleaf/LyCORIS `lycoris/modules/loha.py`, `lokr.py`, `full.py`):
 *   `.hada_w1_a/b`, `.hada_w2_a/b`, `.hada_t1/t2`; `.lokr_w1(_a/_b)`, `.lokr_w2(_a/_b)`,
 *   `.lokr_t2`; `.diff`, `.diff_b`.
 * - Diffusers / PEFT: `unet.`, `text_encoder.`, `text_encoder_2.` prefixes (or none) with
 *   `.lora_A.weight` / `.lora_B.weight`, `.lora.down.weight` / `.lora.up.weight`,
 *   `.lora_linear_layer.down/up.weight`, old attention-processor names (`processor.to_q_lora`),
 *   `.lora_magnitude_vector` (DoRA).
 *
 * @module
 */
import { basename, extname } from "node:path";
import { openWeights, type WeightSource } from "../weights/mod.ts";

/** The model components a LoRA can change. */
export type LoraComponent = "unet" | "text_encoder" | "text_encoder_2";

/** How a module's tensors make its weight change. */
export type LoraAlgorithm = "lora" | "loha" | "lokr" | "full";

/** The tensors of one module of a LoRA file, by role. */
export interface LoraModule {
  /** The module's name as the file spells it (the tensor names without their suffix). */
  key: string;
  /** The component it targets; undefined when the file's names carry no component prefix. */
  component: LoraComponent | undefined;
  /** The module path, "." replaced by "_" (e.g. "down_blocks_1_attentions_0_proj_in"). */
  path: string;
  /** The decomposition its tensors form. */
  algorithm: LoraAlgorithm;
  /** Tensor names in the file, by role ("down", "up", "mid", "alpha", "hada_w1_a", ...). */
  tensors: Record<string, string>;
}

/** A LoRA-family file, parsed into modules (tensors are read later, on demand). */
export interface LoraFile {
  /** The file. */
  path: string;
  /** File name without extension: the name `<lora:NAME:…>` tags use. */
  name: string;
  /** safetensors `__metadata__` (empty for torch files). */
  metadata: Record<string, string>;
  /** Modules found, in file order. */
  modules: LoraModule[];
  /** Tensor names that belong to no known layout (reported in the ledger). */
  unknown: string[];
  /** The open file; {@linkcode LoraFile.close} releases it. */
  source: WeightSource;
  /** Closes the file. */
  close(): void;
}

/** Tensor-name suffixes and the role each one plays, longest first where they overlap. */
const SUFFIXES: ReadonlyArray<readonly [string, string]> = [
  [".lora_down.weight", "down"],
  [".lora_up.weight", "up"],
  [".lora_mid.weight", "mid"],
  [".lora_A.default.weight", "down"],
  [".lora_B.default.weight", "up"],
  [".lora_A.weight", "down"],
  [".lora_B.weight", "up"],
  [".lora_linear_layer.down.weight", "down"],
  [".lora_linear_layer.up.weight", "up"],
  [".lora.down.weight", "down"],
  [".lora.up.weight", "up"],
  [".down.weight", "down"],
  [".up.weight", "up"],
  [".hada_w1_a", "hada_w1_a"],
  [".hada_w1_b", "hada_w1_b"],
  [".hada_w2_a", "hada_w2_a"],
  [".hada_w2_b", "hada_w2_b"],
  [".hada_t1", "hada_t1"],
  [".hada_t2", "hada_t2"],
  [".lokr_w1_a", "lokr_w1_a"],
  [".lokr_w1_b", "lokr_w1_b"],
  [".lokr_w1", "lokr_w1"],
  [".lokr_w2_a", "lokr_w2_a"],
  [".lokr_w2_b", "lokr_w2_b"],
  [".lokr_w2", "lokr_w2"],
  [".lokr_t2", "lokr_t2"],
  [".diff_b", "diff_b"],
  [".diff", "diff"],
  [".alpha", "alpha"],
  [".dora_scale", "dora_scale"],
  [".lora_magnitude_vector.weight", "dora_scale"],
  [".lora_magnitude_vector", "dora_scale"],
];

/** Name prefixes that say which component a key targets, and how its path is spelled. */
const PREFIXES: ReadonlyArray<readonly [string, LoraComponent | undefined]> = [
  ["lora_unet_", "unet"],
  ["lora_te1_", "text_encoder"],
  ["lora_te2_", "text_encoder_2"],
  ["lora_te_", "text_encoder"],
  ["unet.", "unet"],
  ["text_encoder_2.", "text_encoder_2"],
  ["text_encoder.", "text_encoder"],
  ["base_model.model.", undefined],
];

/**
 * Old Diffusers attention-processor LoRA names (diffusers `loaders` before PEFT) and the module
 * each one stands for.
 */
const PROCESSOR_NAMES: ReadonlyArray<readonly [RegExp, string, string]> = [
  // [pattern, replacement in the UNet, replacement in a text encoder]
  [/\.processor\.to_q_lora$/, ".to_q", ".q_proj"],
  [/\.processor\.to_k_lora$/, ".to_k", ".k_proj"],
  [/\.processor\.to_v_lora$/, ".to_v", ".v_proj"],
  [/\.processor\.to_out_lora$/, ".to_out.0", ".out_proj"],
  [/\.to_q_lora$/, ".to_q", ".q_proj"],
  [/\.to_k_lora$/, ".to_k", ".k_proj"],
  [/\.to_v_lora$/, ".to_v", ".v_proj"],
  [/\.to_out_lora$/, ".to_out.0", ".out_proj"],
];

function splitSuffix(name: string): { key: string; role: string } | undefined {
  for (const [suffix, role] of SUFFIXES) {
    if (name.endsWith(suffix) && name.length > suffix.length) {
      return { key: name.slice(0, -suffix.length), role };
    }
  }
  return undefined;
}

function locate(key: string): { component: LoraComponent | undefined; path: string } {
  let component: LoraComponent | undefined;
  let rest = key;
  for (const [prefix, c] of PREFIXES) {
    if (key.startsWith(prefix)) {
      component = c;
      rest = key.slice(prefix.length);
      break;
    }
  }
  for (const [pattern, unet, text] of PROCESSOR_NAMES) {
    if (pattern.test(rest)) {
      rest = rest.replace(pattern, component === "unet" || component === undefined ? unet : text);
      break;
    }
  }
  return { component, path: rest.replaceAll(".", "_") };
}

function algorithmOf(roles: Record<string, string>): LoraAlgorithm | undefined {
  if (roles.down !== undefined && roles.up !== undefined) return "lora";
  if (
    roles.hada_w1_a !== undefined && roles.hada_w1_b !== undefined &&
    roles.hada_w2_a !== undefined && roles.hada_w2_b !== undefined
  ) return "loha";
  const w1 = roles.lokr_w1 !== undefined ||
    (roles.lokr_w1_a !== undefined && roles.lokr_w1_b !== undefined);
  const w2 = roles.lokr_w2 !== undefined ||
    (roles.lokr_w2_a !== undefined && roles.lokr_w2_b !== undefined);
  if (w1 && w2) return "lokr";
  if (roles.diff !== undefined || roles.diff_b !== undefined) return "full";
  return undefined;
}

/**
 * Explains files that hold adapters in a layout this module does not read, so the error says
 * what the file is instead of "matches nothing".
 */
function foreignLayout(names: readonly string[]): string | undefined {
  if (names.some((n) => /^(unet|text_encoder):\d+:(up|down)$/.test(n))) {
    return 'it is a cloneofsimo lora_diffusion file (keys like "unet:0:up"), whose layers are ' +
      "numbered by that tool's module walk rather than named";
  }
  if (names.length > 0 && names.every((n) => /^\d+$/.test(n))) {
    return "it holds a plain list of tensors (cloneofsimo lora_diffusion .pt), which names no layers";
  }
  if (names.some((n) => n === "emb_params" || n.startsWith("string_to_param"))) {
    return "it is a textual-inversion embedding, not a LoRA";
  }
  if (names.some((n) => n === "clip_l" || n === "clip_g")) {
    return "it is an SDXL textual-inversion embedding, not a LoRA";
  }
  return undefined;
}

/**
 * Opens a LoRA-family file (safetensors or torch.save) and groups its tensors into modules.
 * Throws a RangeError when the file holds no LoRA modules at all (e.g. an embedding).
 *
 * @example
 * ```ts ignore
 * const lora = await openLoraFile("add_detail.safetensors");
 * console.log(lora.modules.length, lora.modules[0]?.algorithm);
 * lora.close();
 * ```
 */
export async function openLoraFile(path: string): Promise<LoraFile> {
  const source = await openWeights(path);
  try {
    const names = source.names();
    const groups = new Map<string, Record<string, string>>();
    const unknown: string[] = [];
    for (const name of names) {
      const split = splitSuffix(name);
      if (split === undefined) {
        unknown.push(name);
        continue;
      }
      let roles = groups.get(split.key);
      if (roles === undefined) groups.set(split.key, roles = {});
      roles[split.role] = name;
    }
    const modules: LoraModule[] = [];
    for (const [key, roles] of groups) {
      const algorithm = algorithmOf(roles);
      if (algorithm === undefined) {
        unknown.push(...Object.values(roles));
        continue;
      }
      modules.push({ key, ...locate(key), algorithm, tensors: roles });
    }
    const file = basename(path);
    if (modules.length === 0) {
      const why = foreignLayout(names) ??
        `none of its ${names.length} tensor names is a known LoRA, LoCon, LoHa, LoKr or ` +
          `Diffusers/PEFT LoRA key`;
      throw new RangeError(`Cannot use "${file}" as a LoRA: ${why}`);
    }
    return {
      path,
      name: basename(path, extname(path)),
      metadata: source.metadata,
      modules,
      unknown,
      source,
      close: () => source.close(),
    };
  } catch (error) {
    source.close();
    throw error;
  }
}
