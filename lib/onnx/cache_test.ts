import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  cachedModel,
  cacheKey,
  contentIdentity,
  createCachedSession,
  fileIdentity,
} from "./cache.ts";
import { GraphBuilder, type OnnxModel } from "./graph.ts";
import { hostTensor } from "./session.ts";

/** y = x @ W^T with W read from `file` (raw float32 bytes at offset 16). */
function linearModel(file: string): OnnxModel {
  const g = new GraphBuilder("cached");
  const x = g.input("x", "float32", ["b", 64]);
  const w = g.initializer("w", {
    dtype: "float32",
    shape: [32, 64],
    file,
    offset: 16,
    length: 32 * 64 * 4,
  });
  g.output(g.op("MatMul", [x, g.op("Transpose", [w], { perm: [1, 0] })]), "y");
  return g.build();
}

Deno.test("createCachedSession() builds once, then reuses the model and ORT's optimised graph", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-cache-" });
  try {
    const weights = join(tmp, "w.bin");
    const w = Float32Array.from({ length: 32 * 64 }, (_, i) => Math.sin(i));
    const bytes = new Uint8Array(16 + w.byteLength);
    bytes.set(new Uint8Array(w.buffer), 16);
    fs.writeFileSync(weights, bytes);
    const cacheDir = join(tmp, "cache");
    const key = cacheKey({ weights: await fileIdentity(weights), builder: "linear@1" });
    let builds = 0;
    const build = () => (builds++, linearModel(weights));
    const x = hostTensor("float32", Float32Array.from({ length: 64 }, (_, i) => i / 64), [1, 64]);
    const outputs: Float32Array[] = [];
    const flags: Array<[boolean, boolean]> = [];
    for (let run = 0; run < 3; run++) {
      const { session, hit, optimizedHit } = await createCachedSession(cacheDir, key, build, {
        threads: 1,
      });
      try {
        outputs.push((await session.run({ x })).y!.data as Float32Array);
        flags.push([hit, optimizedHit]);
      } finally {
        await session.release();
      }
    }
    assert.equal(builds, 1);
    assert.deepEqual(flags, [[false, false], [true, true], [true, true]]);
    let expect0 = 0;
    for (let c = 0; c < 64; c++) expect0 += w[c]! * (c / 64);
    assert.ok(Math.abs(outputs[0]![0]! - expect0) < 1e-4, `got ${outputs[0]![0]}, want ${expect0}`);
    assert.deepEqual(outputs[1], outputs[0]);
    assert.deepEqual(outputs[2], outputs[0]);
    const files = fs.readdirSync(join(cacheDir, key)).sort();
    assert.ok(files.includes("model.onnx") && files.includes("optimized-cpu-all.onnx"), `${files}`);
    assert.ok(!files.some((f) => f.endsWith(".onnx") && f.includes(".tmp-")), `${files}`);
    // ORT's optimised model keeps its weights in a data file, not inline (2 GiB limit).
    assert.ok(files.some((f) => f.startsWith("optimized-cpu-all") && f.endsWith(".data")));
    // A rewritten weight file has a new identity, hence a new key.
    fs.utimesSync(weights, new Date(), new Date(Date.now() + 5000));
    const key2 = cacheKey({ weights: await fileIdentity(weights), builder: "linear@1" });
    assert.notEqual(key2, key);
    const second = await cachedModel(cacheDir, key2, build);
    assert.equal(second.hit, false);
    assert.equal(builds, 2);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("cachedModel() leaves no entry when the build fails", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-cache-" });
  try {
    await assert.rejects(
      cachedModel(tmp, "k1", () => {
        throw new TypeError("bad weights");
      }),
      /bad weights/,
    );
    assert.deepEqual(fs.readdirSync(tmp), []);
    await assert.rejects(cachedModel(tmp, "../x", () => linearModel("nope")), /cache key/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function writeWeights(path: string, seed: number): Float32Array {
  const w = Float32Array.from({ length: 32 * 64 }, (_, i) => Math.sin(i * seed));
  const bytes = new Uint8Array(16 + w.byteLength);
  bytes.set(new Uint8Array(w.buffer), 16);
  fs.writeFileSync(path, bytes);
  return w;
}

function leftovers(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true }).map(String).filter((f) =>
    f.includes(".tmp-") || f.endsWith(".lock") || f.includes(".stale-")
  );
}

Deno.test("cachedModel() builds once when two callers race for one key", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-cache-" });
  try {
    const weights = join(tmp, "w.bin");
    writeWeights(weights, 1);
    let builds = 0;
    const build = async () => {
      builds++;
      await delay(300);
      return linearModel(weights);
    };
    const cacheDir = join(tmp, "cache");
    const [a, b] = await Promise.all([
      cachedModel(cacheDir, "k", build),
      cachedModel(cacheDir, "k", build),
    ]);
    assert.equal(builds, 1);
    assert.deepEqual([a.hit, b.hit].sort(), [false, true]);
    assert.equal(a.path, b.path);
    assert.deepEqual(leftovers(cacheDir), []);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("cachedModel() builds once when two processes race for one key", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-cache-" });
  try {
    const weights = join(tmp, "w.bin");
    writeWeights(weights, 1);
    const cacheDir = join(tmp, "cache");
    const log = join(tmp, "builds.log");
    const code = `
import { cachedModel } from ${JSON.stringify(new URL("./cache.ts", import.meta.url).href)};
import { GraphBuilder } from ${JSON.stringify(new URL("./graph.ts", import.meta.url).href)};
const entry = await cachedModel(${JSON.stringify(cacheDir)}, "k", async () => {
  Deno.writeTextFileSync(${JSON.stringify(log)}, Deno.pid + "\\n", { append: true });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const g = new GraphBuilder("cached");
  const x = g.input("x", "float32", ["b", 64]);
  const w = g.initializer("w", { dtype: "float32", shape: [32, 64],
    file: ${JSON.stringify(weights)}, offset: 16, length: 32 * 64 * 4 });
  g.output(g.op("MatMul", [x, g.op("Transpose", [w], { perm: [1, 0] })]), "y");
  return g.build();
});
console.log(JSON.stringify(entry));`;
    const run = () =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", code],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const outs = await Promise.all([run(), run()]);
    for (const out of outs) assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const entries = outs.map((o) => JSON.parse(new TextDecoder().decode(o.stdout)));
    assert.equal(fs.readFileSync(log, "utf8").trim().split("\n").length, 1, "one build");
    assert.deepEqual(entries.map((e) => e.hit).sort(), [false, true]);
    assert.equal(entries[0].path, entries[1].path);
    assert.deepEqual(leftovers(cacheDir), []);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("cachedModel(): when the builder fails, a waiter builds; no temporaries stay", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-cache-" });
  try {
    const weights = join(tmp, "w.bin");
    writeWeights(weights, 1);
    const cacheDir = join(tmp, "cache");
    const failing = cachedModel(cacheDir, "k", async () => {
      await delay(200);
      throw new TypeError("bad weights");
    });
    await delay(20);
    let builds = 0;
    const waiting = cachedModel(cacheDir, "k", () => (builds++, linearModel(weights)));
    await assert.rejects(failing, /bad weights/);
    const entry = await waiting;
    assert.equal(entry.hit, false);
    assert.equal(builds, 1);
    assert.deepEqual(leftovers(cacheDir), []);

    // A builder killed mid-build left its lock (dead pid) and temporary folder behind.
    const child = new Deno.Command(Deno.execPath(), { args: ["--version"], stdout: "null" })
      .spawn();
    await child.status;
    const lock = { pid: child.pid, host: (await import("node:os")).hostname(), nonce: "x" };
    fs.writeFileSync(join(cacheDir, "k2.lock"), JSON.stringify({ ...lock, since: 0 }));
    fs.mkdirSync(join(cacheDir, "k2.tmp-dead"));
    fs.writeFileSync(join(cacheDir, "k2.tmp-dead", "model.onnx.data"), new Uint8Array(1000));
    assert.equal((await cachedModel(cacheDir, "k2", () => linearModel(weights))).hit, false);
    assert.deepEqual(leftovers(cacheDir), []);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("createCachedSession() from two racing callers saves one optimised model", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-cache-" });
  try {
    const weights = join(tmp, "w.bin");
    writeWeights(weights, 1);
    const cacheDir = join(tmp, "cache");
    const build = () => linearModel(weights);
    // The entry exists; both callers find no optimised model and would each make one.
    await cachedModel(cacheDir, "k", build);
    const results = await Promise.all([
      createCachedSession(cacheDir, "k", build, { threads: 1 }),
      createCachedSession(cacheDir, "k", build, { threads: 1 }),
    ]);
    for (const r of results) await r.session.release();
    assert.deepEqual(results.map((r) => r.optimizedHit).sort(), [false, true]);
    const files = fs.readdirSync(join(cacheDir, "k"));
    const optimized = files.filter((f) => f.startsWith("optimized-"));
    assert.equal(optimized.filter((f) => f.endsWith(".data")).length, 1, `${files}`);
    assert.equal(optimized.filter((f) => f.endsWith(".onnx")).length, 1, `${files}`);
    assert.deepEqual(leftovers(cacheDir).filter((f) => !f.endsWith(".data")), []);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("a weight file replaced with the same size and mtime (cp -p) gets a new key and graph", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-cache-" });
  try {
    const weights = join(tmp, "w.bin");
    const cacheDir = join(tmp, "cache");
    const mtime = new Date("2024-05-06T07:08:09Z");
    const x = hostTensor("float32", Float32Array.from({ length: 64 }, (_, i) => i / 64), [1, 64]);
    const expected = (w: Float32Array) => {
      let y = 0;
      for (let c = 0; c < 64; c++) y += w[c]! * (c / 64);
      return y;
    };
    const outputs: number[] = [];
    const keys: string[] = [];
    for (const seed of [1, 2]) {
      // The second file is written over the first, then given its mtime, as `cp -p` does.
      const w = writeWeights(weights, seed);
      fs.utimesSync(weights, mtime, mtime);
      const weightsId = await contentIdentity(weights, { indexDir: cacheDir });
      const key = cacheKey({ weights: weightsId, builder: "linear@1" });
      keys.push(key);
      const { session, hit } = await createCachedSession(
        cacheDir,
        key,
        () => linearModel(weights),
        { threads: 1 },
      );
      try {
        assert.equal(hit, false, `seed ${seed}: built`);
        const y = ((await session.run({ x })).y!.data as Float32Array)[0]!;
        assert.ok(Math.abs(y - expected(w)) < 1e-4, `seed ${seed}: got ${y}, want ${expected(w)}`);
        outputs.push(y);
      } finally {
        await session.release();
      }
    }
    assert.notEqual(keys[0], keys[1]);
    assert.notEqual(outputs[0], outputs[1]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
