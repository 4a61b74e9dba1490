/**
 * The plain tensor record that weight loaders return, and strided-to-contiguous copying.
 *
 * @module
 */

import { type Dtype, dtypeByteLength, shapeSize } from "./dtype.ts";

/** A dense tensor: C-order (row-major), little-endian bytes of `dtype`. */
export interface Tensor {
  /** Element type. */
  dtype: Dtype;
  /** Dimensions, outermost first; `[]` for a scalar. */
  shape: number[];
  /** `shape` product × element size bytes, contiguous and little-endian. */
  data: Uint8Array;
}

/** Strides (in elements) of a contiguous C-order tensor of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/**
 * Index (in elements) one past the furthest element a strided view touches, or `offset` for an
 * empty view. Throws a RangeError on negative strides or offsets.
 */
export function stridedExtent(
  shape: readonly number[],
  stride: readonly number[],
  offset: number,
): number {
  if (shape.length !== stride.length) {
    throw new RangeError(
      `Stride [${stride.join(", ")}] does not match shape [${shape.join(", ")}]`,
    );
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`Invalid storage offset ${offset}`);
  }
  if (shapeSize(shape) === 0) return offset;
  let last = offset;
  for (let i = 0; i < shape.length; i++) {
    const st = stride[i]!;
    if (!Number.isSafeInteger(st) || st < 0) {
      throw new RangeError(`Invalid stride [${stride.join(", ")}]: strides must be integers >= 0`);
    }
    last += (shape[i]! - 1) * st;
  }
  if (!Number.isSafeInteger(last + 1)) throw new RangeError("Strided view is too large");
  return last + 1;
}

/**
 * Gathers a strided view into contiguous bytes. `src` holds elements from index `base` on (so a
 * caller can pass just the part of a storage the view touches); `offset` and `stride` are in
 * elements of the storage.
 *
 * @example
 * ```ts
 * import { gatherStrided } from "./tensor.ts";
 * // The transpose of a 2x2 U8 matrix [[1, 2], [3, 4]].
 * const out = gatherStrided(new Uint8Array([1, 2, 3, 4]), "U8", [2, 2], [1, 2], 0);
 * console.assert(out.join() === "1,3,2,4");
 * ```
 */
export function gatherStrided(
  src: Uint8Array,
  dtype: Dtype,
  shape: readonly number[],
  stride: readonly number[],
  offset: number,
  base = 0,
): Uint8Array {
  const es = dtypeByteLength(dtype, 1);
  const numel = shapeSize(shape);
  const end = stridedExtent(shape, stride, offset);
  if (offset < base || (end - base) * es > src.byteLength) {
    throw new RangeError(
      `A ${dtype} view [${shape.join(", ")}] at offset ${offset} reaches element ${end}, ` +
        `past the ${src.byteLength / es + base} elements of its storage`,
    );
  }
  const out = new Uint8Array(numel * es);
  if (numel === 0) return out;
  const contiguous = contiguousStrides(shape);
  let isContiguous = true;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] !== 1 && stride[i] !== contiguous[i]) isContiguous = false;
  }
  if (isContiguous) {
    out.set(src.subarray((offset - base) * es, (offset - base + numel) * es));
    return out;
  }
  // Walk the index like an odometer; copy one element (es bytes) at a time.
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  let at = offset - base;
  for (let k = 0; k < numel; k++) {
    const from = at * es;
    for (let b = 0; b < es; b++) out[k * es + b] = src[from + b]!;
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]!++;
      at += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      at -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}
