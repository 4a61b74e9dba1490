import assert from "node:assert/strict";
import { GraphBuilder } from "../../onnx/graph.ts";
import { serializeModel } from "../../onnx/model_file.ts";
import { createSession, hostTensor } from "../../onnx/session.ts";
import { gradientGraph } from "./gradient_graph.ts";
import { seededUniform } from "./testing.ts";

/** Two "blocks" of tanh(x W) + x, then a sum: block activations are what checkpointing drops. */
function blocks() {
  const g = new GraphBuilder("blocks");
  let x = g.input("x", "float32", [4, 8]);
  const ws = [0, 1].map((i) => g.input(`w${i}`, "float32", [8, 8]));
  for (let i = 0; i < 2; i++) {
    x = g.scope(`block.${i}`, () => {
      const h = g.op("Tanh", [g.op("MatMul", [x, ws[i]!])]);
      return g.op("Add", [g.op("Mul", [h, h]), x]);
    });
  }
  g.output(g.op("ReduceSum", [x, g.ints([0, 1])], { keepdims: 0 }), "l");
  return g.build();
}

Deno.test("gradientGraph({ recompute }) gives the same gradients, reading no kept block activation", async () => {
  const options = { loss: "l", wrt: ["x", "w0", "w1"], inputShapes: {} };
  const plain = gradientGraph(blocks(), options);
  const segmentOf = (name: string) => /^(block\.\d+)\//.exec(name)?.[1];
  const recomputed = gradientGraph(blocks(), { ...options, recompute: segmentOf });
  // Backward nodes read no value made inside a block by the forward pass.
  const graph = recomputed.proto.graph;
  const insideForward = new Set<string>();
  for (const n of graph.node) {
    if (segmentOf(n.name ?? "") !== undefined && !n.name!.includes("@recompute")) {
      for (const o of n.output) insideForward.add(o);
    }
  }
  const readers = graph.node.filter((n) =>
    n.name!.startsWith("grad/") && n.input.some((i) => insideForward.has(i))
  );
  // Only the blocks' outputs (read by the next block's or the loss's backward) may be read.
  const read = new Set(readers.flatMap((n) => n.input.filter((i) => insideForward.has(i))));
  assert.ok(read.size <= 2, `backward reads forward block values: ${[...read].join(", ")}`);
  assert.ok(graph.node.some((n) => n.name!.endsWith("@recompute")), "no recomputed nodes");

  const feeds = {
    x: hostTensor("float32", Float32Array.from(seededUniform(32, 1)), [4, 8]),
    w0: hostTensor("float32", Float32Array.from(seededUniform(64, 2)), [8, 8]),
    w1: hostTensor("float32", Float32Array.from(seededUniform(64, 3)), [8, 8]),
  };
  const a = await createSession(await serializeModel(plain));
  const b = await createSession(await serializeModel(recomputed));
  try {
    const [ra, rb] = [await a.run(feeds), await b.run(feeds)];
    for (const name of ["loss", "x.grad", "w0.grad", "w1.grad"]) {
      const [pa, pb] = [ra[name]!.data as Float32Array, rb[name]!.data as Float32Array];
      let diff = 0;
      for (let i = 0; i < pa.length; i++) diff = Math.max(diff, Math.abs(pa[i]! - pb[i]!));
      console.log(`${name}: maxdiff ${diff} (tolerance 0)`);
      assert.equal(diff, 0);
    }
  } finally {
    await a.release();
    await b.release();
  }
});
