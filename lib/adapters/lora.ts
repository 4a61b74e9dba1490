/**
 * Applying LoRA-family files to a model as weight edits before its graphs are built:
 * `W' = W + multiplier · (alpha / rank) · ΔW` (A1111 extensions-builtin/Lora/network.py
 * `finalize_updown`; rank from the down weight, alpha defaults to the rank), DoRA's decomposition
 * when the file has magnitudes. Several files stack in order, each with its own text-encoder and
 * UNet multipliers.
 *
 * {@linkcode planLoras} matches every module against the model's parameter names and shapes
 * (read from the safetensors headers, nothing else) and returns a ledger of what was applied and
 * what was not, so a file that matches nothing fails before any work. The returned transforms do
 * the arithmetic when a graph is built; only the touched tensors are materialised, every other
 * weight stays a reference into its file.
 *
 * @module
 */
import { basename } from "node:path";
import { WeightsError } from "../errors.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { fileHashes } from "./hashes.ts";
import {
  type LoraAlgorithm,
  type LoraComponent,
  type LoraFile,
  type LoraModule,
  openLoraFile,
} from "./lora_file.ts";
import {
  indexParameters,
  ldmUnetAliases,
  type ParameterEntry,
  type ParameterIndex,
} from "./lora_keys.ts";
import type { UnetConfig } from "../models/config.ts";
import {
  deltaShape,
  type DenseTensor,
  doraChange,
  fitsShape,
  moduleDelta,
  type ModuleTensors,
} from "./lora_math.ts";

/** One LoRA to apply. */
export interface LoraSpec {
  /** The file (.safetensors, .pt, .ckpt, .bin). */
  path: string;
  /** The name it was asked for by (prompt tag or file stem); recorded in metadata. */
  name?: string;
  /** Multiplier for the text encoder(s). */
  te: number;
  /** Multiplier for the UNet. */
  unet: number;
}

/** Where a model's component weights are (a safetensors file each); absent ones are skipped. */
export type ComponentWeights = Partial<Record<LoraComponent, string>>;

/** Options of {@linkcode planLoras}. */
export interface PlanLorasOptions {
  /** The UNet's config: also match original-LDM module names (kohya's SDXL spelling). */
  unetConfig?: UnetConfig;
}

/** One module that was applied. */
export interface LoraAppliedModule {
  /** The module name as the file spells it. */
  module: string;
  /** The component changed. */
  component: LoraComponent;
  /** The parameter changed (Diffusers name). */
  target: string;
  algorithm: LoraAlgorithm;
}

/** What one file did to the model (sd.cpp `lora.hpp`'s applied/skipped ledger). */
export interface LoraLedger {
  /** The file. */
  path: string;
  /** The name it was asked for by. */
  name: string;
  /** Modules matched to a parameter of the model. */
  applied: LoraAppliedModule[];
  /** Modules whose target is not in the model (or targets a component it lacks). */
  unmatched: string[];
  /** Tensors of no known role (metadata tensors, unsupported extras). */
  ignored: string[];
}

/** An edit of one component's weights before its graph is built (see lib/model_io/engine.ts). */
export interface WeightTransform {
  /** Identifies the edit in the build cache key. */
  key: string;
  /** Returns the edited sources. */
  apply: (sources: Map<string, TensorSource>) => Promise<Map<string, TensorSource>>;
}

/** A merge of one module into one parameter. */
interface PlannedMerge {
  path: string;
  module: LoraModule;
  /** "weight" merges ΔW; "bias" adds a full module's `diff_b`. */
  part: "weight" | "bias";
  target: string;
  targetShape: number[];
  multiplier: number;
}

/** What {@linkcode planLoras} returns. */
export interface LoraPlan {
  /** One ledger per file, in order. */
  ledgers: LoraLedger[];
  /** Per component, its edit, or absent when no file touches it. */
  transforms: Partial<Record<LoraComponent, WeightTransform>>;
}

const COMPONENTS: readonly LoraComponent[] = ["unet", "text_encoder", "text_encoder_2"];

