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

const ENC = new TextEncoder();

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function binInt(v: number): Uint8Array {
  const b = new Uint8Array(5);
  b[0] = 0x4a; // BININT
  new DataView(b.buffer).setInt32(1, v, true);
  return b;
}

function binUnicode(s: string): Uint8Array {
  const text = ENC.encode(s);
  const head = new Uint8Array(5);
  head[0] = 0x58; // BINUNICODE
  new DataView(head.buffer).setUint32(1, text.length, true);
  return concat([head, text]);
}

const STORAGE: Record<string, string> = {
  F32: "FloatStorage",
  F16: "HalfStorage",
  I64: "LongStorage",
};

/** Options of {@linkcode writeTorchCheckpoint}. */
export interface TorchCheckpointOptions {
  /**
   * Save the state dict itself as the top-level object (`torch.save(model.state_dict())`, as
   * annotator files are), as a `collections.OrderedDict`; `globalStep` is then ignored.
   */
  bare?: boolean;
}

/**
 * Writes tensors as a torch.save (zip, pickle protocol 2) checkpoint the way PyTorch lays it out:
 * `{"global_step": step, "state_dict": {name: tensor}}` (or, with `bare`, the state dict alone)
 * with one storage per tensor under `archive/data/<n>`. Only for tests: it lets the .ckpt path
 * run without PyTorch.
 */
export async function writeTorchCheckpoint(
  path: string,
  tensors: Array<{ name: string; dtype: string; shape: number[]; data: Uint8Array }>,
  globalStep?: number,
  options: TorchCheckpointOptions = {},
): Promise<void> {
  const { zipSync } = await import("fflate");
  const files: Record<string, Uint8Array> = {};
  const op = (s: string) => ENC.encode(s);
  const parts: Uint8Array[] = [Uint8Array.of(0x80, 2)]; // PROTO 2
  if (options.bare) {
    parts.push(op("ccollections\nOrderedDict\n)R(")); // OrderedDict(), MARK
  } else {
    parts.push(op("}(")); // EMPTY_DICT, MARK
    if (globalStep !== undefined) parts.push(binUnicode("global_step"), binInt(globalStep));
    parts.push(binUnicode("state_dict"), op("}("));
  }
  tensors.forEach((t, k) => {
    const storage = STORAGE[t.dtype];
    if (storage === undefined) throw new TypeError(`No torch storage for ${t.dtype}`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    files[`archive/data/${k}`] = t.data;
    parts.push(
      binUnicode(t.name),
      op("ctorch._utils\n_rebuild_tensor_v2\n("),
      op("("),
      binUnicode("storage"),
      op(`ctorch\n${storage}\n`),
      binUnicode(String(k)),
      binUnicode("cpu"),
      binInt(numel),
      op("tQ"), // TUPLE, BINPERSID
      binInt(0),
      op("("),
      ...t.shape.map(binInt),
      op("t("),
      ...strides.map(binInt),
      op("t"),
      Uint8Array.of(0x89), // NEWFALSE (requires_grad)
      op("ccollections\nOrderedDict\n)R"), // backward hooks
      op("tR"),
    );
  });
  // SETITEMS (state_dict)[, SETITEMS (root)], STOP
  parts.push(op(options.bare ? "u." : "uu."));
  files["archive/data.pkl"] = concat(parts);
  files["archive/version"] = op("3\n");
  files["archive/byteorder"] = op("little");
  await Deno.writeFile(path, zipSync(files, { level: 0 }));
}

/** All tensors of a safetensors file, for {@linkcode writeTorchCheckpoint}. */
export async function readAllTensors(
  path: string,
): Promise<Array<{ name: string; dtype: string; shape: number[]; data: Uint8Array }>> {
  const f = await SafetensorsFile.open(path);
  try {
    const out = [];
    for (const [name, info] of f.tensors) {
      out.push({ name, dtype: info.dtype, shape: [...info.shape], data: await f.read(name) });
    }
    return out;
  } finally {
    f.close();
  }
}
