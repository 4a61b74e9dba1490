/**
 * Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
 * header, then the tensors' bytes back to back.
 *
 * Validation follows the reference implementation (huggingface/safetensors
 * `safetensors/src/tensor.rs`, `SafeTensors::read_metadata` and `Metadata::validate`): header at
 * most 100 MB, UTF-8 JSON object, known dtypes, byte lengths equal to shape × dtype size, and
 * data offsets that tile the data section exactly: no gaps, no overlaps, nothing after the last
 * tensor. Writing matches its `serialize`: tensors sorted by descending dtype alignment then
 * name, and the header padded with spaces to a multiple of 8 bytes.
 *
 * @module
 */

import { dirname, join } from "node:path";
import {
  bytesToFloat32,
  type Dtype,
  dtypeByteLength,
  DTYPES,
  float32ToBytes,
  isDtype,
  shapeSize,
} from "../tensor/dtype.ts";
import { type ByteSource, fileSource, memorySource } from "./byte_source.ts";

export type { Dtype } from "../tensor/dtype.ts";

/** Largest JSON header accepted, as in the reference implementation. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Where one tensor lies in a safetensors file. */
export interface TensorInfo {
  /** Tensor name (the header key). */
  name: string;
  /** Element type. */
  dtype: Dtype;
  /** Dimensions, outermost first; `[]` for a scalar. */
  shape: number[];
  /** Absolute offset of the tensor's first byte in the file: 8 + header length + start offset. */
  byteOffset: number;
  /** Number of bytes of the tensor. */
  byteLength: number;
}

/**
 * A safetensors file whose header has been read and validated; tensor bytes are read on demand.
 *
 * @example
 * ```ts
 * import { encodeSafetensors, SafetensorsFile } from "./safetensors.ts";
 * const bytes = encodeSafetensors([{ name: "w", dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }]);
 * const file = SafetensorsFile.fromBytes(bytes);
 * console.assert((await file.readFloat32("w"))[1] === 2);
 * ```
 */
export class SafetensorsFile {
  /** The file's path, or undefined for in-memory bytes. */
  readonly path: string | undefined;
  /** The `__metadata__` entries (empty when the header has none). */
  readonly metadata: Record<string, string>;
  /** Every tensor, in the order of their bytes in the file. */
  readonly tensors: Map<string, TensorInfo>;
  #source: ByteSource;

  private constructor(
    path: string | undefined,
    source: ByteSource,
    metadata: Record<string, string>,
    tensors: Map<string, TensorInfo>,
  ) {
    this.path = path;
    this.#source = source;
    this.metadata = metadata;
    this.tensors = tensors;
  }

  /** Opens a file and validates its header, reading nothing else. */
  static async open(path: string): Promise<SafetensorsFile> {
    const source = await fileSource(path);
    try {
      const name = source.name;
      if (source.size < 8) throw headerError(name, `it has only ${source.size} bytes`);
      const head = await source.read(0, 8);
      const n = readHeaderLength(name, head, source.size);
      const header = await source.read(8, n);
      const { metadata, tensors } = parseHeader(name, header, source.size);
      return new SafetensorsFile(path, source, metadata, tensors);
    } catch (error) {
      source.close();
      throw error;
    }
  }

  /** Validates safetensors bytes already in memory. `name` is used in error messages. */
  static fromBytes(bytes: Uint8Array, name = "<memory>"): SafetensorsFile {
    if (bytes.byteLength < 8) throw headerError(name, `it has only ${bytes.byteLength} bytes`);
    const n = readHeaderLength(name, bytes.subarray(0, 8), bytes.byteLength);
    const { metadata, tensors } = parseHeader(name, bytes.subarray(8, 8 + n), bytes.byteLength);
    return new SafetensorsFile(undefined, memorySource(bytes, name), metadata, tensors);
  }

