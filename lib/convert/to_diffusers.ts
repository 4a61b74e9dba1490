/**
 * Single-file checkpoint (original LDM layout, .safetensors or .ckpt through the restricted
 * unpickler) -> complete Diffusers folder. Pipeline, top to bottom:
 *
 * 1. open the file and detect the family from names and shapes ({@linkcode detectCheckpoint});
 * 2. synthesise the component configs (or take them from a file this project wrote);
 * 3. for every parameter the builders expect, find its LDM tensor through the key table,
 *    apply the reshape / split / transpose, cast, and check its shape;
 * 4. refuse leftovers under a converted prefix (a tensor we do not understand);
 * 5. write unet/ vae/ text_encoder(_2)/ tokenizer(_2)/ scheduler/ model_index.json into a
 *    temporary folder and rename it into place, so an error never leaves half a model.
 *
 * @module
 */
import { existsSync, readdirSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { parseUnetConfig } from "../models/config.ts";
import {
  clipTextParameterShapes,
  fullClipTextConfig,
  fullUnetConfig,
  fullVaeConfig,
  unetParameterShapes,
  vaeParameterShapes,
} from "../models/random.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type TensorToWrite, writeSafetensors } from "../weights/safetensors.ts";
import { TorchArchive } from "../weights/torch_zip.ts";
import { openWeights, type WeightSource } from "../weights/weight_source.ts";
import {
  type CheckpointConfig,
  detectCheckpoint,
  type DetectedCheckpoint,
  pipelineIndexFor,
  schedulerFor,
  synthesizeConfigs,
  type SynthesizedConfigs,
} from "./detect.ts";
import {
  clipKeyMap,
  emaKey,
  type KeyMapping,
  LDM_PREFIX,
  openClipKeyMap,
  unetKeyMap,
  vaeKeyMap,
} from "../model_io/key_map.ts";
import { parseLdmYaml, yamlGet, type YamlMap } from "./ldm_yaml.ts";
import {
  castTensor,
  ldmToDiffusers,
  type OutputDtype,
  positionIds,
  toInt64,
} from "./tensor_ops.ts";
import { writeTokenizer } from "./tokenizer_files.ts";

/** safetensors metadata key under which {@linkcode writeSingleFile} stores the exact configs. */
export const CONFIGS_METADATA_KEY = "denoise.diffusers_configs";

const DIFFUSERS_VERSION = "0.27.2";

/** Options of {@linkcode convertCheckpoint}. */
export interface ConvertCheckpointOptions {
  /** Family override ("auto" detects). */
  config?: CheckpointConfig | "auto";
  /** Output precision (default "keep": each tensor as stored). */
  dtype?: OutputDtype;
  /** A separate VAE file (LDM or Diffusers key layout) replacing the checkpoint's. */
  vae?: string;
  /**
   * Folder with the CLIP vocab.json and merges.txt (required), or a function giving it, called
   * only once the file is known to be a checkpoint.
   */
  tokenizerDir: string | (() => Promise<string>);
  /** Read the UNet from the `model_ema.*` copy. */
  extractEma?: boolean;
  /** The checkpoint's LDM inference YAML. */
  originalConfig?: string;
  /**
   * A Diffusers folder of the same architecture whose component configs (and scheduler) are
   * used instead of synthesised ones, like Diffusers' `from_single_file(config=...)`.
   */
  configFrom?: string;
  /** Replace an existing non-empty output folder. */
  overwrite?: boolean;
  /** Called with progress messages ("unet: 686 tensors"). */
  onMessage?: (message: string) => void;
}

/** What a conversion did. */
export interface ConvertCheckpointResult {
  detected: DetectedCheckpoint;
  configs: SynthesizedConfigs;
  /** True when the configs came from this project's metadata in the file. */
  configsFromMetadata: boolean;
  /** Tensors written per component folder. */
  tensors: Record<string, number>;
  /** Top-level LDM keys that belong to no converted component (DDPM buffers and the like). */
  ignoredKeys: number;
  outDir: string;
}

/** An open checkpoint with an optional separate VAE. */
interface Sources {
  main: WeightSource;
  vae?: { source: WeightSource; prefix: string; diffusersLayout: boolean };
}

async function globalStepOf(path: string, source: WeightSource): Promise<number | undefined> {
  if (source.format !== "torch") return undefined;
  const archive = await TorchArchive.open(path);
  try {
    const root = archive.root;
    if (root instanceof Map) {
      const step = root.get("global_step");
      if (typeof step === "number") return step;
      if (typeof step === "bigint") return Number(step);
    }
    return undefined;
  } finally {
    archive.close();
  }
}

async function readYaml(path: string): Promise<YamlMap> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new RangeError(`Cannot read the original config "${path}": ${(error as Error).message}`);
  }
  try {
    return parseLdmYaml(text);
  } catch (error) {
    throw new SyntaxError(`Cannot use the original config "${path}": ${(error as Error).message}`);
  }
}

