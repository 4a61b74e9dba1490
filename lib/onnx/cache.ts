/**
 * On-disk cache of built models (and ORT's optimised versions of them), keyed by a content
 * hash of what went into the build: weight contents ({@linkcode contentIdentity}), adapters,
 * dtype, execution provider, builder version. The cache folder is passed in by the caller (lib
 * reads no environment).
 *
 * Layout: `<cacheDir>/<key>/model.onnx` with its external data beside it (hard links to the
 * source .safetensors, `model.onnx.data` for converted tensors), and
 * `optimized-<ep>-<level>.onnx` (+ data) once a session saved one. Entries are built in a
 * temporary folder and renamed into place, so a crash never leaves half an entry.
 *
 * One process at a time builds an entry (or its optimised model): it holds
 * `<cacheDir>/<key>.lock` (or `<key>/optimized-<ep>-<level>.lock`) while it works, and others
 * wait, then use what it made (lib/onnx/build_lock.ts). The holder first removes temporaries
 * that crashed builders left.
 *
 * Hard links keep a replaced or deleted source file's old bytes alive until the entry is
 * removed; delete stale entries with {@linkcode removeCacheEntry}. A weight file rewritten in
 * place (same inode) changes the bytes under the entries that link it: its new content gets a
 * new key, but an entry keyed by its old content then holds the new bytes until removed.
 *
 * @module
 */
import { createHash } from "node:crypto";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { toIoError } from "../errors.ts";
import { acquireBuildLock, type BuildLock, type BuildLockOptions } from "./build_lock.ts";
import { noteHardLinks } from "./content_identity.ts";
import type { OnnxModel } from "./graph.ts";
import { writeModel, type WriteModelOptions } from "./model_file.ts";
import { createSession, type OnnxSession, ORT_VERSION, type SessionOptions } from "./session.ts";

export {
  type ContentIdentity,
  contentIdentity,
  type ContentIdentityOptions,
  HASH_INDEX_FILE,
  hashFile,
} from "./content_identity.ts";
export type { BuildLockOptions, LockOwner } from "./build_lock.ts";

/** Path, size and modification time of a file. */
export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
}

/**
 * Path, size and modification time of a file (cheap: no hashing of contents). Not for cache
 * keys: a file replaced by one of the same size and mtime (`cp -p`) keeps its identity; key by
 * {@linkcode contentIdentity} instead.
 */
export async function fileIdentity(path: string): Promise<FileIdentity> {
  const real = await fsp.realpath(path);
  const stat = await fsp.stat(real);
  return { path: real, size: stat.size, mtimeMs: stat.mtimeMs };
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(obj).sort().filter((k) => obj[k] !== undefined).map((
        k,
      ) => [k, canonical(obj[k])]),
    );
  }
  return value;
}

/**
 * A cache key: SHA-256 (32 hex digits) of the canonical JSON of `parts` (object keys sorted).
 * Put in everything the built graph depends on; the ORT version is added for you.
 *
 * @example
 * ```ts
 * import { cacheKey } from "./cache.ts";
 * const a = cacheKey({ model: "clip", dtype: "float32" });
 * console.assert(a === cacheKey({ dtype: "float32", model: "clip" }) && a.length === 32);
 * ```
 */
export function cacheKey(parts: unknown): string {
  const json = JSON.stringify(canonical({ parts, ort: ORT_VERSION, format: 1 }));
  return createHash("sha256").update(json).digest("hex").slice(0, 32);
}

/** Options of {@linkcode cachedModel}. */
export interface CachedModelOptions {
  /** How to write the model when building it. */
  write?: WriteModelOptions;
  /** How to wait for another process building the same entry (e.g. `onWait` to say so). */
  lock?: BuildLockOptions;
}

/** A model file in the cache. */
export interface CachedModel {
  /** Path of the entry's `model.onnx`. */
  path: string;
  /** The entry's folder. */
  dir: string;
  /** True when the entry existed (nothing was built). */
  hit: boolean;
}

const MODEL_FILE = "model.onnx";
const DONE_FILE = "complete";

/**
 * Returns the cached model for `key`, calling `build` and writing the result (external data,
 * hard links) only when the entry is absent. While one caller builds, others with the same key
 * (in this or another process) wait and then return the entry it made (`hit: true`).
 *
 * @example
 * ```ts ignore
 * const weights = await contentIdentity(file, { indexDir: cacheDir });
 * const key = cacheKey({ weights, builder: "clip_text@1" });
 * const { path } = await cachedModel(cacheDir, key, () => buildClipTextModel(config, sources));
 * ```
 */
