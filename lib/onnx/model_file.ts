/**
 * Writing built models: as one protobuf in memory (`serializeModel`), or as a `.onnx` file whose
 * weights are ONNX external data (`writeModel`).
 *
 * External data rules, from a probe of onnxruntime-node 1.30: ORT refuses an external-data
 * `location` whose resolved path (symlinks followed) leaves the .onnx file's folder, but accepts
 * hard links and unaligned offsets. So a tensor that lies verbatim in an existing file (an F32
 * weight inside a .safetensors) is referenced in place when that file is in the model's folder,
 * else through a hard link made beside the model; only when linking fails (another filesystem)
 * are its bytes copied. Tensors made in JS (casts, merged LoRA deltas) go to `<model>.data`.
 *
 * @module
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { byteLengthOf, type OnnxModel, type TensorData, type TensorSource } from "./graph.ts";
import { DataType, encodeModelProto, PROTOBUF_LIMIT, type TensorMessage } from "./proto.ts";

/** Options of {@linkcode writeModel}. */
export interface WriteModelOptions {
  /** Tensors made in JS smaller than this stay inline in the protobuf (default 1024 bytes). */
  inlineLimit?: number;
  /**
   * What to do with tensors that live in files outside the model's folder: `"link"` (default)
   * makes hard links beside the model and copies only when linking fails; `"copy"` always copies
   * their bytes into the data file.
   */
  fileSources?: "link" | "copy";
}

/** What {@linkcode writeModel} wrote. */
export interface WrittenModel {
  /** Absolute path of the .onnx file. */
  path: string;
  /** Files beside it that it references (data file, hard links), as absolute paths. */
  dataFiles: string[];
  /** Bytes referenced in place in existing files (not copied). */
  bytesReferenced: number;
  /** Bytes written to the separate data file or inline. */
  bytesWritten: number;
  /** Source files that had to be copied because hard links failed. */
  copiedFiles: string[];
}

