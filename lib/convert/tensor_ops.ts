/**
 * The tensor edits a key mapping implies ({@linkcode TensorOp}), on raw little-endian bytes so
 * that copies stay bit-exact, and dtype casts for the `--dtype` option.
 *
 * @module
 */
import {
  bytesToFloat32,
  type Dtype,
  dtypeByteLength,
  float32ToBytes,
  shapeSize,
} from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { TensorOp } from "../model_io/key_map.ts";

/** Output precision of a conversion; "keep" leaves each tensor's dtype as stored. */
export type OutputDtype = "fp32" | "fp16" | "bf16" | "keep";

const FLOATS = new Set<Dtype>(["F16", "BF16", "F32", "F64"]);

const TARGET: Record<Exclude<OutputDtype, "keep">, Dtype> = {
  fp32: "F32",
  fp16: "F16",
  bf16: "BF16",
};

/** Casts a floating-point tensor to the output dtype (integer tensors are left alone). */
export function castTensor(t: Tensor, dtype: OutputDtype): Tensor {
  if (dtype === "keep" || !FLOATS.has(t.dtype)) return t;
  const target = TARGET[dtype];
  if (t.dtype === target) return t;
  return {
    dtype: target,
    shape: t.shape,
    data: float32ToBytes(bytesToFloat32(t.data, t.dtype), target),
  };
}

/** `position_ids` as transformers stores it: int64 `[1, n]` holding 0..n-1. */
export function positionIds(n: number): Tensor {
  const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
  return { dtype: "I64", shape: [1, n], data: new Uint8Array(ids.buffer) };
}

/** A `position_ids` tensor stored in any dtype (fp16 in `--half` checkpoints), as int64. */
export function toInt64(t: Tensor): Tensor {
  if (t.dtype === "I64") return t;
  const values = bytesToFloat32(t.data, t.dtype);
  const out = BigInt64Array.from(values, (v) => BigInt(Math.round(v)));
  return { dtype: "I64", shape: t.shape, data: new Uint8Array(out.buffer) };
}

function transpose2d(t: Tensor): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const size = dtypeByteLength(t.dtype, 1);
  const out = new Uint8Array(t.data.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = (r * cols + c) * size;
      out.set(t.data.subarray(from, from + size), (c * rows + r) * size);
    }
  }
  return { dtype: t.dtype, shape: [cols, rows], data: out }; // [a, b] -> [b, a]
}

/** Applies `op` to an LDM tensor, giving the Diffusers tensor. */
export function ldmToDiffusers(t: Tensor, op: TensorOp, name: string): Tensor {
  switch (op.kind) {
    case "copy":
    case "positionIds":
      return t;
    case "conv1x1": {
      if (t.shape.length === 2) return t;
      if (t.shape.length !== 4 || t.shape[2] !== 1 || t.shape[3] !== 1) {
        throw new TypeError(
          `Cannot convert "${name}": expected a 1x1 convolution, got shape [${t.shape.join(", ")}]`,
        );
      }
      return { dtype: t.dtype, shape: [t.shape[0]!, t.shape[1]!], data: t.data }; // [o, i, 1, 1] -> [o, i]
    }
    case "qkv": {
      const rows = t.shape[0]!;
      if (rows % 3 !== 0) {
        throw new TypeError(
          `Cannot split "${name}" into q/k/v: ${rows} rows is not a multiple of 3`,
        );
      }
      const part = t.data.byteLength / 3;
      const data = t.data.slice(op.part * part, (op.part + 1) * part);
      return { dtype: t.dtype, shape: [rows / 3, ...t.shape.slice(1)], data }; // [3d, ...] -> [d, ...]
    }
    case "transpose":
      if (t.shape.length !== 2) {
        throw new TypeError(`Cannot transpose "${name}": shape [${t.shape.join(", ")}] is not 2-D`);
      }
      return transpose2d(t);
  }
}

/** The inverse of {@linkcode ldmToDiffusers} for one-to-one ops. */
export function diffusersToLdm(t: Tensor, op: TensorOp): Tensor {
  switch (op.kind) {
    case "conv1x1":
      return t.shape.length === 2
        ? { dtype: t.dtype, shape: [...t.shape, 1, 1], data: t.data } // [o, i] -> [o, i, 1, 1]
        : t;
    case "transpose":
      return transpose2d(t);
    default:
      return t;
  }
}

/** Concatenates q, k and v along the first axis into OpenCLIP's fused `in_proj`. */
export function fuseQkv(parts: readonly Tensor[], name: string): Tensor {
  const [q, k, v] = parts as [Tensor, Tensor, Tensor];
  for (const p of [k, v]) {
    if (p.dtype !== q.dtype || p.shape.join() !== q.shape.join()) {
      throw new TypeError(
        `Cannot fuse q/k/v into "${name}": the three parts differ in shape or dtype`,
      );
    }
  }
  const data = new Uint8Array(q.data.byteLength * 3);
  data.set(q.data, 0);
  data.set(k.data, q.data.byteLength);
  data.set(v.data, 2 * q.data.byteLength);
  return { dtype: q.dtype, shape: [q.shape[0]! * 3, ...q.shape.slice(1)], data }; // 3 x [d, ...] -> [3d, ...]
}

/** Number of elements, for shape checks in messages. */
export function elementCount(t: Tensor): number {
  return shapeSize(t.shape);
}
