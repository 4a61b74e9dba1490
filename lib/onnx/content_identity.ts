/**
 * Content identities of weight files for cache keys: the SHA-256 of the bytes, computed once per
 * file version and remembered in a small index (`file-hashes.json` in a folder the caller
 * gives), so a start reads no weights when nothing changed.
 *
 * A file version is its real path, size, modification time, status-change time (ctime), inode
 * and device. `cp -p` over a file keeps its size and mtime but not its ctime, and a file renamed
 * into place has a new inode, so both are hashed again; `touch` costs one hash but leaves the key
 * alone, since the key holds the content only.
 *
 * A file changed within one timestamp step of being hashed could change again without its
 * stamp moving (Linux stamps files with a clock that advances in ticks of 1-10 ms; Deno 2 reports
 * ctime in whole seconds), so such a "racy" hash is used once but not trusted later, as git does
 * with its index: a file written less than 2 s before a run is hashed again on the next one.
 *
 * The cache hard-links weight files into its entries, which changes their ctime;
 * {@linkcode noteHardLinks} records that change for files this process hashed, so the next start
 * does not hash them again.
 *
 * @module
 */
import { createHash } from "node:crypto";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { IoError } from "../errors.ts";

/** What a cache key needs from a file: it changes exactly when the bytes change. */
export interface ContentIdentity {
  /** SHA-256 of the whole file, 64 lowercase hex digits. */
  sha256: string;
  /** Size in bytes. */
  size: number;
}

/** Options of {@linkcode contentIdentity}. */
export interface ContentIdentityOptions {
  /**
   * Folder of the index that remembers hashes between runs (created when needed). Without it
   * hashes are remembered for this process only.
   */
  indexDir?: string | undefined;
  /** Called before a file is read to be hashed (it was not in the index). */
  onHash?: (path: string, size: number) => void;
}

/** Name of the index file inside `indexDir`. */
export const HASH_INDEX_FILE = "file-hashes.json";
const INDEX_VERSION = 1;
/** Most files remembered; the least recently used are forgotten first. */
const MAX_RECORDS = 512;
const CHUNK_BYTES = 8 << 20;

/** A file version, as strings so nanosecond times and 64-bit inodes compare exactly. */
interface Stamp {
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  dev: string;
}

interface IndexRecord extends Stamp {
  sha256: string;
  /** False when the file had changed too shortly before it was read (see the module notes). */
  trusted: boolean;
  /** Last use, ms since the epoch (for eviction). */
  usedAt: number;
}

interface Known {
  stamp: Stamp;
  sha256: string;
  trusted: boolean;
  indexDir: string | undefined;
}

/** Files hashed or looked up by this process, by real path. */
const seen = new Map<string, Known>();

/**
 * Whether a hash read from a file that started at `readStartMs` can be trusted for this stamp:
 * both times must be older than their resolution (50 ms, a few clock ticks; 2 s for a time in
 * whole seconds, as Deno 2 reports every ctime and as some file systems store them).
 */
function isTrusted(stamp: Stamp, readStartMs: number): boolean {
  return [stamp.mtimeNs, stamp.ctimeNs].every((ns) => {
    const t = BigInt(ns);
    const step = t % 1_000_000_000n === 0n ? 2000 : 50;
    return readStartMs - Number(t / 1_000_000n) > step;
  });
}

async function stampOf(path: string): Promise<Stamp> {
  const s = await fsp.stat(path, { bigint: true });
  return {
    size: String(s.size),
    mtimeNs: String(s.mtimeNs),
    ctimeNs: String(s.ctimeNs),
    ino: String(s.ino),
    dev: String(s.dev),
  };
}

function sameStamp(a: Stamp, b: Stamp): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs &&
    a.ino === b.ino && a.dev === b.dev;
}

/**
 * The content identity of a file: its SHA-256 from the index when the file version is known,
 * else read and hashed once (streamed, about 1 GB/s) and remembered.
 *
 * @example
 * ```ts
 * import { contentIdentity } from "./content_identity.ts";
 * const dir = Deno.makeTempDirSync();
 * Deno.writeTextFileSync(`${dir}/w.bin`, "abc");
 * const id = await contentIdentity(`${dir}/w.bin`, { indexDir: dir });
 * console.assert(id.sha256.startsWith("ba7816bf") && id.size === 3);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function contentIdentity(
  path: string,
  options: ContentIdentityOptions = {},
): Promise<ContentIdentity> {
  const real = await fsp.realpath(path);
  const stamp = await stampOf(real);
  const size = Number(stamp.size);
  const known = seen.get(real);
  if (known !== undefined && known.trusted && sameStamp(known.stamp, stamp)) {
    if (options.indexDir !== undefined && known.indexDir !== options.indexDir) {
      await remember(options.indexDir, real, { ...known, indexDir: options.indexDir });
    }
    return { sha256: known.sha256, size };
  }
  if (options.indexDir !== undefined) {
    const record = (await readIndex(options.indexDir))[real];
    if (record !== undefined && record.trusted && sameStamp(record, stamp)) {
      seen.set(real, { stamp, sha256: record.sha256, trusted: true, indexDir: options.indexDir });
      return { sha256: record.sha256, size };
    }
  }
  options.onHash?.(real, size);
  let current = stamp;
  for (let attempt = 0;; attempt++) {
    const readStartMs = Date.now();
    const sha256 = await hashFile(real);
    const after = await stampOf(real);
    if (sameStamp(after, current)) {
      const trusted = isTrusted(after, readStartMs);
      await remember(options.indexDir, real, {
        stamp: after,
        sha256,
        trusted,
        indexDir: options.indexDir,
      });
      return { sha256, size: Number(after.size) };
    }
    if (attempt === 2) {
      throw new IoError(`Cannot hash "${real}": it kept changing while being read`, {
        hint: "wait until the file is completely written, then run again",
      });
    }
    current = after;
  }
}

/**
 * Streams a file through SHA-256: reads of 8 MiB, the next read running while the current chunk
 * is hashed.
 *
 * @example
 * ```ts
 * import { hashFile } from "./content_identity.ts";
 * const file = Deno.makeTempFileSync();
 * Deno.writeTextFileSync(file, "abc");
 * console.assert((await hashFile(file)).startsWith("ba7816bf"));
 * Deno.removeSync(file);
 * ```
 */