  /** Information about one tensor; throws a RangeError naming the file when it is absent. */
  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) {
      throw new RangeError(
        `Tensor "${name}" is not in "${this.#source.name}" (it has ${this.tensors.size} tensors)`,
      );
    }
    return info;
  }

  /** The raw little-endian bytes of one tensor, reading only that range of the file. */
  read(name: string): Promise<Uint8Array> {
    try {
      const info = this.info(name);
      return this.#source.read(info.byteOffset, info.byteLength);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** One tensor converted to float32 (from any float or integer dtype). */
  async readFloat32(name: string): Promise<Float32Array> {
    const info = this.info(name);
    return bytesToFloat32(await this.read(name), info.dtype);
  }

  /** Releases the file handle. Reads after this fail. */
  close(): void {
    this.#source.close();
  }

  /** Same as {@linkcode SafetensorsFile.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function headerError(name: string, what: string): RangeError {
  return new RangeError(`Invalid safetensors file "${name}": ${what}`);
}

function readHeaderLength(name: string, head: Uint8Array, fileSize: number): number {
  const view = new DataView(head.buffer, head.byteOffset, 8);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    throw headerError(
      name,
      `the header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit (is it safetensors?)`,
    );
  }
  const n = Number(n64);
  if (8 + n > fileSize) {
    throw headerError(
      name,
      `the header length ${n} runs past the end of the ${fileSize}-byte file`,
    );
  }
  if (n < 2) throw headerError(name, `the header length ${n} is too small for a JSON object`);
  return n;
}

function parseHeader(
  name: string,
  header: Uint8Array,
  fileSize: number,
): { metadata: Record<string, string>; tensors: Map<string, TensorInfo> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(header);
  } catch {
    throw new SyntaxError(`Invalid safetensors file "${name}": the header is not valid UTF-8`);
  }
  if (!text.startsWith("{")) {
    throw new SyntaxError(
      `Invalid safetensors file "${name}": the header does not start with "{" (is it safetensors?)`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(
      `Invalid safetensors file "${name}": the header is not valid JSON (${
        (error as Error).message
      })`,
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SyntaxError(`Invalid safetensors file "${name}": the header is not a JSON object`);
  }
  const metadata: Record<string, string> = {};
  const entries: Array<{ info: TensorInfo; start: number; end: number }> = [];
  const dataStart = 8 + header.byteLength;
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    if (key === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw headerError(name, `"__metadata__" must be an object of strings`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw headerError(name, `"__metadata__" entry "${k}" is ${typeName(v)}, not a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(name, key, value, dataStart));
  }
  // Tile check: sorted by offsets, each tensor must start where the previous one ended.
  entries.sort((a, b) => a.start - b.start || a.end - b.end);
  let cursor = 0;
  for (const { info, start, end } of entries) {
    if (start !== cursor) {
      throw headerError(
        name,
        start > cursor
          ? `tensor "${info.name}" starts at data offset ${start}, leaving a gap after ${cursor}`
          : `tensor "${info.name}" at data offset ${start} overlaps the previous tensor (ends ${cursor})`,
      );
    }
    cursor = end;
  }
  const dataLength = fileSize - dataStart;
  if (cursor !== dataLength) {
    throw headerError(
      name,
      cursor > dataLength
        ? `the tensors need ${cursor} data bytes but the file holds ${dataLength} (truncated?)`
        : `the tensors cover ${cursor} of the ${dataLength} data bytes; the rest is unaccounted for`,
    );
  }
  return { metadata, tensors: new Map(entries.map((e) => [e.info.name, e.info])) };
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return `a ${typeof v}`;
}

function parseEntry(
  file: string,
  name: string,
  value: unknown,
  dataStart: number,
): { info: TensorInfo; start: number; end: number } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw headerError(file, `tensor "${name}" is ${typeName(value)}, not an object`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isDtype(dtype)) {
    throw headerError(
      file,
      `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}; known: ${DTYPES.join(", ")}`,
    );
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw headerError(
      file,
      `tensor "${name}" has shape ${JSON.stringify(shape)}; expected a list of integers >= 0`,
    );
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw headerError(
      file,
      `tensor "${name}" has data_offsets ${JSON.stringify(offsets)}; expected [start, end]`,
    );
  }
  const [start, end] = offsets as [number, number];
  if (end < start) {
    throw headerError(
      file,
      `tensor "${name}" has data_offsets [${start}, ${end}] with end < start`,
    );
  }
  let expected: number;
  try {
    expected = dtypeByteLength(dtype, shapeSize(shape as number[]));
  } catch (error) {
    throw headerError(file, `tensor "${name}": ${(error as Error).message}`);
  }
  if (end - start !== expected) {
    throw headerError(
      file,
      `tensor "${name}" (${dtype} [${shape.join(", ")}]) needs ${expected} bytes but ` +
        `data_offsets [${start}, ${end}] hold ${end - start}`,
    );
  }
  return {
    info: {
      name,
      dtype,
      shape: shape as number[],
      byteOffset: dataStart + start,
      byteLength: end - start,
    },
    start,
    end,
  };
}

// ---------------------------------------------------------------------------------------------
// writing

/** One tensor to write: raw little-endian bytes, or float32 values encoded to `dtype`. */
export interface TensorToWrite {
  /** Tensor name. */
  name: string;
  /** Element type stored in the file. */
  dtype: Dtype;
  /** Dimensions, outermost first. */
  shape: number[];
  /** Raw bytes in `dtype`, or float32 values that are rounded to `dtype` (F32/F16/BF16/F64). */
  data: Uint8Array | Float32Array;
}

/** Tensors to write: a list, or an object keyed by tensor name. */
export type TensorsToWrite =
  | TensorToWrite[]
  | Record<string, Omit<TensorToWrite, "name">>;

interface Prepared {
  header: Uint8Array;
  chunks: Array<{ name: string; bytes: Uint8Array }>;
  dataLength: number;
}

const UTF8 = new TextEncoder();

function compareUtf8(a: string, b: string): number {
  const x = UTF8.encode(a);
  const y = UTF8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

function prepare(tensors: TensorsToWrite, metadata: Record<string, string> | undefined): Prepared {
  const list: TensorToWrite[] = Array.isArray(tensors)
    ? tensors
    : Object.entries(tensors).map(([name, t]) => ({ name, ...t }));
  const seen = new Set<string>();
  const items = list.map((t) => {
    if (t.name === "__metadata__") {
      throw new RangeError(`Cannot write a tensor named "__metadata__"; that key is reserved`);
    }
    if (seen.has(t.name)) throw new RangeError(`Cannot write tensor "${t.name}" twice`);
    seen.add(t.name);
    if (!isDtype(t.dtype)) {
      throw new RangeError(`Tensor "${t.name}" has unknown dtype "${t.dtype}"`);
    }
    const count = shapeSize(t.shape);
    const bytes = t.data instanceof Float32Array ? float32ToBytes(t.data, t.dtype) : t.data;
    const expected = dtypeByteLength(t.dtype, count);
    if (bytes.byteLength !== expected) {
      throw new TypeError(
        `Tensor "${t.name}" (${t.dtype} [${
          t.shape.join(", ")
        }]) needs ${expected} bytes, got ${bytes.byteLength}`,
      );
    }
    return { name: t.name, dtype: t.dtype, shape: [...t.shape], bytes };
  });
  // Same order as the reference writer: larger dtypes first (keeps data aligned), then by name.
  const rank = new Map<string, number>(DTYPES.map((d, i) => [d, i]));
  items.sort((a, b) => rank.get(b.dtype)! - rank.get(a.dtype)! || compareUtf8(a.name, b.name));
  // Built by hand rather than from an object: JS objects put integer-like keys first, and the
  // header should list tensors in file order like the reference writer.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const meta: string[] = [];
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new TypeError(`Metadata "${k}" must be a string, got ${typeName(v)}`);
      }
      meta.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${meta.join(",")}}`);
  }
  let offset = 0;
  for (const it of items) {
    const end = offset + it.bytes.byteLength;
    parts.push(
      `${JSON.stringify(it.name)}:{"dtype":"${it.dtype}","shape":[${it.shape.join(",")}],` +
        `"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  let json = `{${parts.join(",")}}`;
  let jsonBytes = UTF8.encode(json);
  const pad = (8 - (jsonBytes.byteLength % 8)) % 8;
  if (pad) {
    json += " ".repeat(pad);
    jsonBytes = UTF8.encode(json);
  }
  const head = new Uint8Array(8 + jsonBytes.byteLength);
  new DataView(head.buffer).setBigUint64(0, BigInt(jsonBytes.byteLength), true);
  head.set(jsonBytes, 8);
  return {
    header: head,
    chunks: items.map((it) => ({ name: it.name, bytes: it.bytes })),
    dataLength: offset,
  };
}

/**
 * Serialises tensors to safetensors bytes in memory, laid out as the reference writer does.
 *
 * @example
 * ```ts
 * import { encodeSafetensors } from "./safetensors.ts";
 * const bytes = encodeSafetensors({ b: { dtype: "F16", shape: [1], data: new Float32Array([0.5]) } });
 * console.assert(bytes.byteLength % 8 === 2);
 * ```
 */
export function encodeSafetensors(
  tensors: TensorsToWrite,
  metadata?: Record<string, string>,
): Uint8Array {
  const p = prepare(tensors, metadata);
  const out = new Uint8Array(p.header.byteLength + p.dataLength);
  out.set(p.header, 0);
  let at = p.header.byteLength;
  for (const c of p.chunks) {
    out.set(c.bytes, at);
    at += c.bytes.byteLength;
  }
  return out;
}

/**
 * Writes tensors to a safetensors file atomically: the bytes go to a temporary file in the same
 * folder, which is renamed over `path` only once complete, so an error never leaves half a file.
 *
 * @example
 * ```ts
 * import { SafetensorsFile, writeSafetensors } from "./safetensors.ts";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await writeSafetensors(path, [{ name: "x", dtype: "I64", shape: [1], data: new Uint8Array(8) }], { format: "pt" });
 * const file = await SafetensorsFile.open(path);
 * console.assert(file.metadata.format === "pt");
 * file.close();
 * await Deno.remove(path);
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Record<string, string>,
): Promise<void> {
  const p = prepare(tensors, metadata);
  const temp = join(
    dirname(path),
    `.${path.split(/[\\/]/).pop()}.${crypto.randomUUID().slice(0, 8)}.partial`,
  );
  const file = await Deno.open(temp, { write: true, createNew: true });
  let ok = false;
  try {
    await writeAll(file, p.header);
    for (const c of p.chunks) await writeAll(file, c.bytes);
    await file.sync();
    file.close();
    await Deno.rename(temp, path);
    ok = true;
  } finally {
    if (!ok) {
      try {
        file.close();
      } catch { /* already closed */ }
      await Deno.remove(temp).catch(() => undefined);
    }
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    done += await file.write(bytes.subarray(done, Math.min(bytes.byteLength, done + (1 << 26))));
  }
}
