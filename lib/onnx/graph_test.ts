import assert from "node:assert/strict";
import { floatAttr, GraphBuilder, onnxType } from "./graph.ts";
import { decodeModelProto } from "./proto.ts";
import { serializeModel } from "./model_file.ts";
import { createSession, hostTensor } from "./session.ts";

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

Deno.test("GraphBuilder builds a Gemm + LayerNorm graph that ORT runs with the right numbers", async () => {
  const g = new GraphBuilder("tiny");
  const x = g.input("x", "float32", ["batch", 3]);
  const w = g.initializer("fc.weight", {
    dtype: "float32",
    shape: [2, 3],
    data: new Float32Array([1, 2, 3, -1, 0.5, 2]),
  });
  const b = g.initializer("fc.bias", {
    dtype: "float32",
    shape: [2],
    data: new Float32Array([0.5, -1]),
  });
  const y = g.scope("fc", () => g.op("Gemm", [x, w, b], { transB: 1, alpha: 1 }));
  const ln = g.op("LayerNormalization", [y, g.constant([1, 1], "float32", [2]), null], {
    axis: -1,
    epsilon: 1e-5,
  });
  const z = g.op("Mul", [y, g.scalar(2)]);
  g.output(z, "z");
  g.output(ln, "ln", "float32", ["batch", 2]);
  const bytes = await serializeModel(g.build());
  const session = await createSession(bytes, { threads: 1 });
  try {
    const out = await session.run({
      x: hostTensor("float32", new Float32Array([1, 2, 3, -1, 0, 1]), [2, 3]),
    });
    // Gemm: rows [1,2,3]@W^T + b = [14.5, 5], [-1,0,1] -> [2.5, 2]
    const expectY = [14.5, 5, 2.5, 2];
    const diff = maxDiff(out.z!.data as Float32Array, expectY.map((v) => v * 2));
    assert.ok(diff < 1e-6, `maxdiff ${diff}`);
    assert.deepEqual(out.z!.dims, [2, 2]);
    // LayerNorm of two values (a, b) is (+-1) scaled by var/(var+eps).
    const ln0 = out.ln!.data as Float32Array;
    const v = (14.5 - 5) ** 2 / 4;
    const expectLn = [Math.sqrt(v / (v + 1e-5)), -Math.sqrt(v / (v + 1e-5))];
    assert.ok(maxDiff(ln0.subarray(0, 2), expectLn) < 1e-6);
  } finally {
    await session.release();
  }
});

Deno.test("GraphBuilder names nodes by scope and types attributes", () => {
  const g = new GraphBuilder("names", { opset: 18 });
  const x = g.input("x", "float32", [1, 2]);
  const y = g.scope(
    "encoder",
    () => g.scope("layers.0", () => g.op("LeakyRelu", [x], { alpha: 1 }, { name: "act" })),
  );
  const c = g.op("Cast", [y], { to: onnxType("float16") });
  assert.equal(c.type, "float16");
  const s = g.op("Shape", [x]);
  assert.equal(s.type, "int64");
  const h = g.op("HardSigmoid", [x], { alpha: floatAttr(1), beta: 0 });
  const sl = g.op("Slice", [x, g.ints([0]), g.ints([1]), null, g.ints([1])]);
  g.output(c, "c");
  g.output(h, "h");
  g.output(sl, "sl");
  const model = g.build({ metadata: { kind: "test" } });
  const proto = model.proto;
  assert.equal(proto.irVersion, 8);
  assert.deepEqual(proto.opsetImport, [{ domain: "", version: 18 }]);
  const node = proto.graph.node[0]!;
  assert.equal(node.name, "encoder/layers.0/act");
  assert.equal(y.name, "encoder/layers.0/act");
  assert.deepEqual(node.attribute, [{ name: "alpha", type: 1, f: 1 }]);
  const slice = proto.graph.node.find((n) => n.opType === "Slice")!;
  assert.equal(slice.input[3], "", "an omitted inner input is an empty name");
  assert.equal(slice.input.length, 5);
  assert.throws(() => g.input("x", "float32", [1]), /name is taken/);
  assert.throws(
    () => g.initializer("w", { dtype: "float32", shape: [3], data: new Float32Array(2) }),
    /8 bytes given, float32 \[3\] needs 12/,
  );
});

Deno.test("serializeModel() output decodes to the same graph", async () => {
  const g = new GraphBuilder("roundtrip");
  const x = g.input("ids", "int64", ["b", "s"]);
  const w = g.initializer("emb", { dtype: "float32", shape: [5, 2], data: new Float32Array(10) });
  g.output(g.op("Gather", [w, x], { axis: 0 }), "out");
  const decoded = decodeModelProto(await serializeModel(g.build()));
  assert.equal(decoded.graph.name, "roundtrip");
  assert.deepEqual(decoded.graph.input[0]!.type.tensorType.shape!.dim, [
    { dimParam: "b" },
    { dimParam: "s" },
  ]);
  const init = decoded.graph.initializer.find((t) => t.name === "emb")!;
  assert.deepEqual(init.dims, [5, 2]);
  assert.equal(init.rawData!.length, 40);
  assert.equal(decoded.graph.output[0]!.type.tensorType.elemType, 1);
});

Deno.test("GraphBuilder uses GroupNormalization at opset 21 with per-channel scale", async () => {
  const g = new GraphBuilder("gn", { opset: 21 });
  const x = g.input("x", "float32", ["b", 4, 1, 2]);
  const s = g.initializer("s", {
    dtype: "float32",
    shape: [4],
    data: new Float32Array([1, 2, 3, 4]),
  });
  const b = g.initializer("b", {
    dtype: "float32",
    shape: [4],
    data: new Float32Array([0, 0, 0, 1]),
  });
  g.output(g.op("GroupNormalization", [x, s, b], { epsilon: 1e-5, num_groups: 2 }), "y");
  const session = await createSession(await serializeModel(g.build()));
  try {
    const data = new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]);
    const out = await session.run({ x: hostTensor("float32", data, [1, 4, 1, 2]) });
    // Group 0 = [0,1,2,3]: mean 1.5, var 1.25; group 1 = [4..7] the same spread.
    const inv = 1 / Math.sqrt(1.25 + 1e-5);
    const norm = [-1.5, -0.5, 0.5, 1.5, -1.5, -0.5, 0.5, 1.5].map((v) => v * inv);
    const scale = [1, 1, 2, 2, 3, 3, 4, 4];
    const bias = [0, 0, 0, 0, 0, 0, 1, 1];
    const expect = norm.map((v, i) => v * scale[i]! + bias[i]!);
    const diff = maxDiff(out.y!.data as Float32Array, expect);
    assert.ok(diff < 1e-5, `maxdiff ${diff}`);
  } finally {
    await session.release();
  }
});
