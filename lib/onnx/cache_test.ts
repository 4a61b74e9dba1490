import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { cachedModel, cacheKey, createCachedSession, fileIdentity } from "./cache.ts";
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
