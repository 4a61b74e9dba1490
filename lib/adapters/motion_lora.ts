/**
 * Motion LoRA (AnimateDiff's camera-motion LoRAs: PanLeft, ZoomIn, ...) merged into a motion
 * module's weights before the UNet graph is built: `W' = W + scale · factor · (up @ down)` on
 * the `to_q`, `to_k`, `to_v` and `to_out.0` weights of every temporal attention (biases
 * unchanged), `factor = alpha / rank` when the file stores an alpha and 1 otherwise.
 *
 * Layouts read (the module names are mapped by the tables below and motion_adapter.ts):
 * - guoyww's originals (`v2_lora_ZoomIn.ckpt`, ...): `down_blocks.0.motion_modules.0.
 *   temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_q_lora.down.weight`,
 *   merged by AnimateDiff's `convert_motion_lora_ckpt_to_diffusers` with factor 1;
 * - the Diffusers conversions (`guoyww/animatediff-motion-lora-*`): `unet.down_blocks.0.
 *   motion_modules.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight`, no alpha
 *   (Diffusers' old `LoRALinearLayer` with `network_alpha=None`: factor 1);
 * - Diffusers/PEFT spellings of the same modules (`….attn1.to_q.lora.down.weight`,
 *   `….attn1.to_q.lora_A.weight`), read by lora_file.ts.
 *
 * The arithmetic is lora_math.ts's; every module of a file must land on a weight of the motion
 * module (a LoRA for a v2 module has mid-block modules that a v1 module lacks: that is an
 * error, not a partial merge).
 *
 * @module
 */
