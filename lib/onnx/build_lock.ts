/**
 * A lock file that lets one process at a time build a cache entry; the others wait, then use
 * what the winner made. The lock is created with O_EXCL (`createNew`) and holds the owner's
 * pid, host and a nonce; the owner touches it every few seconds. A lock is stale, and is broken,
 * when its owner on this host is no longer running, when an owner on another host (a shared
 * folder) or an unreadable lock has not been touched for `staleMs`, or when a running owner on
 * this host has not touched it for 10 x `staleMs` (a reused pid, a hung process). A live owner
 * is given that long because ORT's optimisation blocks its event loop, and so its touches, for
 * tens of seconds on big models.
 *
 * The lock saves duplicated work; it is not what keeps entries whole. Entries are still built
 * in a temporary folder and renamed into place, so a lock broken by mistake costs a second
 * build, never a damaged entry.
 *
 * @module
 */
import * as fsp from "node:fs/promises";
import { hostname } from "node:os";
import process from "node:process";

/** Options of {@linkcode acquireBuildLock}. */
export interface BuildLockOptions {
  /**
   * A lock of another host untouched for this long is stale (default 60 s; 10x that for a running
   * owner on this host); the owner touches it 4x as often.
   */
  staleMs?: number;
  /** Called once when the lock is held by another live process and this one starts waiting. */
  onWait?: (owner: LockOwner) => void;
  /** Stops waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** Who holds a lock, as written in the lock file. */
export interface LockOwner {
  pid: number;
  host: string;
  nonce: string;
  /** When the lock was taken, ms since the epoch. */
  since: number;
}

/** A held lock. */
export interface BuildLock {
  /** The lock file. */
  readonly path: string;
  /** Removes the lock file (only if it is still ours) and stops touching it. */
  release(): Promise<void>;
}

const DEFAULT_STALE_MS = 60_000;

/**
 * Takes the lock at `path`, waiting while another live process holds it and breaking it when
 * its owner is gone. The folder must exist.
 *
 * @example
 * ```ts
 * import { acquireBuildLock } from "./build_lock.ts";
 * const dir = Deno.makeTempDirSync();
 * const lock = await acquireBuildLock(`${dir}/entry.lock`);
 * try {
 *   // build the entry
 * } finally {
 *   await lock.release();
 * }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function acquireBuildLock(
  path: string,
  options: BuildLockOptions = {},
): Promise<BuildLock> {
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  let waited = false;
  let pause = 25;
  for (;;) {
    options.signal?.throwIfAborted();
    const owner: LockOwner = {
      pid: Deno.pid,
      host: hostname(),
      nonce: crypto.randomUUID(),
      since: Date.now(),
    };
    if (await tryCreate(path, owner)) return held(path, owner, staleMs);
    const current = await inspect(path);
    if (current === undefined) continue; // released meanwhile
    if (isStale(current, staleMs)) {
      await breakLock(path, current.owner);
      continue;
    }
    if (!waited && current.owner !== undefined) {
      waited = true;
      options.onWait?.(current.owner);
    }
    await delay(pause + Math.random() * pause, options.signal);
    pause = Math.min(pause * 2, 500);
  }
}

async function tryCreate(path: string, owner: LockOwner): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, createNew: true });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    throw error;
  }
  try {
    await file.write(new TextEncoder().encode(JSON.stringify(owner)));
  } finally {
    file.close();
  }
  return true;
}

function held(path: string, owner: LockOwner, staleMs: number): BuildLock {
  const timer = setInterval(() => {
    const now = new Date();
    Deno.utime(path, now, now).catch(() => {});
  }, Math.max(10, Math.floor(staleMs / 4)));
  Deno.unrefTimer(timer);
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      const current = await inspect(path);
      if (current?.owner?.nonce === owner.nonce) await fsp.rm(path, { force: true });
    },
  };
}

interface LockState {
  /** Undefined while the owner has not written it yet, or when it is unreadable. */
  owner: LockOwner | undefined;
  mtimeMs: number;
}

async function inspect(path: string): Promise<LockState | undefined> {
  try {
    const stat = await fsp.stat(path);
    const text = await fsp.readFile(path, "utf8").catch(() => "");
    return { owner: parseOwner(text), mtimeMs: stat.mtimeMs };
  } catch {
    return undefined;
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (
      typeof v.pid === "number" && typeof v.host === "string" && typeof v.nonce === "string" &&
      typeof v.since === "number"
    ) {
      return { pid: v.pid, host: v.host, nonce: v.nonce, since: v.since };
    }
  } catch {
    // An empty or partly written lock: judged by its age alone.
  }
  return undefined;
}

function isStale(state: LockState, staleMs: number): boolean {
  const age = Date.now() - state.mtimeMs;
  const owner = state.owner;
  if (owner === undefined || owner.host !== hostname()) return age > staleMs;
  return !isRunning(owner.pid) || age > 10 * staleMs;
}

/** Whether a process with this pid runs on this host (unknown counts as running). */
function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code !== "ESRCH";
  }
}

/**
 * Removes a stale lock without removing a fresh one that replaced it meanwhile: the lock is
 * renamed to a unique name first, and put back if it turns out to be someone else's.
 */
async function breakLock(path: string, stale: LockOwner | undefined): Promise<void> {
  const aside = `${path}.stale-${crypto.randomUUID()}`;
  try {
    await fsp.rename(path, aside);
  } catch {
    return; // gone already
  }
  const moved = await inspect(aside);
  const same = stale === undefined
    ? moved?.owner === undefined
    : moved?.owner?.nonce === stale.nonce;
  if (!same) {
    // A fresh lock taken after we looked: give it back unless yet another one exists.
    await fsp.link(aside, path).catch(() => {});
  }
  await fsp.rm(aside, { force: true });
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", abort);
      resolve();
    }
    function abort() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener("abort", abort, { once: true });
  });
}
