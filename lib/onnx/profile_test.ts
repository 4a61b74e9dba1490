import assert from "node:assert/strict";
import { GraphBuilder } from "./graph.ts";
import { serializeModel } from "./model_file.ts";
import { profileTable, readProfile, summariseProfile } from "./profile.ts";
import { createSession, hostTensor } from "./session.ts";

Deno.test("summariseProfile() sums one run's kernel time per op type", () => {
  const s = summariseProfile([
    { cat: "Session", name: "model_run", ts: 0, dur: 100 },
    { cat: "Node", name: "a_kernel_time", ts: 10, dur: 50, args: { op_name: "Conv" } },
    { cat: "Node", name: "a_fence_before", ts: 9, dur: 1, args: { op_name: "Conv" } },
    { cat: "Session", name: "model_run", ts: 200, dur: 100 },
    { cat: "Node", name: "a_kernel_time", ts: 210, dur: 30, args: { op_name: "Conv" } },
    { cat: "Node", name: "b_kernel_time", ts: 250, dur: 10, args: { op_name: "Add" } },
    { cat: "Node", name: "c_kernel_time", ts: 260, dur: 30, args: { op_name: "Conv" } },
  ]);
  assert.equal(s.runs, 2);
  assert.deepEqual(s.opTypes.map((o) => [o.opType, o.ms, o.count]), [
    ["Conv", 0.06, 2],
    ["Add", 0.01, 1],
  ]);
  assert.ok(Math.abs(s.opTypes[0]!.share - 60 / 70) < 1e-12);
  assert.equal(summariseProfile([], {}).opTypes.length, 0);
  assert.throws(
    () => summariseProfile([{ cat: "Session", name: "model_run" }], { run: 3 }),
    RangeError,
  );
});

Deno.test("a session with profilePrefix writes a trace that readProfile() finds", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const g = new GraphBuilder("p");
    const x = g.input("x", "float32", [4, 8]);
    const w = g.constant(new Float32Array(64).fill(0.5), "float32", [8, 8]);
    g.output(g.op("Relu", [g.op("MatMul", [x, w])]), "y");
    const prefix = `${dir}/trace`;
    const session = await createSession(await serializeModel(g.build()), {
      threads: 1,
      profilePrefix: prefix,
    });
    const feeds = { x: hostTensor("float32", new Float32Array(32).fill(1), [4, 8]) };
    await session.run(feeds);
    await session.run(feeds);
    session.endProfiling();
    await session.release();
    const summary = summariseProfile(await readProfile(prefix));
    assert.equal(summary.runs, 2);
    const types = summary.opTypes.map((o) => o.opType).sort();
    assert.ok(types.includes("MatMul") || types.includes("FusedMatMul"), `got ${types}`);
    assert.match(profileTable(summary), /\| \*\*all kernels\*\* \|/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
