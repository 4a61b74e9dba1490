import assert from "node:assert/strict";
import { GraphBuilder } from "../../onnx/graph.ts";
import { broadcastShapes, inferShapes, reshapeTarget, resolveSlice } from "./shape_inference.ts";

Deno.test("inferShapes() evaluates the builders' shape arithmetic (Shape, Slice, Concat, Reshape)", () => {
  const g = new GraphBuilder("t");
  const x = g.input("x", "float32", ["batch", 4, "h", "w"]);
  const batch = g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([1])]);
  const hw = g.op("Slice", [g.op("Shape", [x]), g.ints([2]), g.ints([4])]);
  const target = g.op("Concat", [batch, hw, g.ints([4])], { axis: 0 });
  const tokens = g.op("Reshape", [g.op("Transpose", [x], { perm: [0, 2, 3, 1] }), target]);
  const flat = g.op("Reshape", [tokens, g.ints([-1, 4])]);
  const w = g.input("w", "float32", [8, 4]);
  g.output(g.op("Gemm", [flat, w], { transB: 1 }), "y");
  const shapes = inferShapes(g.build(), { x: [2, 4, 3, 5] });
  assert.deepEqual(shapes.require(target.name).value, [2, 3, 5, 4]);
  assert.deepEqual(shapes.require("y").shape, [30, 8]);
  assert.throws(() => inferShapes(g.build(), {}), /dynamic dimensions; pass its shape/);
});

Deno.test("broadcastShapes(), reshapeTarget() and resolveSlice() follow numpy / ONNX", () => {
  assert.deepEqual(broadcastShapes([2, 1, 4], [3, 1]), [2, 3, 4]);
  assert.throws(() => broadcastShapes([2], [3]), /do not broadcast/);
  assert.deepEqual(reshapeTarget([2, 3, 4], [0, -1]), [2, 12]);
  assert.deepEqual(resolveSlice([5, 6], [1, -4], [100, -1], [0, 1]), [
    { axis: 0, start: 1, end: 5, step: 1 },
    { axis: 1, start: 2, end: 5, step: 1 },
  ]);
});