export async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  let current = new Uint8Array(CHUNK_BYTES);
  let next = new Uint8Array(CHUNK_BYTES);
  let pending = fill(file, current);
  for (;;) {
    const n = await pending;
    if (n === 0) break;
    pending = fill(file, next);
    hash.update(current.subarray(0, n));
    [current, next] = [next, current];
  }
  return hash.digest("hex");
}

/** Reads until `buffer` is full or the file ends; returns the bytes read. */
async function fill(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

/**
 * Tells the index that the cache has just hard-linked these files (which changed their ctime):
 * files this process hashed whose size, mtime, inode and device are unchanged keep their hash
 * under the new ctime. Files not hashed by this process are left alone.
 *
 * @example
 * ```ts
 * import { contentIdentity, noteHardLinks } from "./content_identity.ts";
 * const dir = Deno.makeTempDirSync();
 * Deno.writeTextFileSync(`${dir}/w.bin`, "abc");
 * const before = await contentIdentity(`${dir}/w.bin`, { indexDir: dir });
 * Deno.linkSync(`${dir}/w.bin`, `${dir}/link.bin`); // what the cache does
 * await noteHardLinks([`${dir}/link.bin`]);
 * const after = await contentIdentity(`${dir}/w.bin`, { indexDir: dir });
 * console.assert(after.sha256 === before.sha256);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function noteHardLinks(links: readonly string[]): Promise<void> {
  for (const link of links) {
    let linked: Stamp;
    try {
      linked = await stampOf(link);
    } catch {
      continue;
    }
    for (const [real, known] of seen) {
      const s = known.stamp;
      if (s.ino !== linked.ino || s.dev !== linked.dev) continue;
      if (s.size !== linked.size || s.mtimeNs !== linked.mtimeNs) continue;
      if (s.ctimeNs === linked.ctimeNs) continue;
      await remember(known.indexDir, real, { ...known, stamp: linked });
    }
  }
}

async function readIndex(indexDir: string): Promise<Record<string, IndexRecord>> {
  let text: string;
  try {
    text = await fsp.readFile(join(indexDir, HASH_INDEX_FILE), "utf8");
  } catch {
    return {};
  }
  const out: Record<string, IndexRecord> = Object.create(null);
  try {
    const parsed = JSON.parse(text) as { version?: unknown; files?: unknown };
    if (parsed?.version !== INDEX_VERSION || typeof parsed.files !== "object") return out;
    for (const [path, value] of Object.entries(parsed.files ?? {})) {
      if (isRecord(value)) out[path] = value;
    }
  } catch {
    // A damaged index only costs hashing again; it is rewritten below.
  }
  return out;
}

function isRecord(value: unknown): value is IndexRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return ["size", "mtimeNs", "ctimeNs", "ino", "dev"].every((k) => typeof r[k] === "string") &&
    typeof r["sha256"] === "string" && /^[0-9a-f]{64}$/.test(r["sha256"]) &&
    typeof r["trusted"] === "boolean" && typeof r["usedAt"] === "number";
}

/**
 * Remembers a file in this process and, with an index folder, in the index (rewritten through a
 * temporary file and a rename). Processes that write at the same time may drop each other's new
 * records, which only costs a hash later; a folder that cannot be written leaves the hash
 * remembered for this process only.
 */
async function remember(indexDir: string | undefined, real: string, known: Known) {
  seen.set(real, known);
  if (indexDir === undefined) return;
  const files = await readIndex(indexDir);
  files[real] = {
    ...known.stamp,
    sha256: known.sha256,
    trusted: known.trusted,
    usedAt: Date.now(),
  };
  const kept = Object.entries(files).sort((a, b) => b[1].usedAt - a[1].usedAt)
    .slice(0, MAX_RECORDS);
  const text = JSON.stringify({ version: INDEX_VERSION, files: Object.fromEntries(kept) });
  const tmp = join(indexDir, `${HASH_INDEX_FILE}.tmp-${crypto.randomUUID()}`);
  try {
    await fsp.mkdir(indexDir, { recursive: true });
    await fsp.writeFile(tmp, text);
    await fsp.rename(tmp, join(indexDir, HASH_INDEX_FILE));
  } catch {
    await fsp.rm(tmp, { force: true }).catch(() => {});
  }
}
