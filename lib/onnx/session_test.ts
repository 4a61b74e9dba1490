import assert from "node:assert/strict";
import { float32ToFloat16Bits, GraphBuilder } from "./graph.ts";
import { serializeModel } from "./model_file.ts";
import { createSession, hostTensor } from "./session.ts";
import { float16BitsToNumber } from "./tensor_sources.ts";

Deno.test("OnnxSession.run() feeds and returns float16 tensors as Uint16Array bits", async () => {
  // y = x * 2 + 0.5 in float16, with a float32 output of the same values beside it.
  const g = new GraphBuilder("f16");
  const x = g.input("x", "float16", [2, 3]);
  const y = g.op("Add", [g.op("Mul", [x, g.scalar(2, "float16")]), g.scalar(0.5, "float16")]);
  g.output(y, "y", "float16", [2, 3]);
  g.output(g.op("Cast", [y], { to: 1 }), "y32", "float32", [2, 3]);
  const session = await createSession(await serializeModel(g.build()), { threads: 1 });
  try {
    const values = [0, 1, -1.5, 0.25, 100, -3]; // exact in float16, as are the results
    const bits = Uint16Array.from(values, float32ToFloat16Bits);
    const out = await session.run({ x: hostTensor("float16", bits, [2, 3]) });
    assert.equal(out.y!.type, "float16");
    assert.deepEqual(out.y!.dims, [2, 3]);
    assert.ok(out.y!.data instanceof Uint16Array, `got ${out.y!.data.constructor.name}`);
    const want = values.map((v) => v * 2 + 0.5);
    assert.deepEqual(Array.from(out.y!.data as Uint16Array, float16BitsToNumber), want);
    assert.deepEqual(Array.from(out.y32!.data as Float32Array), want);
  } finally {
    await session.release();
  }
});

Deno.test("OnnxSession.run() refuses float16 data that is not Uint16Array bits", async () => {
  const g = new GraphBuilder("f16");
  const x = g.input("x", "float16", [2]);
  g.output(g.op("Identity", [x]), "y", "float16", [2]);
  const session = await createSession(await serializeModel(g.build()), { threads: 1 });
  try {
    await assert.rejects(
      session.run({ x: hostTensor("float16", new Int16Array(2), [2]) }),
      (e: Error) => e instanceof TypeError && /Uint16Array/.test(e.message),
    );
  } finally {
    await session.release();
  }
});

Deno.test("OnnxSession.inputType() reads the declared element type of each input", async () => {
  const g = new GraphBuilder("types");
  const a = g.input("a", "int32", [2]);
  const b = g.input("b", "float16", [2]);
  g.output(g.op("Cast", [a], { to: 1 }), "a32", "float32", [2]);
  g.output(g.op("Cast", [b], { to: 1 }), "b32", "float32", [2]);
  const session = await createSession(await serializeModel(g.build()), { threads: 1 });
  try {
    assert.equal(session.inputType("a"), "int32");
    assert.equal(session.inputType("b"), "float16");
    assert.equal(session.inputType("missing"), undefined);
  } finally {
    await session.release();
  }
});