import { basename } from "node:path";
import { float32ToFloat16Bits, type TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { convertFloat } from "../onnx/tensor_sources.ts";
import { animatediffKeyToDiffusers } from "../models/motion_adapter.ts";
import { fileHashes } from "./hashes.ts";
import { type LoraFile, openLoraFile } from "./lora_file.ts";
import { moduleDelta, type ModuleTensors } from "./lora_math.ts";

/** One motion LoRA to merge. */
export interface MotionLoraSpec {
  /** The file (.ckpt, .safetensors). */
  path: string;
  /** Multiplier of its change (`--motion-lora FILE:SCALE`; AnimateDiff's `alpha`). */
  scale: number;
  /** The name it was asked for by (default the file name). */
  name?: string;
}

/** What one motion LoRA did. */
export interface MotionLoraLedger {
  path: string;
  name: string;
  /** How the file spells its modules. */
  layout: "animatediff" | "diffusers";
  /** Every module, with the motion-module weight it changed. */
  applied: Array<{ module: string; target: string }>;
}

/** What {@linkcode applyMotionLoras} returns. */
export interface MotionLoraResult {
  /** The motion-module weights with the merged ones replaced (same dtypes as given). */
  weights: Map<string, TensorSource>;
  /** One ledger per file, in order. */
  ledgers: MotionLoraLedger[];
  /** Identifies the merge in a build-cache key (file SHA-256s and scales). */
  key: string;
}

/** Module-name spellings of motion LoRAs and the attention projection each stands for. */
const MOTION_LORA_TABLE: ReadonlyArray<readonly [RegExp, string]> = [
  [/^unet\./, ""],
  [/^base_model\.model\./, ""],
  [/\.processor\.to_(q|k|v)_lora$/, ".to_$1"],
  [/\.processor\.to_out_lora$/, ".to_out.0"],
  [/\.to_(q|k|v)_lora$/, ".to_$1"],
  [/\.to_out_lora$/, ".to_out.0"],
  [/\.to_out$/, ".to_out.0"],
];

/**
 * The motion-module weight (Diffusers name) a motion-LoRA module changes, or undefined when the
 * name is not a temporal-attention projection.
 *
 * @example
 * ```ts
 * import { motionLoraTarget } from "./motion_lora.ts";
 * const t = motionLoraTarget("down_blocks.1.motion_modules.0.temporal_transformer." +
 *   "transformer_blocks.0.attention_blocks.1.processor.to_out_lora");
 * console.assert(t === "down_blocks.1.motion_modules.0.transformer_blocks.0.attn2.to_out.0.weight");
 * ```
 */
export function motionLoraTarget(module: string): string | undefined {
  let key = module;
  for (const [pattern, replacement] of MOTION_LORA_TABLE) key = key.replace(pattern, replacement);
  const target = animatediffKeyToDiffusers(`${key}.weight`);
  if (typeof target !== "string") return undefined;
  return /\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(target) ? target : undefined;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** A fresh float32 copy of a weight (the source's own memory is never edited). */
async function readFloat32(name: string, source: TensorSource): Promise<Float32Array> {
  if (source.dtype !== "float32" && source.dtype !== "float16") {
    throw new TypeError(`Cannot merge a motion LoRA into "${name}": it is ${source.dtype}`);
  }
  const bytes = await readSource(name, source);
  const values = convertFloat(bytes, source.dtype === "float32" ? "F32" : "F16", "float32");
  return (values as Float32Array).slice();
}

async function readModule(lora: LoraFile, tensors: Record<string, string>): Promise<ModuleTensors> {
  const out: ModuleTensors = {};
  for (const [role, name] of Object.entries(tensors)) {
    out[role] = { data: await lora.source.readFloat32(name), shape: lora.source.info(name).shape };
  }
  return out;
}

/**
 * Merges motion LoRAs, in order, into a motion module's weights (Diffusers names, as
 * motion_adapter.ts `openMotionAdapter` gives them). Only the changed tensors are materialised.
 * Throws a RangeError for a file with a module the motion module lacks or with tensors of no
 * LoRA role, and a TypeError for a change whose shape does not fit its weight.
 *
 * @example
 * ```ts ignore
 * using mm = await openMotionAdapter("mm_sd_v15_v2.ckpt");
 * const merged = await applyMotionLoras(mm.weights, [{ path: "v2_lora_ZoomIn.ckpt", scale: 0.8 }]);
 * const unet = buildUnet(unetConfig, unetWeights, {
 *   motion: { config: mm.config, weights: merged.weights },
 * });
 * ```
 */
export async function applyMotionLoras(
  weights: ReadonlyMap<string, TensorSource>,
  specs: readonly MotionLoraSpec[],
): Promise<MotionLoraResult> {
  const edited = new Map<string, Float32Array>();
  const ledgers: MotionLoraLedger[] = [];
  const parts: Array<{ sha256: string; scale: number }> = [];
  for (const spec of specs) {
    const file = basename(spec.path);
    const lora = await openLoraFile(spec.path);
    try {
      if (lora.unknown.length > 0) {
        throw new RangeError(
          `Cannot apply motion LoRA "${file}": tensor "${lora.unknown[0]}" is no LoRA weight; ` +
            `pass a motion LoRA (v2_lora_*.ckpt or a Diffusers animatediff-motion-lora file)`,
        );
      }
      const ledger: MotionLoraLedger = {
        path: spec.path,
        name: spec.name ?? lora.name,
        layout: lora.modules.some((m) => m.key.includes(".temporal_transformer."))
          ? "animatediff"
          : "diffusers",
        applied: [],
      };
      for (const module of lora.modules) {
        const target = motionLoraTarget(module.key);
        const source = target === undefined ? undefined : weights.get(target);
        if (target === undefined || source === undefined) {
          throw new RangeError(
            `Cannot apply motion LoRA "${file}": "${module.key}" changes ` +
              `${target === undefined ? "no temporal attention" : `"${target}"`}, which this ` +
              `motion module lacks; it was made for another motion module (most motion LoRAs ` +
              `are for mm_sd_v15_v2)`,
          );
        }
        const tensors = await readModule(lora, module.tensors);
        const { delta, rank } = moduleDelta(module.key, module.algorithm, tensors);
        if (fmt(delta.shape) !== fmt(source.shape)) {
          throw new TypeError(
            `Cannot apply motion LoRA "${file}": "${module.key}" changes a weight of shape ` +
              `${fmt(delta.shape)}, but "${target}" has shape ${fmt(source.shape)}`,
          );
        }
        // No alpha (every published motion LoRA): factor 1.
        const alpha = tensors.alpha?.data[0];
        const factor = rank !== undefined && alpha !== undefined ? alpha / rank : 1;
        const weight = edited.get(target) ?? await readFloat32(target, source);
        const s = spec.scale * factor;
        for (let i = 0; i < weight.length; i++) weight[i]! += s * delta.data[i]!;
        edited.set(target, weight);
        ledger.applied.push({ module: module.key, target });
      }
      ledgers.push(ledger);
      parts.push({ sha256: (await fileHashes(spec.path)).sha256, scale: spec.scale });
    } finally {
      lora.close();
    }
  }
  const out = new Map(weights);
  for (const [name, data] of edited) {
    const source = weights.get(name)!;
    const shape = [...source.shape];
    out.set(
      name,
      source.dtype === "float16"
        ? { dtype: "float16", shape, data: Uint16Array.from(data, float32ToFloat16Bits) }
        : { dtype: "float32", shape, data },
    );
  }
  return { weights: out, ledgers, key: JSON.stringify({ motionLora: parts }) };
}