async function readHeaderIndex(path: string, unet?: UnetConfig): Promise<ParameterIndex> {
  using file = await SafetensorsFile.open(path);
  const shapes = new Map<string, number[]>();
  for (const [name, info] of file.tensors) shapes.set(name, [...info.shape]);
  return indexParameters(shapes, unet ? ldmUnetAliases(unet, shapes.keys()) : undefined);
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Matches LoRA files against a model's components and plans the merges. Throws a TypeError for a
 * module whose change does not fit its weight, and a RangeError for a file that matches nothing.
 *
 * @example
 * ```ts ignore
 * const plan = await planLoras([{ path: "detail.safetensors", te: 1, unet: 0.7 }], {
 *   unet: "model/unet/diffusion_pytorch_model.safetensors",
 *   text_encoder: "model/text_encoder/model.safetensors",
 * });
 * console.log(plan.ledgers[0]?.applied.length, Object.keys(plan.transforms));
 * ```
 */
export async function planLoras(
  specs: readonly LoraSpec[],
  components: ComponentWeights,
  options: PlanLorasOptions = {},
): Promise<LoraPlan> {
  const indices = new Map<LoraComponent, ParameterIndex>();
  for (const c of COMPONENTS) {
    const path = components[c];
    if (path === undefined) continue;
    indices.set(c, await readHeaderIndex(path, c === "unet" ? options.unetConfig : undefined));
  }
  const ledgers: LoraLedger[] = [];
  const merges = new Map<LoraComponent, PlannedMerge[]>();
  const touched = new Map<LoraComponent, Array<{ path: string; multiplier: number }>>();
  for (const spec of specs) {
    const lora = await openLoraFile(spec.path);
    try {
      const ledger: LoraLedger = {
        path: spec.path,
        name: spec.name ?? lora.name,
        applied: [],
        unmatched: [],
        ignored: [...lora.unknown],
      };
      for (const module of lora.modules) {
        const found = findTarget(module, indices);
        if (found === undefined) {
          ledger.unmatched.push(module.key);
          continue;
        }
        const multiplier = found.component === "unet" ? spec.unet : spec.te;
        const planned = checkFit(lora, module, found, spec.path);
        for (const merge of planned) {
          let list = merges.get(found.component);
          if (list === undefined) merges.set(found.component, list = []);
          list.push({ ...merge, multiplier });
        }
        ledger.applied.push({
          module: module.key,
          component: found.component,
          target: planned[0]!.target,
          algorithm: module.algorithm,
        });
        let files = touched.get(found.component);
        if (files === undefined) touched.set(found.component, files = []);
        if (!files.some((f) => f.path === spec.path && f.multiplier === multiplier)) {
          files.push({ path: spec.path, multiplier });
        }
      }
      if (ledger.applied.length === 0) {
        const sample = ledger.unmatched.slice(0, 2).map((k) => `"${k}"`).join(", ");
        throw new RangeError(
          `Cannot apply LoRA "${basename(spec.path)}": none of its ${lora.modules.length} ` +
            `modules matches a weight of this model (e.g. ${sample}); it was made for another ` +
            `model family`,
        );
      }
      ledgers.push(ledger);
    } finally {
      lora.close();
    }
  }
  const transforms: Partial<Record<LoraComponent, WeightTransform>> = {};
  for (const [component, list] of merges) {
    const parts = [];
    for (const f of touched.get(component) ?? []) {
      parts.push({ sha256: (await fileHashes(f.path)).sha256, multiplier: f.multiplier });
    }
    transforms[component] = {
      key: JSON.stringify({ lora: parts }),
      apply: (sources) => applyMerges(sources, list),
    };
  }
  return { ledgers, transforms };
}

interface FoundTarget {
  component: LoraComponent;
  entry: ParameterEntry;
  shapes: ReadonlyMap<string, number[]>;
}

function findTarget(
  module: LoraModule,
  indices: ReadonlyMap<LoraComponent, ParameterIndex>,
): FoundTarget | undefined {
  const candidates = module.component !== undefined ? [module.component] : COMPONENTS;
  for (const component of candidates) {
    const index = indices.get(component);
    const entry = index?.modules.get(module.path);
    if (index === undefined || entry === undefined) continue;
    return { component, entry, shapes: index.shapes };
  }
  return undefined;
}

function checkFit(
  lora: LoraFile,
  module: LoraModule,
  found: FoundTarget,
  path: string,
): Array<Omit<PlannedMerge, "multiplier">> {
  const shapes: Record<string, number[]> = {};
  for (const [role, name] of Object.entries(module.tensors)) {
    shapes[role] = lora.source.info(name).shape;
  }
  const out: Array<Omit<PlannedMerge, "multiplier">> = [];
  const file = basename(path);
  if (module.algorithm !== "full" || module.tensors.diff !== undefined) {
    const target = found.entry.weight;
    const targetShape = target === undefined ? undefined : found.shapes.get(target);
    const shape = deltaShape(module.algorithm, shapes);
    const tensors = Object.entries(shapes).filter(([role]) => role !== "alpha")
      .map(([role, s]) => `${role} ${fmt(s)}`).join(", ");
    if (target === undefined || targetShape === undefined) {
      throw new WeightsError(
        `Cannot apply LoRA "${file}": "${module.key}" changes a weight, but its module has none`,
      );
    }
    if (shape === undefined) {
      throw new WeightsError(
        `Cannot apply LoRA "${file}": the tensors of "${module.key}" do not fit together ` +
          `(${tensors}), so it cannot change "${target}" of shape ${fmt(targetShape)}`,
      );
    }
    if (!fitsShape(shape, targetShape)) {
      throw new WeightsError(
        `Cannot apply LoRA "${file}": "${module.key}" changes a weight of shape ${
          fmt(shape)
        }, but "${target}" has shape ${fmt(targetShape)} (its tensors: ${tensors})`,
      );
    }
    out.push({ path, module, part: "weight", target, targetShape });
  }
  if (module.tensors.diff_b !== undefined) {
    const bias = found.entry.bias;
    const biasShape = bias === undefined ? undefined : found.shapes.get(bias);
    if (bias === undefined || biasShape === undefined || !fitsShape(shapes.diff_b!, biasShape)) {
      throw new WeightsError(
        `Cannot apply LoRA "${file}": "${module.key}" changes a bias of shape ${
          fmt(shapes.diff_b!)
        }, which its module does not have`,
      );
    }
    out.push({ path, module, part: "bias", target: bias, targetShape: biasShape });
  }
  return out;
}

async function readFloat32(name: string, source: TensorSource): Promise<Float32Array> {
  if (source.dtype !== "float32") {
    throw new TypeError(`Cannot merge a LoRA into "${name}": it is ${source.dtype}, not float32`);
  }
  const bytes = await readSource(name, source);
  const copy = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength >> 2);
}

