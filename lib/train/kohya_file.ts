/**
 * Saving a trained LoRA the way kohya-ss sd-scripts does (networks/lora.py `save_weights`,
 * train_network.py's metadata), so A1111, ComfyUI, Diffusers and `denoise generate --lora` read
 * it: `<module>.lora_down.weight` `[rank, in]`, `<module>.lora_up.weight` `[out, rank]` and a
 * scalar `<module>.alpha` per module; training facts as `ss_*` metadata strings; and the two
 * hashes kohya precomputes for A1111's additional-networks index (train_util.py
 * `precalculate_safetensors_hashes`): `sshs_model_hash`, the SHA-256 of the file's bytes after
 * the header, and `sshs_legacy_hash`, the first 8 hex digits of the SHA-256 of the 64 KiB at
 * offset 1 MiB, both of the file as written with only the `ss_*` metadata.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { encodeSafetensors, type TensorToWrite, writeSafetensors } from "../weights/safetensors.ts";

/** A trained network to save. */
export interface KohyaLora {
  /** Down/up matrices by training name (`<module>.lora_down.weight` ...). */
  weights: Readonly<Record<string, Float32Array>>;
  /** Their shapes. */
  shapes: Readonly<Record<string, readonly number[]>>;
  /** kohya alpha (saved per module). */
  alpha: number;
  /** Training module name -> saved module name (default: the same). */
  rename?: ReadonlyMap<string, string>;
}

/** The hashes kohya precomputes. */
export interface KohyaHashes {
  /** `sshs_model_hash`: SHA-256 of the bytes after the header. */
  modelHash: string;
  /** `sshs_legacy_hash`: first 8 hex digits of the SHA-256 of bytes [1 MiB, 1 MiB + 64 KiB). */
  legacyHash: string;
}

/**
 * Python's `str(float)` for the metadata (`4.0`, `0.0001`, `1e-05`), as kohya writes numbers.
 *
 * @example
 * ```ts
 * import { pythonFloat } from "./kohya_file.ts";
 * console.assert(pythonFloat(4) === "4.0" && pythonFloat(1e-4) === "0.0001" && pythonFloat(1e-5) === "1e-05");
 * ```
 */
export function pythonFloat(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return `${x}.0`;
  const abs = Math.abs(x);
  if (abs >= 1e-4 && abs < 1e16) return String(x);
  const [mantissa, exponent] = x.toExponential().split("e") as [string, string];
  const sign = exponent.startsWith("-") ? "-" : "+";
  const digits = exponent.replace(/^[+-]/, "").padStart(2, "0");
  return `${mantissa}e${sign}${digits}`;
}

function tensorsOf(lora: KohyaLora): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  const modules = new Set<string>();
  for (const [name, data] of Object.entries(lora.weights)) {
    const m = /^(.*)\.(lora_down|lora_up)\.weight$/.exec(name);
    if (m === null) throw new RangeError(`Cannot save "${name}": not a lora_down/lora_up weight`);
    const saved = lora.rename?.get(m[1]!) ?? m[1]!;
    modules.add(saved);
    const shape = lora.shapes[name];
    if (shape === undefined) throw new RangeError(`Cannot save "${name}": its shape is unknown`);
    out.push({ name: `${saved}.${m[2]}.weight`, dtype: "F32", shape: [...shape], data });
  }
  for (const m of modules) {
    out.push({ name: `${m}.alpha`, dtype: "F32", shape: [], data: Float32Array.of(lora.alpha) });
  }
  return out;
}

/**
 * kohya's two hashes of the file as it would be written with `metadata` (only its `ss_*`
 * entries count, as kohya filters them).
 *
 * @example
 * ```ts
 * import { kohyaHashes } from "./kohya_file.ts";
 * const h = kohyaHashes({
 *   weights: { "m.lora_down.weight": new Float32Array(2), "m.lora_up.weight": new Float32Array(2) },
 *   shapes: { "m.lora_down.weight": [1, 2], "m.lora_up.weight": [2, 1] },
 *   alpha: 1,
 * }, { ss_network_dim: "1", other: "ignored" });
 * console.assert(h.modelHash.length === 64 && h.legacyHash === "e3b0c442");
 * ```
 */
export function kohyaHashes(lora: KohyaLora, metadata: Record<string, string>): KohyaHashes {
  const ss = Object.fromEntries(Object.entries(metadata).filter(([k]) => k.startsWith("ss_")));
  const bytes = encodeSafetensors(tensorsOf(lora), ss);
  const header = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const modelHash = createHash("sha256").update(bytes.subarray(8 + header)).digest("hex");
  const legacy = createHash("sha256").update(bytes.subarray(0x100000, 0x100000 + 0x10000))
    .digest("hex").slice(0, 8);
  return { modelHash, legacyHash: legacy };
}

/**
 * Writes the LoRA atomically (temporary file, then rename) with the `ss_*` metadata given plus
 * the two `sshs_*` hashes; returns the hashes.
 *
 * @example
 * ```ts
 * import { SafetensorsFile } from "../weights/safetensors.ts";
 * import { writeKohyaLora } from "./kohya_file.ts";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await writeKohyaLora(path, {
 *   weights: { "lora_unet_a.lora_down.weight": new Float32Array(8), "lora_unet_a.lora_up.weight": new Float32Array(8) },
 *   shapes: { "lora_unet_a.lora_down.weight": [2, 4], "lora_unet_a.lora_up.weight": [4, 2] },
 *   alpha: 2,
 * }, { ss_network_dim: "2" });
 * using file = await SafetensorsFile.open(path);
 * console.assert(file.tensors.has("lora_unet_a.alpha") && file.metadata.sshs_model_hash !== undefined);
 * ```
 */
export async function writeKohyaLora(
  path: string,
  lora: KohyaLora,
  metadata: Record<string, string>,
): Promise<KohyaHashes> {
  const hashes = kohyaHashes(lora, metadata);
  await writeSafetensors(path, tensorsOf(lora), {
    ...metadata,
    sshs_model_hash: hashes.modelHash,
    sshs_legacy_hash: hashes.legacyHash,
  });
  return hashes;
}