export async function cachedModel(
  cacheDir: string,
  key: string,
  build: () => OnnxModel | Promise<OnnxModel>,
  options: CachedModelOptions = {},
): Promise<CachedModel> {
  if (!/^[0-9a-zA-Z_-]+$/.test(key)) {
    throw new RangeError(`Cannot use cache key "${key}": use letters, digits, "-" and "_" only`);
  }
  const dir = join(cacheDir, key);
  const path = join(dir, MODEL_FILE);
  if (await exists(join(dir, DONE_FILE))) return { path, dir, hit: true };
  let lock: BuildLock;
  try {
    await fsp.mkdir(cacheDir, { recursive: true });
    lock = await acquireBuildLock(join(cacheDir, `${key}.lock`), options.lock ?? {});
  } catch (error) {
    throw toIoError(error, `Cannot write the cache folder "${cacheDir}"`, {
      hint: "choose a cache folder you can write to",
    });
  }
  try {
    // Another process may have finished the entry while this one waited for the lock.
    if (await exists(join(dir, DONE_FILE))) return { path, dir, hit: true };
    await removeTemporaries(cacheDir, `${key}.tmp-`);
    const tmp = join(cacheDir, `${key}.tmp-${crypto.randomUUID()}`);
    try {
      const model = await build();
      const written = await writeModel(model, join(tmp, MODEL_FILE), options.write ?? {});
      await noteHardLinks(written.dataFiles);
      await fsp.writeFile(join(tmp, DONE_FILE), new Date().toISOString());
      // A stale incomplete entry is replaced; a complete one written meanwhile by a process
      // that did not take the lock wins and ours is dropped.
      if (await exists(dir) && !(await exists(join(dir, DONE_FILE)))) {
        await fsp.rm(dir, { recursive: true, force: true });
      }
      try {
        await fsp.rename(tmp, dir);
      } catch (e) {
        if (!(await exists(join(dir, DONE_FILE)))) throw e;
      }
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  } finally {
    await lock.release();
  }
  return { path, dir, hit: false };
}

/** Removes the files and folders in `dir` whose names start with `prefix`. */
async function removeTemporaries(dir: string, prefix: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith(prefix)) await fsp.rm(join(dir, name), { recursive: true, force: true });
  }
}

/** Options of {@linkcode createCachedSession}. */
export interface CachedSessionOptions extends SessionOptions, CachedModelOptions {
  /**
   * Save ORT's optimised model in the entry and load it next time with optimisations off
   * (default true). It duplicates the weights on disk, so callers may turn it off for huge
   * models.
   */
  cacheOptimized?: boolean;
}

/** What {@linkcode createCachedSession} did. */
export interface CachedSession {
  session: OnnxSession;
  /** The built model came from the cache. */
  hit: boolean;
  /** The session was loaded from a saved ORT-optimised model. */
  optimizedHit: boolean;
  /** The entry's folder. */
  dir: string;
}

/**
 * Creates a session for a cached model: builds and writes it on a miss, and (by default) has
 * ORT save its optimised graph so the next start skips optimisation. One process at a time
 * optimises an entry; the others wait and load what it saved.
 */
export async function createCachedSession(
  cacheDir: string,
  key: string,
  build: () => OnnxModel | Promise<OnnxModel>,
  options: CachedSessionOptions = {},
): Promise<CachedSession> {
  const entry = await cachedModel(cacheDir, key, build, options);
  const { cacheOptimized = true, write: _write, lock: lockOptions, ...sessionOptions } = options;
  if (!cacheOptimized || sessionOptions.optimizationLevel === "disabled") {
    const session = await createSession(entry.path, sessionOptions);
    return { session, hit: entry.hit, optimizedHit: false, dir: entry.dir };
  }
  const ep = sessionOptions.executionProvider ?? "cpu";
  const level = sessionOptions.optimizationLevel ?? "all";
  const name = `optimized-${ep}-${level}`;
  const optimized = join(entry.dir, `${name}.onnx`);
  const loadOptimized = async (): Promise<CachedSession | undefined> => {
    if (!(await exists(optimized))) return undefined;
    try {
      const session = await createSession(optimized, {
        ...sessionOptions,
        optimizationLevel: "disabled",
      });
      return { session, hit: entry.hit, optimizedHit: true, dir: entry.dir };
    } catch {
      return undefined;
    }
  };
  const ready = await loadOptimized();
  if (ready !== undefined) return ready;
  const lock = await acquireBuildLock(join(entry.dir, `${name}.lock`), lockOptions ?? {});
  try {
    // Saved by another process while this one waited.
    const saved = await loadOptimized();
    if (saved !== undefined) return saved;
    // Nothing usable is saved, so every earlier attempt's files are garbage: a damaged or
    // incompatible model, the data file it referenced, a crashed optimiser's temporaries.
    await fsp.rm(optimized, { force: true });
    await removeTemporaries(entry.dir, `${name}.tmp-`);
    // ORT writes the optimised model under a temporary name (its data file keeps that name,
    // which the model references); renaming the .onnx last makes it appear complete or not at
    // all.
    const tmp = join(entry.dir, `${name}.tmp-${crypto.randomUUID()}.onnx`);
    let session: OnnxSession;
    try {
      session = await createSession(entry.path, { ...sessionOptions, optimizedModelPath: tmp });
    } catch (error) {
      await removeTemporaries(entry.dir, `${name}.tmp-`);
      throw error;
    }
    try {
      await fsp.rename(tmp, optimized);
    } catch {
      // Not fatal: the session works; the next start optimises again.
      await removeTemporaries(entry.dir, `${name}.tmp-`);
    }
    return { session, hit: entry.hit, optimizedHit: false, dir: entry.dir };
  } finally {
    await lock.release();
  }
}

/** Deletes one cache entry (its folder), e.g. after its source weights changed. */
export async function removeCacheEntry(cacheDir: string, key: string): Promise<void> {
  await fsp.rm(join(cacheDir, key), { recursive: true, force: true });
}

async function exists(path: string): Promise<boolean> {
  try {
    await fsp.stat(path);
    return true;
  } catch {
    return false;
  }
}
