/**
 * Element types of stored tensors and conversions between float formats.
 *
 * The dtype names are the ones safetensors writes in its header; PyTorch storages map onto the
 * same names. All byte buffers are little-endian, as safetensors and torch.save write them on the
 * machines we run on (x86-64 and arm64 are little-endian; a big-endian host is not supported).
 *
 * Rounding of fp32 -> fp16 and fp32 -> bf16 is round-to-nearest-even, bit-exact with PyTorch's
 * `.half()` and `.bfloat16()` on CPU (c10/util/Half.h `fp16_ieee_from_fp32_value`,
 * c10/util/BFloat16.h `round_to_nearest_even`).
 *
 * @module
 */

/**
 * Every dtype the safetensors format defines (huggingface/safetensors `safetensors/src/tensor.rs`,
 * enum `Dtype`), in that enum's order, which is increasing alignment.
 */
export const DTYPES = [
  "BOOL",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "U8",
  "I8",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "I16",
  "U16",
  "F16",
  "BF16",
  "I32",
  "U32",
  "F32",
  "C64",
  "F64",
  "I64",
  "U64",
] as const;

/** A tensor element type, named as in safetensors headers. */
export type Dtype = typeof DTYPES[number];

const BITS: Record<Dtype, number> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

const DTYPE_SET: ReadonlySet<string> = new Set(DTYPES);

/**
 * True when `name` is one of the safetensors dtype names.
 *
 * @example
 * ```ts
 * import { isDtype } from "./dtype.ts";
 * console.assert(isDtype("BF16") && !isDtype("float16"));
 * ```
 */
export function isDtype(name: unknown): name is Dtype {
  return typeof name === "string" && DTYPE_SET.has(name);
}

/** Bits per element of `dtype` (4 and 6 for the packed sub-byte float formats). */
export function dtypeBits(dtype: Dtype): number {
  return BITS[dtype];
}

/**
 * Bytes taken by `count` elements of `dtype`. Throws a RangeError when packed sub-byte elements
 * do not fill whole bytes, or when the size is not a safe integer.
 *
 * @example
 * ```ts
 * import { dtypeByteLength } from "./dtype.ts";
 * console.assert(dtypeByteLength("F16", 10) === 20);
 * ```
 */
export function dtypeByteLength(dtype: Dtype, count: number): number {
  const bits = count * BITS[dtype];
  if (!Number.isSafeInteger(bits)) {
    throw new RangeError(`A tensor of ${count} ${dtype} elements is too large to address`);
  }
  if (bits % 8 !== 0) {
    throw new RangeError(`${count} ${dtype} elements do not fill whole bytes (${bits} bits)`);
  }
  return bits / 8;
}

/**
 * Number of elements of a tensor of the given shape (1 for a scalar `[]`). Throws a RangeError on
 * negative, fractional or overflowing dimensions.
 */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new RangeError(
        `Invalid tensor shape [${shape.join(", ")}]: dimensions must be integers >= 0`,
      );
    }
    n *= d;
    if (!Number.isSafeInteger(n)) {
      throw new RangeError(`Tensor shape [${shape.join(", ")}] has too many elements`);
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// fp16

let f16Table: Float32Array | undefined;

/** Exact value of one IEEE binary16 bit pattern. */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // subnormal
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function f16Lookup(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const exp = (h >> 10) & 0x1f;
    if (exp === 0x1f && (h & 0x3ff) !== 0) {
      // NaN: keep sign and payload, set the quiet bit as the hardware converters do.
      bits[h] = ((h & 0x8000) << 16) | 0x7fc00000 | ((h & 0x3ff) << 13);
    } else {
      table[h] = f16Value(h);
    }
  }
  f16Table = table;
  return table;
}

/**
 * Converts IEEE half-precision bit patterns to float32 (exact; every fp16 value is a float32).
 *
 * @example
 * ```ts
 * import { f16ToF32 } from "./dtype.ts";
 * console.assert(f16ToF32(new Uint16Array([0x3c00, 0xc000]))[1] === -2);
 * ```
 */
export function f16ToF32(src: Uint16Array): Float32Array {
  // Copy bit patterns, not numbers: it is faster and keeps NaN payloads intact.
  const table = new Uint32Array(f16Lookup().buffer);
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]!]!;
  return out;
}

/**
 * Converts float32 values to IEEE half-precision bit patterns, rounding to nearest even like
 * torch's `.half()`: overflow gives ±Inf, tiny values become subnormals or ±0, NaN becomes
 * 0x7E00 with the sign kept.
 *
 * @example
 * ```ts
 * import { f32ToF16 } from "./dtype.ts";
 * console.assert(f32ToF16(new Float32Array([1, 65520]))[1] === 0x7c00);
 * ```
 */
export function f32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or zero): value = m * 2^(e - 14) half-ulps of 2^-24.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, up to Inf: that is the correct rounding.
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

// ---------------------------------------------------------------------------------------------
// bf16

/**
 * Converts bfloat16 bit patterns to float32 (exact: bf16 is the top half of a float32).
 *
 * @example
 * ```ts
 * import { bf16ToF32 } from "./dtype.ts";
 * console.assert(bf16ToF32(new Uint16Array([0x3f80]))[0] === 1);
 * ```
 */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