/**
 * The LDM inference YAML that belongs to a checkpoint, as A1111 finds it: `<name>.yaml` beside
 * the file, else the only `.yaml` in its folder; undefined when that is not an LDM config.
 */
export function findOriginalConfig(checkpoint: string): string | undefined {
  const dir = dirname(resolve(checkpoint));
  const stem = basename(checkpoint).replace(/\.[^.]+$/, "");
  const same = join(dir, `${stem}.yaml`);
  const yamls = readdirSync(dir).filter((n) => /\.ya?ml$/i.test(n));
  const found = existsSync(same) ? same : yamls.length === 1 ? join(dir, yamls[0]!) : undefined;
  // Only an LDM config (model.params) counts; other YAML files beside a checkpoint are ignored.
  if (found === undefined) return undefined;
  try {
    const params = yamlGet(parseLdmYaml(Deno.readTextFileSync(found)), "model.params");
    return params !== null && typeof params === "object" && !Array.isArray(params)
      ? found
      : undefined;
  } catch {
    return undefined;
  }
}

function metadataConfigs(source: WeightSource): SynthesizedConfigs | undefined {
  const text = source.metadata[CONFIGS_METADATA_KEY];
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as SynthesizedConfigs;
    if (typeof parsed.unet !== "object" || typeof parsed.vae !== "object") return undefined;
    return parsed;
  } catch {
    return undefined;
  }
}

/** One component folder's parameters and where they come from. */
export interface ComponentMapping {
  /** Diffusers folder: unet, vae, text_encoder, text_encoder_2. */
  folder: string;
  /** LDM prefix of the component. */
  prefix: string;
  maps: KeyMapping[];
  /** Diffusers shapes the builders expect. */
  shapes: Map<string, number[]>;
}

type PartialConfigs = Partial<Omit<SynthesizedConfigs, "index">>;

async function readConfigFolder(dir: string): Promise<PartialConfigs> {
  const read = async (rel: string) => {
    const path = join(dir, rel);
    if (!existsSync(path)) return undefined;
    try {
      const json = JSON.parse(await Deno.readTextFile(path)) as Record<string, unknown>;
      return Object.fromEntries(
        Object.entries(json).filter(([k]) => !k.startsWith("_") || k === "_class_name"),
      );
    } catch (error) {
      throw new SyntaxError(`Cannot use --config-from: "${path}" is not valid JSON`, {
        cause: error,
      });
    }
  };
  const out: PartialConfigs = {};
  const unet = await read("unet/config.json");
  const vae = await read("vae/config.json");
  const te = await read("text_encoder/config.json");
  const te2 = await read("text_encoder_2/config.json");
  const scheduler = await read("scheduler/scheduler_config.json");
  if (unet) {
    out.unet = Object.fromEntries(Object.entries(unet).filter(([k]) => k !== "_class_name"));
  }
  if (vae) out.vae = Object.fromEntries(Object.entries(vae).filter(([k]) => k !== "_class_name"));
  if (te) out.textEncoder = te;
  if (te2) out.textEncoder2 = te2;
  if (scheduler) out.scheduler = scheduler;
  if (Object.keys(out).length === 0) {
    throw new RangeError(
      `Cannot use --config-from "${dir}": it has no unet/, vae/ or text_encoder/ configs`,
    );
  }
  return out;
}

function coversAll(from: PartialConfigs, detected: DetectedCheckpoint): boolean {
  return from.unet !== undefined && from.vae !== undefined &&
    detected.textEncoders.every((t) =>
      t.folder === "text_encoder" ? from.textEncoder !== undefined : from.textEncoder2 !== undefined
    );
}

function definedOnly(from: PartialConfigs): PartialConfigs {
  return Object.fromEntries(Object.entries(from).filter(([, v]) => v !== undefined));
}

