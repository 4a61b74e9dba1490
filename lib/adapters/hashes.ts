/**
 * Content hashes of adapter files: the SHA-256 of the whole file (build cache keys, A1111's
 * textual-inversion hash) and kohya's "addnet" hash of a safetensors file, the SHA-256 of the
 * bytes after the header, which A1111 records as a LoRA's hash (modules/hashes.py
 * `addnet_hash_safetensors`, extensions-builtin/Lora/network.py `NetworkOnDisk.read_hash`).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { fileIdentity } from "../onnx/cache.ts";

/** Hashes of one file, lower-case hex. */
export interface FileHashes {
  /** SHA-256 of every byte. */
  sha256: string;
  /** SHA-256 of the bytes after the safetensors header; undefined for other formats. */
  addnet: string | undefined;
}

const memo = new Map<string, Promise<FileHashes>>();

async function compute(path: string): Promise<FileHashes> {
  const whole = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(1 << 20);
    let position = 0;
    let dataStart: number | undefined;
    let body: ReturnType<typeof createHash> | undefined;
    let head = new Uint8Array(0);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      whole.update(chunk);
      if (position < 9) {
        const joined = new Uint8Array(head.length + chunk.length);
        joined.set(head);
        joined.set(chunk, head.length);
        head = joined.slice(0, 9);
        if (head.length >= 9 && head[8] === 0x7b && dataStart === undefined) {
          const view = new DataView(head.buffer, head.byteOffset, 8);
          dataStart = 8 + Number(view.getBigUint64(0, true));
          body = createHash("sha256");
        }
      }
      if (body !== undefined && dataStart !== undefined) {
        const from = Math.max(0, dataStart - position);
        if (from < n) body.update(chunk.subarray(from));
      }
      position += n;
    }
    return { sha256: whole.digest("hex"), addnet: body?.digest("hex") };
  } finally {
    file.close();
  }
}

/**
 * The hashes of a file, computed once per process for each (path, size, mtime).
 *
 * @example
 * ```ts ignore
 * const { sha256, addnet } = await fileHashes("add_detail.safetensors");
 * console.log(addnet?.slice(0, 12)); // A1111's "Lora hashes" value
 * ```
 */
export async function fileHashes(path: string): Promise<FileHashes> {
  const id = await fileIdentity(path);
  const key = JSON.stringify(id);
  let hashes = memo.get(key);
  if (hashes === undefined) {
    hashes = compute(id.path);
    memo.set(key, hashes);
    hashes.catch(() => memo.delete(key));
  }
  return await hashes;
}

/** A1111's short LoRA hash: first 12 hex digits of the addnet hash (safetensors) or SHA-256. */
export function loraShortHash(hashes: FileHashes): string {
  return (hashes.addnet ?? hashes.sha256).slice(0, 12);
}

/** A1111's short textual-inversion hash: first 12 hex digits of the file's SHA-256. */
export function embeddingShortHash(hashes: FileHashes): string {
  return hashes.sha256.slice(0, 12);
}
