/**
 * Issue 17 item 6: a weight file replaced by another of the same size and mtime (`cp -p`) must
 * not reuse the graph built from the old one. Goes through the engine that every pipeline uses.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { GraphBuilder } from "../lib/onnx/graph.ts";
import { hostTensor } from "../lib/onnx/session.ts";
import { componentKey, openComponent } from "../lib/model_io/engine.ts";
import { encodeSafetensors } from "../lib/weights/safetensors.ts";

function weightsFile(seed: number): Uint8Array {
  const data = Float32Array.from({ length: 8 * 4 }, (_, i) => Math.cos(i * seed));
  return encodeSafetensors({ w: { dtype: "F32", shape: [8, 4], data } });
}

Deno.test("openComponent() rebuilds when the weights are replaced with the same size and mtime", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "denoise-stale-" });
  try {
    const weights = join(dir, "model.safetensors");
    const cacheDir = join(dir, "cache");
    const mtime = new Date("2024-03-04T05:06:07Z");
    const spec = {
      kind: "linear",
      weights,
      config: { features: 4 },
      build: (sources: Map<string, import("../lib/onnx/graph.ts").TensorSource>) => {
        const g = new GraphBuilder("linear");
        const x = g.input("x", "float32", [1, 4]);
        // [1, 4] @ [8, 4]^T -> [1, 8]
        const w = g.initializer("w", sources.get("w")!);
        g.output(g.op("MatMul", [x, g.op("Transpose", [w], { perm: [1, 0] })]), "y");
        return g.build();
      },
    };
    const x = hostTensor("float32", Float32Array.of(1, 0, 0, 0), [1, 4]);
    const keys: string[] = [];
    const firstColumn: number[] = [];
    for (const seed of [1, 2]) {
      // Written over the old file, then given its mtime: what `cp -p new.safetensors
      // model.safetensors` does.
      const bytes = weightsFile(seed);
      Deno.writeFileSync(weights, bytes);
      Deno.utimeSync(weights, mtime, mtime);
      assert.equal(Deno.statSync(weights).size, bytes.length);
      keys.push(await componentKey(spec, cacheDir));
      const session = await openComponent(spec, { cacheDir, threads: 1 });
      try {
        firstColumn.push(((await session.run({ x })).y!.data as Float32Array)[1]!);
      } finally {
        await session.release();
      }
    }
    assert.notEqual(keys[0], keys[1], "the key follows the content");
    // y[1] = w[1, 0] = cos(4 * seed)
    assert.ok(Math.abs(firstColumn[0]! - Math.cos(4)) < 1e-6, `got ${firstColumn[0]}`);
    assert.ok(Math.abs(firstColumn[1]! - Math.cos(8)) < 1e-6, `got ${firstColumn[1]}`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