async function readModule(lora: LoraFile, module: LoraModule): Promise<ModuleTensors> {
  const out: ModuleTensors = {};
  for (const [role, name] of Object.entries(module.tensors)) {
    out[role] = { data: await lora.source.readFloat32(name), shape: lora.source.info(name).shape };
  }
  return out;
}

/** The module's change, its errors naming the file. */
function deltaOf(merge: PlannedMerge, tensors: ModuleTensors) {
  try {
    return moduleDelta(merge.module.key, merge.module.algorithm, tensors);
  } catch (error) {
    if (!(error instanceof WeightsError)) throw error;
    throw new WeightsError(`Cannot apply LoRA "${basename(merge.path)}": ${error.message}`);
  }
}

async function applyMerges(
  sources: Map<string, TensorSource>,
  merges: readonly PlannedMerge[],
): Promise<Map<string, TensorSource>> {
  const edited = new Map<string, Float32Array>();
  const files = new Map<string, LoraFile>();
  try {
    for (const merge of merges) {
      let lora = files.get(merge.path);
      if (lora === undefined) files.set(merge.path, lora = await openLoraFile(merge.path));
      const source = sources.get(merge.target);
      if (source === undefined) {
        throw new RangeError(
          `Cannot apply LoRA "${basename(merge.path)}": "${merge.target}" ` +
            `is not among the model's weights`,
        );
      }
      const weight = edited.get(merge.target) ?? Float32Array.from(
        await readFloat32(merge.target, source),
      );
      const tensors = await readModule(lora, merge.module);
      let change: Float32Array;
      if (merge.part === "bias") {
        change = tensors.diff_b!.data;
      } else {
        const { delta, rank } = deltaOf(merge, tensors);
        // A1111 network.py calc_scale: alpha / dim when both are known, else 1.
        const alpha = tensors.alpha?.data[0];
        const factor = rank !== undefined && alpha !== undefined ? alpha / rank : 1;
        change = delta.data;
        if (factor !== 1) change = change.map((v) => v * factor);
        const magnitude: DenseTensor | undefined = tensors.dora_scale;
        if (magnitude !== undefined) {
          change = doraChange(weight, change, merge.targetShape, magnitude);
        }
      }
      for (let i = 0; i < weight.length; i++) weight[i]! += merge.multiplier * change[i]!;
      edited.set(merge.target, weight);
    }
  } finally {
    for (const f of files.values()) f.close();
  }
  const out = new Map(sources);
  for (const [name, data] of edited) {
    const source = sources.get(name)!;
    out.set(name, { dtype: "float32", shape: [...source.shape], data });
  }
  return out;
}
