/**
 * Opening a ControlNet from what users have: a Diffusers folder (config.json +
 * diffusion_pytorch_model[.fp16].safetensors or .bin), a single Diffusers-named file (its config
 * detected from shapes), or an original-layout file (`control_v11*.pth` / `.safetensors`, with
 * or without `control_model.`; `.pth` through the restricted unpickler of lib/weights). The
 * result is the parsed config plus weight sources by Diffusers name, ready for
 * {@linkcode buildControlnet}.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ModelNotFoundError } from "../errors.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { convertFloat } from "../onnx/tensor_sources.ts";
import { openWeights, type WeightSource } from "../weights/weight_source.ts";
import { type ControlnetConfig, parseControlnetConfig } from "./controlnet_config.ts";
import {
  controlnetKeysFromLdm,
  controlnetLayout,
  detectControlnetConfig,
  type DetectControlnetOptions,
} from "./controlnet_single_file.ts";
import type { GraphFloatType } from "./layers.ts";

/** Options of {@linkcode loadControlnet}. */
export interface LoadControlnetOptions extends DetectControlnetOptions {
  /** Float type of the graph the weights are for (default `"float32"`). */
  floatType?: GraphFloatType;
}

/** A ControlNet ready to build. */
export interface LoadedControlnet {
  /** The parsed config (its `base` says which model family the net is for). */
  config: ControlnetConfig;
  /** The Diffusers config.json object, as read or as detected from shapes. */
  json: Record<string, unknown>;
  /** Weight sources by Diffusers parameter name, of the requested float type. */
  weights: Map<string, TensorSource>;
  /** The weight file read (inside the folder for a Diffusers folder). */
  file: string;
  /** Where the config came from: a Diffusers folder, or shapes of a single file. */
  layout: "diffusers-folder" | "diffusers-file" | "original-file";
  /** How choices that shapes cannot settle were made (for the CLI to show). */
  notes: string[];
  /** Releases the weight file. Sources stay readable until then. */
  close(): void;
}

const FLOAT_DTYPES: Record<string, "F32" | "F16" | "BF16" | "F64"> = {
  F32: "F32",
  F16: "F16",
  BF16: "BF16",
  F64: "F64",
};

/**
 * Weight sources for the tensors of an open weight file, renamed: tensors already stored in
 * `floatType` and lying contiguous in the file are referenced in place (external data, no
 * copy), others are converted when the model is written. `rename` returns null to skip one.
 *
 * @example
 * ```ts ignore
 * const source = await openWeights("control_v11p_sd15_canny.pth");
 * const map = controlnetKeysFromLdm(source.names());
 * const weights = await weightSourceTensors(source, { rename: (n) => map.get(n) ?? null });
 * ```
 */
export async function weightSourceTensors(
  source: WeightSource,
  options: { floatType?: GraphFloatType; rename?: (name: string) => string | null } = {},
): Promise<Map<string, TensorSource>> {
  const floatType = options.floatType ?? "float32";
  const out = new Map<string, TensorSource>();
  for (const stored of source.names()) {
    const name = options.rename === undefined ? stored : options.rename(stored);
    if (name === null) continue;
    const info = source.info(stored);
    const from = FLOAT_DTYPES[info.dtype];
    if (from === undefined) {
      throw new RangeError(
        `Cannot use tensor "${stored}" of "${source.path}": dtype ${info.dtype} is not a float ` +
          "type; is this a ControlNet weight file?",
      );
    }
    if (out.has(name)) {
      throw new RangeError(
        `Cannot use "${source.path}": two tensors map to "${name}"; the file holds duplicate weights`,
      );
    }
    const shape = [...info.shape];
    const inPlace = (floatType === "float32" && from === "F32") ||
      (floatType === "float16" && from === "F16");
    const at = inPlace ? await source.location(stored) : undefined;
    if (at !== undefined) {
      out.set(name, {
        dtype: floatType,
        shape,
        file: at.path,
        offset: at.byteOffset,
        length: at.byteLength,
      });
    } else {
      out.set(name, {
        dtype: floatType,
        shape,
        load: async () => convertFloat((await source.read(stored)).data, from, floatType),
      });
    }
  }
  return out;
}

/** Where a single file's `global_pool_conditions` came from. */
export interface GlobalPoolSource {
  value: boolean;
  /** For notes: "the yaml beside it", "its file name". */
  from: string;
}

