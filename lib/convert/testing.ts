/**
 * Test helpers for lib/convert: tensor-by-tensor comparison of two safetensors files, and a
 * copy of a safetensors file without its metadata (to exercise detection from shapes alone).
 *
 * @module
 */
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../weights/safetensors.ts";
import { bytesToFloat32 } from "../tensor/dtype.ts";

/** Differences between two weight files. */
export interface FileDiff {
  onlyA: string[];
  onlyB: string[];
  /** Tensors whose dtype, shape or bytes differ. */
  different: string[];
  /** Largest absolute difference after conversion to float32, over all common tensors. */
  maxAbs: number;
}

/** Compares two safetensors files tensor by tensor (bytes, dtype, shape and float values). */
export async function diffSafetensors(a: string, b: string): Promise<FileDiff> {
  const x = await SafetensorsFile.open(a);
  const y = await SafetensorsFile.open(b);
  try {
    const diff: FileDiff = { onlyA: [], onlyB: [], different: [], maxAbs: 0 };
    for (const k of x.tensors.keys()) if (!y.tensors.has(k)) diff.onlyA.push(k);
    for (const k of y.tensors.keys()) if (!x.tensors.has(k)) diff.onlyB.push(k);
    for (const k of x.tensors.keys()) {
      if (!y.tensors.has(k)) continue;
      const ix = x.info(k);
      const iy = y.info(k);
      const p = await x.read(k);
      const q = await y.read(k);
      const same = ix.dtype === iy.dtype && ix.shape.join() === iy.shape.join() &&
        p.length === q.length && p.every((v, i) => v === q[i]);
      if (!same) diff.different.push(k);
      if (ix.shape.join() === iy.shape.join() && ix.dtype !== "I64" && iy.dtype !== "I64") {
        const fp = bytesToFloat32(p, ix.dtype);
        const fq = bytesToFloat32(q, iy.dtype);
        for (let i = 0; i < fp.length; i++) {
          const d = Math.abs(fp[i]! - fq[i]!);
          if (!(d <= diff.maxAbs)) diff.maxAbs = Number.isNaN(d) ? Infinity : d;
        }
      }
    }
    return diff;
  } finally {
    x.close();
    y.close();
  }
}

/** Rewrites a safetensors file without its `__metadata__`. */
export async function stripMetadata(input: string, output: string): Promise<void> {
  const f = await SafetensorsFile.open(input);
  try {
    const tensors: TensorToWrite[] = [];
    for (const [name, info] of f.tensors) {
      tensors.push({ name, dtype: info.dtype, shape: [...info.shape], data: await f.read(name) });
    }
    await writeSafetensors(output, tensors);
  } finally {
    f.close();
  }
}