/** The component name mappings for a family, from its configs. */
export function componentMappings(
  detected: Pick<DetectedCheckpoint, "textEncoders">,
  configs: SynthesizedConfigs,
): ComponentMapping[] {
  const unetShapes = unetParameterShapes(configs.unet);
  const vaeShapes = vaeParameterShapes(configs.vae);
  const vaeBlocks = (configs.vae["block_out_channels"] as number[]).length;
  const out: ComponentMapping[] = [
    {
      folder: "unet",
      prefix: LDM_PREFIX.unet,
      maps: unetKeyMap(parseUnetConfig(configs.unet), unetShapes.keys()),
      shapes: unetShapes,
    },
    {
      folder: "vae",
      prefix: LDM_PREFIX.vae,
      maps: vaeKeyMap(vaeBlocks, vaeShapes.keys()),
      shapes: vaeShapes,
    },
  ];
  for (const te of detected.textEncoders) {
    const config = te.folder === "text_encoder" ? configs.textEncoder : configs.textEncoder2;
    if (config === undefined) throw new RangeError(`No config for ${te.folder}`);
    const withProjection = te.folder === "text_encoder_2";
    const shapes = clipTextParameterShapes(config, withProjection);
    const positions = fullClipTextConfig(config, withProjection)["max_position_embeddings"];
    shapes.set("text_model.embeddings.position_ids", [1, positions as number]);
    const maps = te.layout === "clip"
      ? clipKeyMap(shapes.keys(), te.prefix)
      : openClipKeyMap(shapes.keys(), te.prefix);
    out.push({ folder: te.folder, prefix: te.prefix, maps, shapes });
  }
  return out;
}

/** Keys under a converted prefix that Diffusers' converters also drop. */
function ignorable(key: string, prefix: string, usedLayers: number | undefined): boolean {
  const rest = key.slice(prefix.length);
  if (/^(logit_scale|attn_mask|text_projection)$/.test(rest)) return true;
  if (/^(text_model\.)?embeddings\.position_ids$/.test(rest)) return true;
  if (prefix === LDM_PREFIX.vae && rest.startsWith("loss.")) return true;
  const m = /^transformer\.resblocks\.(\d+)\./.exec(rest);
  return m !== null && usedLayers !== undefined && Number(m[1]) >= usedLayers;
}

async function readLdm(
  sources: Sources,
  folder: string,
  key: string,
  options: { ema: boolean },
): Promise<{ tensor: Tensor; key: string; source: WeightSource } | undefined> {
  if (folder === "vae" && sources.vae !== undefined) {
    const v = sources.vae;
    const name = v.prefix + key.slice(LDM_PREFIX.vae.length);
    if (!v.source.has(name)) return undefined;
    return { tensor: await v.source.read(name), key: name, source: v.source };
  }
  let name = key;
  if (folder === "unet" && options.ema) name = emaKey(key);
  if (!sources.main.has(name) && name.includes(".transformer.text_model.")) {
    // CLIP checkpoints saved before transformers added the text_model level.
    const legacy = name.replace(".transformer.text_model.", ".transformer.");
    if (sources.main.has(legacy)) name = legacy;
  }
  if (!sources.main.has(name)) return undefined;
  return { tensor: await sources.main.read(name), key: name, source: sources.main };
}

async function openVae(path: string): Promise<NonNullable<Sources["vae"]>> {
  const source = await openWeights(path);
  const names = source.names();
  if (names.some((n) => n.startsWith("encoder.down_blocks."))) {
    return { source, prefix: "", diffusersLayout: true };
  }
  if (names.some((n) => n.startsWith("first_stage_model.encoder."))) {
    return { source, prefix: "first_stage_model.", diffusersLayout: false };
  }
  if (names.some((n) => n.startsWith("encoder.down."))) {
    return { source, prefix: "", diffusersLayout: false };
  }
  source.close();
  throw new RangeError(`Cannot use --vae "${path}": it holds no AutoencoderKL encoder weights`);
}

function sortedJson(value: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) sorted[k] = value[k];
  return JSON.stringify(sorted, null, 2) + "\n";
}

function torchDtypeName(tensors: TensorToWrite[]): string {
  const d = tensors.find((t) => t.dtype !== "I64")?.dtype;
  return d === "F16" ? "float16" : d === "BF16" ? "bfloat16" : "float32";
}

/**
 * Converts an original-LDM single-file checkpoint into a complete Diffusers folder at `outDir`.
 *
 * @example
 * ```ts ignore
 * import { convertCheckpoint } from "./to_diffusers.ts";
 * const r = await convertCheckpoint("v1-5-pruned-emaonly.safetensors", "sd15", {
 *   tokenizerDir: "clip-tokenizer/",
 * });
 * console.log(r.detected.label); // "SD 1.x, epsilon"
 * ```
 */