/**
 * Converts float32 values to bfloat16 bit patterns, rounding to nearest even like torch's
 * `.bfloat16()`; every NaN becomes 0x7FC0.
 *
 * @example
 * ```ts
 * import { f32ToBf16 } from "./dtype.ts";
 * console.assert(f32ToBf16(new Float32Array([1]))[0] === 0x3f80);
 * ```
 */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) {
      out[i] = 0x7fc0;
    } else {
      // c10/util/BFloat16.h round_to_nearest_even: add 0x7FFF plus the lowest kept bit.
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// fp8

let e4m3Table: Float32Array | undefined;
let e5m2Table: Float32Array | undefined;

/** F8_E4M3 is torch.float8_e4m3fn: bias 7, no infinities, only S.1111.111 is NaN. */
function e4m3Lookup(): Float32Array {
  if (e4m3Table) return e4m3Table;
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exp = (b >> 3) & 0xf;
    const mant = b & 7;
    if (exp === 0xf && mant === 7) t[b] = NaN;
    else if (exp === 0) t[b] = sign * mant * 2 ** -9;
    else t[b] = sign * (1 + mant / 8) * 2 ** (exp - 7);
  }
  e4m3Table = t;
  return t;
}

/** F8_E5M2 is the top byte of an IEEE binary16. */
function e5m2Lookup(): Float32Array {
  if (e5m2Table) return e5m2Table;
  const table = f16Lookup();
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) t[b] = table[b << 8]!;
  e5m2Table = t;
  return t;
}

// ---------------------------------------------------------------------------------------------
// generic decoding

/** Copies `bytes` into a fresh buffer when its offset is not a multiple of `align`. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

/**
 * Decodes little-endian tensor bytes of any numeric dtype to float32 values (64-bit integers and
 * F64 are rounded to the nearest float32; BOOL gives 0 or 1). Throws a RangeError for the packed
 * F4/F6 formats and complex C64, which have no single float value per element.
 *
 * @example
 * ```ts
 * import { bytesToFloat32 } from "./dtype.ts";
 * const bytes = new Uint8Array(new Uint16Array([0x3c00]).buffer); // fp16 1.0
 * console.assert(bytesToFloat32(bytes, "F16")[0] === 1);
 * ```
 */
export function bytesToFloat32(bytes: Uint8Array, dtype: Dtype): Float32Array {
  const bits = BITS[dtype];
  if (bits % 8 !== 0 || dtype === "C64") {
    throw new RangeError(`Cannot convert ${dtype} tensors to float32; only real-valued types`);
  }
  const size = bits / 8;
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(
      `${bytes.byteLength} bytes are not a whole number of ${dtype} elements (${size} bytes each)`,
    );
  }
  const n = bytes.byteLength / size;
  const b = aligned(bytes, size);
  switch (dtype) {
    case "F32": {
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    }
    case "F16":
      return f16ToF32(new Uint16Array(b.buffer, b.byteOffset, n));
    case "BF16":
      return bf16ToF32(new Uint16Array(b.buffer, b.byteOffset, n));
    case "F64":
      return Float32Array.from(new Float64Array(b.buffer, b.byteOffset, n));
    case "I64": {
      const src = new BigInt64Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case "U64": {
      const src = new BigUint64Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case "I32":
      return Float32Array.from(new Int32Array(b.buffer, b.byteOffset, n));
    case "U32":
      return Float32Array.from(new Uint32Array(b.buffer, b.byteOffset, n));
    case "I16":
      return Float32Array.from(new Int16Array(b.buffer, b.byteOffset, n));
    case "U16":
      return Float32Array.from(new Uint16Array(b.buffer, b.byteOffset, n));
    case "I8":
      return Float32Array.from(new Int8Array(b.buffer, b.byteOffset, n));
    case "U8":
      return Float32Array.from(b);
    case "BOOL": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = b[i] ? 1 : 0;
      return out;
    }
    case "F8_E4M3": {
      const t = e4m3Lookup();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[b[i]!]!;
      return out;
    }
    case "F8_E5M2": {
      const t = e5m2Lookup();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[b[i]!]!;
      return out;
    }
    case "F8_E8M0": {
      // A power-of-two scale: 2^(b - 127), with 0xFF as NaN (OCP MX spec, E8M0).
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = b[i] === 0xff ? NaN : 2 ** (b[i]! - 127);
      return out;
    }
    default:
      throw new RangeError(`Cannot convert ${dtype} tensors to float32`);
  }
}

/**
 * Encodes float32 values as little-endian bytes of a float dtype (F32, F16, BF16 or F64), rounding
 * like torch does for that dtype.
 *
 * @example
 * ```ts
 * import { float32ToBytes } from "./dtype.ts";
 * console.assert(float32ToBytes(new Float32Array([1, 2]), "F16").byteLength === 4);
 * ```
 */
export function float32ToBytes(values: Float32Array, dtype: Dtype): Uint8Array {
  switch (dtype) {
    case "F32":
      return new Uint8Array(values.slice().buffer);
    case "F16":
      return new Uint8Array(f32ToF16(values).buffer);
    case "BF16":
      return new Uint8Array(f32ToBf16(values).buffer);
    case "F64":
      return new Uint8Array(Float64Array.from(values).buffer);
    default:
      throw new RangeError(
        `Cannot encode float32 values as ${dtype}; give F32, F16, BF16 or F64, or pass raw bytes`,
      );
  }
}