/** Reads the bytes a {@linkcode TensorSource} stands for. */
export async function readSource(name: string, source: TensorSource): Promise<Uint8Array> {
  const want = byteLengthOf(source.dtype, source.shape);
  let bytes: Uint8Array;
  if ("data" in source) {
    bytes = viewBytes(source.data);
  } else if ("file" in source) {
    bytes = new Uint8Array(source.length);
    const fh = await fsp.open(source.file, "r");
    try {
      let done = 0;
      while (done < source.length) {
        const { bytesRead } = await fh.read(
          bytes,
          done,
          source.length - done,
          source.offset + done,
        );
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      if (done !== source.length) {
        throw new RangeError(
          `Cannot read weight "${name}": "${source.file}" ends before byte ` +
            `${source.offset + source.length}; the file is truncated`,
        );
      }
    } finally {
      await fh.close();
    }
  } else {
    bytes = viewBytes(await source.load());
  }
  if (bytes.byteLength !== want) {
    throw new TypeError(
      `Cannot write weight "${name}": got ${bytes.byteLength} bytes, ` +
        `${source.dtype} [${source.shape}] needs ${want}`,
    );
  }
  return bytes;
}

function viewBytes(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function tensorHead(name: string, source: TensorSource): TensorMessage {
  return { name, dims: [...source.shape], dataType: DataType[source.dtype] };
}

/**
 * Serialises a model with every weight inline, for `createSession(bytes)` or small files.
 * Throws a RangeError past protobuf's 2 GiB limit (use {@linkcode writeModel} then).
 */
export async function serializeModel(model: OnnxModel): Promise<Uint8Array> {
  let total = 0;
  for (const { source } of model.initializers) {
    total += byteLengthOf(source.dtype, source.shape);
  }
  if (total > PROTOBUF_LIMIT) {
    throw new RangeError(
      `Cannot serialise model "${model.proto.graph.name}" inline: its weights take ${total} ` +
        `bytes, over protobuf's 2 GiB limit; use writeModel() to store them as external data`,
    );
  }
  const initializer = [...model.proto.graph.initializer];
  for (const { name, source } of model.initializers) {
    initializer.push({ ...tensorHead(name, source), rawData: await readSource(name, source) });
  }
  return encodeModelProto({
    ...model.proto,
    graph: { ...model.proto.graph, initializer },
  });
}

/**
 * Writes `model` to `path` (a `.onnx` file) with its weights as external data: file regions are
 * referenced in place (through hard links when needed), other big tensors go to `<path>.data`.
 * Works for models over 2 GiB. The .onnx file is written to a temporary name and renamed.
 *
 * @example
 * ```ts ignore
 * const written = await writeModel(graph.build(), "/cache/abc/model.onnx");
 * const session = await createSession(written.path);
 * ```
 */
export async function writeModel(
  model: OnnxModel,
  path: string,
  options: WriteModelOptions = {},
): Promise<WrittenModel> {
  const inlineLimit = options.inlineLimit ?? 1024;
  const absPath = resolve(path);
  const dir = dirname(absPath);
  await fsp.mkdir(dir, { recursive: true });
  const realDir = await fsp.realpath(dir);
  const dataName = `${basename(absPath)}.data`;
  const dataPath = join(dir, dataName);
  const tmpData = `${dataPath}.tmp-${crypto.randomUUID()}`;
  const result: WrittenModel = {
    path: absPath,
    dataFiles: [],
    bytesReferenced: 0,
    bytesWritten: 0,
    copiedFiles: [],
  };
  // location (relative to dir) for each source file, or null when it must be copied.
  const locations = new Map<string, string | null>();
  let dataHandle: fsp.FileHandle | undefined;
  let dataOffset = 0;
  const initializer = [...model.proto.graph.initializer];
  try {
    for (const { name, source } of model.initializers) {
      const head = tensorHead(name, source);
      if ("file" in source && options.fileSources !== "copy") {
        const location = await locate(source.file, dir, realDir, locations, result);
        if (location !== null) {
          initializer.push(external(head, location, source.offset, source.length));
          result.bytesReferenced += source.length;
          continue;
        }
      }
      const bytes = await readSource(name, source);
      result.bytesWritten += bytes.byteLength;
      if (bytes.byteLength < inlineLimit) {
        initializer.push({ ...head, rawData: bytes });
        continue;
      }
      dataHandle ??= await fsp.open(tmpData, "w");
      // 64-byte alignment lets ORT map tensors without a copy on any SIMD width.
      const pad = (64 - (dataOffset % 64)) % 64;
      if (pad > 0) await dataHandle.write(new Uint8Array(pad), 0, pad, dataOffset);
      dataOffset += pad;
      await writeAll(dataHandle, bytes, dataOffset);
      initializer.push(external(head, dataName, dataOffset, bytes.byteLength));
      dataOffset += bytes.byteLength;
    }
    if (dataHandle !== undefined) {
      await dataHandle.close();
      dataHandle = undefined;
      await fsp.rename(tmpData, dataPath);
      result.dataFiles.push(dataPath);
    }
    const bytes = encodeModelProto({
      ...model.proto,
      graph: { ...model.proto.graph, initializer },
    });
    const tmpModel = `${absPath}.tmp-${crypto.randomUUID()}`;
    await fsp.writeFile(tmpModel, bytes);
    await fsp.rename(tmpModel, absPath);
  } finally {
    if (dataHandle !== undefined) {
      await dataHandle.close();
      await fsp.rm(tmpData, { force: true });
    }
  }
  return result;
}

async function writeAll(fh: fsp.FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
  }
}

function external(head: TensorMessage, location: string, offset: number, length: number) {
  return {
    ...head,
    dataLocation: 1,
    externalData: [
      { key: "location", value: location },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(length) },
    ],
  };
}

/**
 * Finds a path for `file` relative to the model folder that ORT will accept: the file itself
 * when it already sits in that folder (after resolving symlinks), else a hard link named after a
 * hash of its identity. Returns null when no link can be made (the bytes must be copied).
 */
async function locate(
  file: string,
  dir: string,
  realDir: string,
  cache: Map<string, string | null>,
  result: WrittenModel,
): Promise<string | null> {
  const cached = cache.get(file);
  if (cached !== undefined) return cached;
  const real = await fsp.realpath(file);
  let location: string | null;
  if (dirname(real) === realDir) {
    location = basename(real);
  } else {
    const stat = await fsp.stat(real);
    const id = createHash("sha256").update(`${real}\0${stat.size}\0${stat.mtimeMs}\0${stat.ino}`)
      .digest("hex").slice(0, 16);
    location = `${id}-${basename(real)}`;
    const link = join(dir, location);
    if (!(await sameFile(link, stat))) {
      try {
        await fsp.rm(link, { force: true });
        await fsp.link(real, link);
      } catch {
        location = null;
        result.copiedFiles.push(real);
      }
    }
    if (location !== null && !result.dataFiles.includes(link)) result.dataFiles.push(link);
  }
  cache.set(file, location);
  return location;
}

async function sameFile(path: string, stat: fs.Stats): Promise<boolean> {
  try {
    const s = await fsp.stat(path);
    return s.ino === stat.ino && s.dev === stat.dev;
  } catch {
    return false;
  }
}
