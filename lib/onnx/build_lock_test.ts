import assert from "node:assert/strict";
import { hostname } from "node:os";
import { join } from "node:path";
import { acquireBuildLock, type LockOwner } from "./build_lock.ts";

function withDir(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "denoise-lock-" });
    try {
      await fn(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), { args: ["--version"], stdout: "null" }).spawn();
  await child.status;
  return child.pid;
}

Deno.test(
  "acquireBuildLock() lets one holder in at a time; the other waits, then gets it",
  withDir(async (dir) => {
    const path = join(dir, "k.lock");
    const events: string[] = [];
    const first = await acquireBuildLock(path);
    const waiting: LockOwner[] = [];
    const second = acquireBuildLock(path, { onWait: (owner) => waiting.push(owner) }).then(
      (lock) => {
        events.push("second");
        return lock;
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    events.push("first done");
    await first.release();
    const lock = await second;
    assert.deepEqual(events, ["first done", "second"]);
    assert.equal(waiting.length, 1);
    assert.equal(waiting[0]!.pid, Deno.pid);
    await lock.release();
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  }),
);

Deno.test(
  "acquireBuildLock() breaks a lock whose owner is gone or silent, not a live one",
  withDir(async (dir) => {
    const path = join(dir, "k.lock");
    const owner = (pid: number): LockOwner => ({
      pid,
      host: hostname(),
      nonce: crypto.randomUUID(),
      since: Date.now(),
    });
    // Owner process exited (a crash or kill -9 during a build).
    Deno.writeTextFileSync(path, JSON.stringify(owner(await deadPid())));
    await (await acquireBuildLock(path)).release();
    // An empty lock (owner died between create and write) untouched for longer than staleMs.
    Deno.writeTextFileSync(path, "");
    const old = new Date(Date.now() - 10_000);
    Deno.utimeSync(path, old, old);
    await (await acquireBuildLock(path, { staleMs: 5_000 })).release();
    // A live owner on another host that stopped touching its lock.
    Deno.writeTextFileSync(path, JSON.stringify({ ...owner(1), host: "elsewhere" }));
    Deno.utimeSync(path, old, old);
    await (await acquireBuildLock(path, { staleMs: 5_000 })).release();
    // A running owner on this host whose touches stopped (ORT blocking its event loop) is
    // waited for up to 10 x staleMs, then taken over (a reused pid, a hung process).
    Deno.writeTextFileSync(path, JSON.stringify(owner(Deno.pid)));
    const quiet = new Date(Date.now() - 2_000);
    Deno.utimeSync(path, quiet, quiet);
    await assert.rejects(
      acquireBuildLock(path, { staleMs: 500, signal: AbortSignal.timeout(300) }),
      (e: unknown) => e instanceof DOMException && e.name === "TimeoutError",
    );
    Deno.utimeSync(path, old, old);
    await (await acquireBuildLock(path, { staleMs: 500 })).release();
    // A live owner that touches its lock is waited for.
    const live = await acquireBuildLock(path, { staleMs: 200 });
    const signal = AbortSignal.timeout(600);
    await assert.rejects(acquireBuildLock(path, { staleMs: 200, signal }), (e: unknown) => {
      return e instanceof DOMException && e.name === "TimeoutError";
    });
    await live.release();
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  }),
);

Deno.test(
  "acquireBuildLock() release leaves a lock that another process took over",
  withDir(async (dir) => {
    const path = join(dir, "k.lock");
    const lock = await acquireBuildLock(path);
    const theirs = JSON.stringify({ pid: 1, host: "elsewhere", nonce: "n", since: 0 });
    Deno.writeTextFileSync(path, theirs);
    await lock.release();
    assert.equal(Deno.readTextFileSync(path), theirs);
  }),
);