export async function convertCheckpoint(
  input: string,
  outDir: string,
  options: ConvertCheckpointOptions,
): Promise<ConvertCheckpointResult> {
  const dtype = options.dtype ?? "keep";
  const say = options.onMessage ?? (() => {});
  const target = resolve(outDir);
  if (existsSync(target) && readdirSync(target).length > 0 && !options.overwrite) {
    throw new RangeError(
      `Cannot write to "${outDir}": the folder exists and is not empty; remove it or pass another -o`,
    );
  }
  // 1. Open and detect (the file is checked before anything else is asked of the user).
  const main = await openWeights(input);
  const sources: Sources = { main };
  try {
    if (options.vae !== undefined) sources.vae = await openVae(options.vae);
    const yaml = options.originalConfig === undefined ? {} : await readYaml(options.originalConfig);
    const globalStep = await globalStepOf(input, main);
    const detected = detectCheckpoint(main, {
      config: options.config ?? "auto",
      yaml,
      ...(globalStep !== undefined ? { globalStep } : {}),
    });
    const tokenizerDir = typeof options.tokenizerDir === "string"
      ? options.tokenizerDir
      : await options.tokenizerDir();
    for (const f of ["vocab.json", "merges.txt"]) {
      if (!existsSync(join(tokenizerDir, f))) {
        throw new RangeError(
          `Cannot use the tokenizer folder "${tokenizerDir}": it has no ${f}; ` +
            "pass --tokenizer with the tokenizer/ folder of any SD model",
        );
      }
    }
    if (options.extractEma && !detected.hasEma) {
      throw new RangeError(
        `Cannot use --extract-ema: "${basename(input)}" has no model_ema.* weights`,
      );
    }
    if (detected.hasEma && !options.extractEma) {
      detected.notes.push("the file also holds EMA weights; pass --extract-ema to use them");
    }

    // 2. Configs.
    const stored = metadataConfigs(main);
    const from = options.configFrom === undefined
      ? undefined
      : await readConfigFolder(options.configFrom);
    let configs: SynthesizedConfigs;
    if (stored !== undefined) {
      configs = stored;
      detected.notes.push("configs taken from the file's denoise metadata");
    } else if (from !== undefined && coversAll(from, detected)) {
      configs = {
        unet: from.unet!,
        vae: from.vae!,
        scheduler: from.scheduler ?? schedulerFor(detected, yaml),
        index: pipelineIndexFor(detected),
      };
      if (from.textEncoder) configs.textEncoder = from.textEncoder;
      if (from.textEncoder2) configs.textEncoder2 = from.textEncoder2;
      detected.notes.push(`configs taken from ${options.configFrom}`);
    } else {
      configs = { ...synthesizeConfigs(main, detected, yaml), ...definedOnly(from ?? {}) };
      if (from !== undefined) detected.notes.push(`some configs taken from ${options.configFrom}`);
    }
    if (options.config !== undefined && options.config !== "auto" && stored !== undefined) {
      configs.scheduler = { ...configs.scheduler, prediction_type: detected.prediction };
    }

    // 3. Tensors, component by component, into a temporary folder.
    const temp = `${target}.partial-${crypto.randomUUID().slice(0, 8)}`;
    await fsp.mkdir(temp, { recursive: true });
    const counts: Record<string, number> = {};
    const consumed = new Set<string>();
    try {
      const components = componentMappings(detected, configs);
      for (const c of components) {
        const tensors: TensorToWrite[] = [];
        for (const m of c.maps) {
          const want = c.shapes.get(m.diffusers)!;
          let t: Tensor;
          if (m.op.kind === "positionIds") {
            t = positionIds(want[1]!);
          } else if (c.folder === "vae" && sources.vae?.diffusersLayout) {
            const v = sources.vae.source;
            if (!v.has(m.diffusers)) {
              throw new RangeError(`Cannot use --vae: "${m.diffusers}" is missing from ${v.path}`);
            }
            t = await v.read(m.diffusers);
            if (t.shape.length === 4 && want.length === 2) {
              t = ldmToDiffusers(t, { kind: "conv1x1" }, m.diffusers);
            }
          } else {
            const got = await readLdm(sources, c.folder, m.ldm, {
              ema: options.extractEma ?? false,
            });
            if (got === undefined) {
              if (m.diffusers.endsWith("position_ids")) {
                t = positionIds(want[1]!);
              } else {
                throw new RangeError(
                  `Cannot convert "${basename(input)}": "${m.ldm}" is missing (needed for ` +
                    `${c.folder} "${m.diffusers}"); is --config right?`,
                );
              }
            } else {
              if (got.source === main) consumed.add(got.key);
              t = ldmToDiffusers(got.tensor, m.op, m.ldm);
            }
          }
          if (m.diffusers.endsWith("position_ids")) t = toInt64(t);
          if (t.shape.join() !== want.join()) {
            throw new TypeError(
              `Cannot convert "${basename(input)}": "${m.ldm || m.diffusers}" has shape ` +
                `[${t.shape.join(", ")}], ${c.folder} "${m.diffusers}" needs [${want.join(", ")}]`,
            );
          }
          t = castTensor(t, dtype);
          tensors.push({ name: m.diffusers, dtype: t.dtype, shape: t.shape, data: t.data });
        }
        // 4. Leftovers under this component's prefix.
        if (!(c.folder === "vae" && sources.vae !== undefined)) {
          const layers = c.folder.startsWith("text_encoder")
            ? ((c.folder === "text_encoder" ? configs.textEncoder : configs.textEncoder2)?.[
              "num_hidden_layers"
            ] as number | undefined)
            : undefined;
          const prefix = c.folder === "unet" && options.extractEma ? "model_ema." : c.prefix;
          const left = main.names().filter((n) =>
            n.startsWith(prefix) && !consumed.has(n) &&
            !(prefix === "model_ema." && /^model_ema\.(decay|num_updates)$/.test(n)) &&
            !ignorable(n, c.prefix, layers)
          );
          if (left.length > 0) {
            throw new RangeError(
              `Cannot convert "${basename(input)}": ${left.length} ${c.folder} tensor(s) are not ` +
                `understood, e.g. "${left[0]}"; is --config right?`,
            );
          }
        }
        const dir = join(temp, c.folder);
        await fsp.mkdir(dir, { recursive: true });
        const isText = c.folder.startsWith("text_encoder");
        let config: Record<string, unknown>;
        if (c.folder === "unet") config = fullUnetConfig(configs.unet);
        else if (c.folder === "vae") config = fullVaeConfig(configs.vae);
        else {
          config = fullClipTextConfig(
            c.folder === "text_encoder" ? configs.textEncoder : configs.textEncoder2,
            c.folder === "text_encoder_2",
          );
          config["torch_dtype"] = torchDtypeName(tensors);
        }
        await fsp.writeFile(join(dir, "config.json"), sortedJson(config));
        await writeSafetensors(
          join(dir, isText ? "model.safetensors" : "diffusion_pytorch_model.safetensors"),
          tensors,
          { format: "pt" },
        );
        counts[c.folder] = tensors.length;
        say(`${c.folder}: ${tensors.length} tensors`);
      }

      // 5. Tokenizers, scheduler, index.
      const index: Record<string, unknown> = {
        _diffusers_version: DIFFUSERS_VERSION,
        ...configs.index,
        unet: ["diffusers", "UNet2DConditionModel"],
        vae: ["diffusers", "AutoencoderKL"],
        scheduler: ["diffusers", String(configs.scheduler["_class_name"])],
        text_encoder: [null, null],
        tokenizer: [null, null],
      };
      for (const te of detected.textEncoders) {
        const suffix = te.folder === "text_encoder" ? "" : "_2";
        await writeTokenizer(
          tokenizerDir,
          join(temp, `tokenizer${suffix}`),
          te.layout === "openclip" ? "!" : "<|endoftext|>",
        );
        index[`text_encoder${suffix}`] = [
          "transformers",
          suffix === "_2" ? "CLIPTextModelWithProjection" : "CLIPTextModel",
        ];
        index[`tokenizer${suffix}`] = ["transformers", "CLIPTokenizer"];
      }
      if (detected.family !== "sdxl" && detected.family !== "sdxl-refiner") {
        index["safety_checker"] = [null, null];
        index["feature_extractor"] = [null, null];
      }
      await fsp.mkdir(join(temp, "scheduler"), { recursive: true });
      await fsp.writeFile(
        join(temp, "scheduler", "scheduler_config.json"),
        sortedJson({ _diffusers_version: DIFFUSERS_VERSION, ...configs.scheduler }),
      );
      await fsp.writeFile(join(temp, "model_index.json"), sortedJson(index));

      if (existsSync(target)) await fsp.rm(target, { recursive: true, force: true });
      await fsp.mkdir(dirname(target), { recursive: true });
      await fsp.rename(temp, target);
    } catch (error) {
      await fsp.rm(temp, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
    const prefixes = [
      LDM_PREFIX.unet,
      LDM_PREFIX.vae,
      ...detected.textEncoders.map((t) => t.prefix),
    ];
    const ignoredKeys = main.names().filter((n) => !prefixes.some((p) => n.startsWith(p))).length;
    return {
      detected,
      configs,
      configsFromMetadata: stored !== undefined,
      tensors: counts,
      ignoredKeys,
      outDir: target,
    };
  } finally {
    main.close();
    sources.vae?.source.close();
  }
}
