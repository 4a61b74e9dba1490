/**
 * Turns the tensors of a safetensors-style file into {@linkcode TensorSource}s for a graph of a
 * given float type: tensors already in that type are referenced in place (zero copy, external
 * data into the file); other float tensors are converted when the model is written.
 *
 * Structurally typed over the file object (lib/weights/safetensors.ts `SafetensorsFile` fits),
 * so lib/onnx depends on no reader.
 *
 * @module
 */
import { type ElemType, float32ToFloat16Bits, type TensorSource } from "./graph.ts";

/** What this module needs of an open safetensors file. */
export interface TensorFile {
  /** The file's path; undefined for bytes in memory (then every tensor is read). */
  readonly path: string | undefined;
  /** Tensors by name with safetensors dtype names (`"F32"`, `"F16"`, `"BF16"`, `"I64"`, ...). */
  readonly tensors: ReadonlyMap<
    string,
    {
      readonly dtype: string;
      readonly shape: readonly number[];
      readonly byteOffset: number;
      readonly byteLength: number;
    }
  >;
  /** The raw little-endian bytes of one tensor. */
  read(name: string): Promise<Uint8Array>;
}

/** Options of {@linkcode tensorSources}. */
export interface TensorSourcesOptions {
  /** Float type of the graph (default `"float32"`); float tensors are converted to it. */
  floatType?: "float32" | "float16";
  /**
   * Maps a stored name to the builder's parameter name; return null to drop the tensor.
   * (For foreign checkpoints: a normalising table lookup.)
   */
  rename?: (name: string) => string | null;
}

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);
const INT_TYPES: Record<string, ElemType> = {
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U8: "uint8",
  BOOL: "bool",
};

/**
 * Sources for every tensor of `file`, keyed by (renamed) parameter name.
 *
 * @example
 * ```ts ignore
 * const file = await SafetensorsFile.open("text_encoder/model.safetensors");
 * const ledger = new WeightLedger("CLIPTextModel", tensorSources(file));
 * ```
 */
export function tensorSources(
  file: TensorFile,
  options: TensorSourcesOptions = {},
): Map<string, TensorSource> {
  const floatType = options.floatType ?? "float32";
  const out = new Map<string, TensorSource>();
  for (const [stored, info] of file.tensors) {
    const name = options.rename === undefined ? stored : options.rename(stored);
    if (name === null) continue;
    if (out.has(name)) {
      throw new RangeError(
        `Cannot use "${file.path ?? "<memory>"}": two tensors map to "${name}"; ` +
          `the file holds duplicate weights`,
      );
    }
    const shape = [...info.shape];
    let source: TensorSource;
    if (FLOAT_DTYPES.has(info.dtype)) {
      const inPlace = (floatType === "float32" && info.dtype === "F32") ||
        (floatType === "float16" && info.dtype === "F16");
      if (inPlace && file.path !== undefined) {
        source = {
          dtype: floatType,
          shape,
          file: file.path,
          offset: info.byteOffset,
          length: info.byteLength,
        };
      } else {
        source = {
          dtype: floatType,
          shape,
          load: async () => convertFloat(await file.read(stored), info.dtype, floatType),
        };
      }
    } else {
      const type = INT_TYPES[info.dtype];
      if (type === undefined) {
        throw new RangeError(
          `Cannot use tensor "${stored}" of "${file.path ?? "<memory>"}": dtype ${info.dtype} ` +
            `is not supported in graphs; convert the checkpoint to F32 or F16`,
        );
      }
      source = file.path !== undefined
        ? { dtype: type, shape, file: file.path, offset: info.byteOffset, length: info.byteLength }
        : { dtype: type, shape, load: () => file.read(stored) };
    }
    out.set(name, source);
  }
  return out;
}

/** Converts little-endian float bytes between F32/F16/BF16/F64 and float32/float16. */
export function convertFloat(
  bytes: Uint8Array,
  from: string,
  to: "float32" | "float16",
): Float32Array | Uint16Array {
  if (to === "float16" && from === "F16") return new Uint16Array(aligned(bytes, 2).buffer);
  const f32 = toFloat32(bytes, from);
  if (to === "float32") return f32;
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < f32.length; i++) out[i] = float32ToFloat16Bits(f32[i]!);
  return out;
}

function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes
    : bytes.slice();
}

function toFloat32(bytes: Uint8Array, dtype: string): Float32Array {
  const b = aligned(bytes, 8);
  switch (dtype) {
    case "F32":
      return new Float32Array(b.buffer, 0, b.byteLength / 4);
    case "F64":
      return Float32Array.from(new Float64Array(b.buffer, 0, b.byteLength / 8));
    case "BF16": {
      const src = new Uint16Array(b.buffer, 0, b.byteLength / 2);
      const out = new Float32Array(src.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case "F16": {
      const src = new Uint16Array(b.buffer, 0, b.byteLength / 2);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = float16BitsToNumber(src[i]!);
      return out;
    }
    default:
      throw new RangeError(`Cannot convert ${dtype} to a float type`);
  }
}

/** The value of IEEE half-precision bits (exact). */
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
