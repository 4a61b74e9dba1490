import assert from "node:assert/strict";
import { GraphBuilder } from "../../onnx/graph.ts";
import { serializeModel } from "../../onnx/model_file.ts";
import { createSession, hostTensor } from "../../onnx/session.ts";
import { gradientGraph } from "./gradient_graph.ts";

Deno.test("gradientGraph() differentiates only the path from the parameters to the loss", () => {
  const g = new GraphBuilder("paths");
  const x = g.input("x", "float32", [2, 3]);
  const p = g.input("p", "float32", [3]);
  // An expensive branch the parameter does not reach, and one the loss does not use.
  const frozen = g.op("Softmax", [g.op("Sin", [x])], { axis: -1 });
  const y = g.op("Mul", [g.op("Add", [frozen, p]), g.op("Sigmoid", [x])]);
  g.output(g.op("Tanh", [p]), "unused");
  g.output(g.op("ReduceSum", [y, g.ints([0, 1])], { keepdims: 0 }), "l");
  const model = gradientGraph(g.build(), { loss: "l", wrt: ["p"], inputShapes: {} });
  const backward = model.proto.graph.node.filter((n) => n.name?.startsWith("grad/"));
  const differentiated = new Set(backward.map((n) => n.name!.split("/")[1]));
  assert.deepEqual([...differentiated].sort(), ["Add", "Mul", "ReduceSum"]);
  assert.ok(!model.proto.graph.node.some((n) => n.opType === "Tanh"), "dead nodes are dropped");
  assert.deepEqual(model.proto.graph.output.map((o) => o.name), ["loss", "p.grad"]);
  // Inputs are pinned to the shapes the graph was built for.
  assert.deepEqual(model.proto.graph.input[0]!.type.tensorType.shape!.dim, [
    { dimValue: 2 },
    { dimValue: 3 },
  ]);
});

Deno.test("gradientGraph() gives zeros to a parameter the loss does not depend on", async () => {
  const g = new GraphBuilder("zero");
  const x = g.input("x", "float32", ["n"]);
  const p = g.input("p", "float32", [2, 2]);
  g.output(g.op("Tanh", [p]), "side");
  g.output(g.op("ReduceSum", [g.op("Mul", [x, x]), g.ints([0])], { keepdims: 0 }), "l");
  const model = gradientGraph(g.build(), { loss: "l", wrt: ["x", "p"], inputShapes: { x: [3] } });
  const session = await createSession(await serializeModel(model));
  const out = await session.run({
    x: hostTensor("float32", Float32Array.of(1, 2, 3), [3]),
    p: hostTensor("float32", new Float32Array(4).fill(1), [2, 2]),
  });
  assert.deepEqual(Array.from(out["x.grad"]!.data as Float32Array), [2, 4, 6]);
  assert.deepEqual(Array.from(out["p.grad"]!.data as Float32Array), [0, 0, 0, 0]);
  assert.equal(out.loss!.data[0], 14);
  await session.release();
});

Deno.test("gradientGraph() fails naming the op it cannot differentiate, and rejects bad losses", () => {
  const g = new GraphBuilder("bad");
  const p = g.input("p", "float32", [4]);
  const y = g.op("Softplus", [p]);
  g.output(g.op("ReduceSum", [y, g.ints([0])], { keepdims: 0 }), "l");
  g.output(y, "y");
  const model = g.build();
  assert.throws(
    () => gradientGraph(model, { loss: "l", wrt: ["p"], inputShapes: {} }),
    /Cannot differentiate Softplus node "Softplus": no VJP rule/,
  );
  assert.throws(
    () => gradientGraph(model, { loss: "y", wrt: ["p"], inputShapes: {} }),
    /the loss must be one float/,
  );
  assert.throws(
    () => gradientGraph(model, { loss: "l", wrt: ["q"], inputShapes: {} }),
    /the graph has no such value/,
  );
  const h = new GraphBuilder("unknown");
  const q = h.input("q", "float32", [4]);
  h.output(h.op("ReduceSum", [h.op("HardSwish", [q]), h.ints([0])], { keepdims: 0 }), "l");
  assert.throws(
    () => gradientGraph(h.build(), { loss: "l", wrt: ["q"], inputShapes: {} }),
    /No static shape for "l": HardSwish node "HardSwish" has no shape rule/,
  );
});