/**
 * `global_pool_conditions` of a single-file net, which its tensors cannot tell: the
 * `global_average_pooling` of the yaml config beside it (`control_v11e_sd15_shuffle.yaml` next
 * to `control_v11e_sd15_shuffle.pth`, as lllyasviel publishes them and as A1111's extension read
 * them), else whether the file name contains "shuffle" (the extension's rule since it stopped
 * reading yaml files: `'shuffle' in Path(model_path).stem.lower()`).
 *
 * @example
 * ```ts
 * import { globalPoolFromFile } from "./controlnet_loader.ts";
 * const pool = await globalPoolFromFile("/nowhere/control_v11e_sd15_shuffle.pth");
 * console.assert(pool.value === true && pool.from === "its file name");
 * ```
 */
export async function globalPoolFromFile(path: string): Promise<GlobalPoolSource> {
  const stem = basename(path).replace(/\.[^.]*$/, "");
  const yaml = join(dirname(path), `${stem}.yaml`);
  if (existsSync(yaml)) {
    const text = await Deno.readTextFile(yaml);
    const m = /^\s*global_average_pooling\s*:\s*([A-Za-z]+)\s*(#.*)?$/m.exec(text);
    if (m !== null && /^(true|false)$/i.test(m[1]!)) {
      return { value: m[1]!.toLowerCase() === "true", from: `${stem}.yaml beside it` };
    }
  }
  return { value: stem.toLowerCase().includes("shuffle"), from: "its file name" };
}

const FOLDER_WEIGHTS = [
  "diffusion_pytorch_model.safetensors",
  "diffusion_pytorch_model.fp16.safetensors",
  "diffusion_pytorch_model.bin",
  "diffusion_pytorch_model.fp16.bin",
];

/**
 * Opens a ControlNet: a Diffusers folder, a Diffusers-named single file or an original-layout
 * single file (see the module documentation). Throws ModelNotFoundError when the path does not
 * exist or the folder has no weights, RangeError when the file is not a ControlNet.
 *
 * @example
 * ```ts ignore
 * const net = await loadControlnet("control_v11p_sd15_canny.pth");
 * console.log(net.config.base); // "sd15"
 * const model = buildControlnet(net.config, net.weights);
 * ```
 */
export async function loadControlnet(
  path: string,
  options: LoadControlnetOptions = {},
): Promise<LoadedControlnet> {
  if (!existsSync(path)) {
    throw new ModelNotFoundError(`Cannot find the ControlNet "${path}"`, {
      hint: "pass a Diffusers ControlNet folder or a control_*.pth / .safetensors file",
    });
  }
  const floatType = options.floatType ?? "float32";
  if (statSync(path).isDirectory()) {
    const configPath = join(path, "config.json");
    const file = FOLDER_WEIGHTS.map((f) => join(path, f)).find((f) => existsSync(f));
    if (!existsSync(configPath) || file === undefined) {
      throw new ModelNotFoundError(
        `Cannot use the folder "${path}" as a ControlNet: it needs config.json and ` +
          "diffusion_pytorch_model.safetensors",
        { hint: "pass a Diffusers ControlNet folder (as save_pretrained writes it)" },
      );
    }
    const json = JSON.parse(await Deno.readTextFile(configPath)) as Record<string, unknown>;
    const config = parseControlnetConfig(json);
    const source = await openWeights(file);
    try {
      const weights = await weightSourceTensors(source, { floatType });
      return {
        config,
        json,
        weights,
        file,
        layout: "diffusers-folder",
        notes: [],
        close: () => source.close(),
      };
    } catch (e) {
      source.close();
      throw e;
    }
  }

  const source = await openWeights(path);
  try {
    const names = source.names();
    const layout = controlnetLayout(names, `"${basename(path)}"`);
    const map = layout === "ldm" ? controlnetKeysFromLdm(names) : null;
    const rename = (n: string) => map === null ? n : map.get(n) ?? null;
    const shapes = new Map<string, number[]>();
    for (const n of names) {
      const to = rename(n);
      if (to !== null) shapes.set(to, source.info(n).shape);
    }
    const pool = options.globalPoolConditions === undefined
      ? await globalPoolFromFile(path)
      : undefined;
    const json = detectControlnetConfig(shapes, {
      ...options,
      globalPoolConditions: options.globalPoolConditions ?? pool!.value,
    });
    const config = parseControlnetConfig(json);
    const notes: string[] = [];
    if (options.attentionHeadDim === undefined) {
      notes.push(
        `attention heads not stored in the file; using ${
          config.base === "sd15" ? "8" : "width/64"
        }` +
          ` (the ${config.base} default)`,
      );
    }
    if (pool !== undefined) {
      notes.push(`global_pool_conditions ${pool.value ? "on" : "off"}, from ${pool.from}`);
    }
    const weights = await weightSourceTensors(source, { floatType, rename });
    return {
      config,
      json,
      weights,
      file: path,
      layout: layout === "ldm" ? "original-file" : "diffusers-file",
      notes,
      close: () => source.close(),
    };
  } catch (e) {
    source.close();
    throw e;
  }
}
