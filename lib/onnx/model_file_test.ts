import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { GraphBuilder, type TensorSource } from "./graph.ts";
import { decodeModelProto } from "./proto.ts";
import { writeModel } from "./model_file.ts";
import { createSession, hostTensor } from "./session.ts";

/** Writes a minimal safetensors file holding the given F32 tensors; returns absolute offsets. */
function writeSafetensors(
  path: string,
  tensors: Record<string, { shape: number[]; data: Float32Array }>,
): Map<string, { offset: number; length: number }> {
  const header: Record<string, unknown> = {};
  let pos = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [pos, pos + t.data.byteLength] };
    pos += t.data.byteLength;
  }
  // An odd header length makes the tensor offsets unaligned, which ORT must accept.
  let json = JSON.stringify(header);
  if (json.length % 2 === 0) json += " ";
  const head = new TextEncoder().encode(json);
  const file = new Uint8Array(8 + head.length + pos);
  new DataView(file.buffer).setBigUint64(0, BigInt(head.length), true);
  file.set(head, 8);
  const offsets = new Map<string, { offset: number; length: number }>();
  let at = 8 + head.length;
  for (const [name, t] of Object.entries(tensors)) {
    file.set(new Uint8Array(t.data.buffer), at);
    offsets.set(name, { offset: at, length: t.data.byteLength });
    at += t.data.byteLength;
  }
  fs.writeFileSync(path, file);
  return offsets;
}

async function buildAndRun(
  weights: TensorSource,
  bias: TensorSource,
  modelPath: string,
  fileSources: "link" | "copy" = "link",
) {
  const g = new GraphBuilder("ext");
  const x = g.input("x", "float32", ["b", 300]);
  const w = g.initializer("linear.weight", weights);
  const b = g.initializer("linear.bias", bias);
  g.output(g.op("Gemm", [x, w, b], { transB: 1 }), "y");
  const written = await writeModel(g.build(), modelPath, { fileSources });
  const session = await createSession(written.path, { threads: 1 });
  try {
    const input = Float32Array.from({ length: 300 }, (_, i) => (i % 7) - 3);
    const out = await session.run({ x: hostTensor("float32", input, [1, 300]) });
    return { written, y: out.y!.data as Float32Array, input };
  } finally {
    await session.release();
  }
}

function expected(w: Float32Array, b: Float32Array, x: Float32Array): number[] {
  const rows = b.length;
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let s = b[r]!;
    for (let c = 0; c < x.length; c++) s += w[r * x.length + c]! * x[c]!;
    out.push(s);
  }
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

Deno.test("writeModel() points into a .safetensors in another folder through a hard link", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-ext-" });
  try {
    const w = Float32Array.from({ length: 2 * 300 }, (_, i) => Math.sin(i) / 10);
    const b = new Float32Array([0.25, -0.5]);
    fs.mkdirSync(join(tmp, "weights"));
    const st = join(tmp, "weights", "model.safetensors");
    const offsets = writeSafetensors(st, {
      "linear.bias": { shape: [2], data: b },
      "linear.weight": { shape: [2, 300], data: w },
    });
    const wo = offsets.get("linear.weight")!;
    assert.notEqual(wo.offset % 4, 0, "the test wants an unaligned offset");
    const { written, y, input } = await buildAndRun(
      { dtype: "float32", shape: [2, 300], file: st, ...wo },
      { dtype: "float32", shape: [2], file: st, ...offsets.get("linear.bias")! },
      join(tmp, "cache", "model.onnx"),
    );
    const diff = maxDiff(y, expected(w, b, input));
    assert.ok(diff < 1e-5, `maxdiff ${diff}`);
    assert.equal(written.bytesReferenced, 2408);
    assert.equal(written.bytesWritten, 0);
    assert.equal(written.dataFiles.length, 1);
    const link = fs.statSync(written.dataFiles[0]!);
    assert.equal(link.ino, fs.statSync(st).ino, "a hard link, not a copy");
    const proto = decodeModelProto(fs.readFileSync(written.path));
    const init = proto.graph.initializer.find((t) => t.name === "linear.weight")!;
    assert.equal(init.dataLocation, 1);
    assert.equal(init.rawData, undefined);
    assert.ok(fs.statSync(written.path).size < 1000, "no weight bytes inside the .onnx");
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("writeModel() writes computed tensors to a separate data file", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-ext-" });
  try {
    const w = Float32Array.from({ length: 2 * 300 }, (_, i) => Math.cos(i) / 10);
    const b = new Float32Array([1, 2]);
    let loads = 0;
    const { written, y, input } = await buildAndRun(
      { dtype: "float32", shape: [2, 300], load: () => (loads++, w) },
      { dtype: "float32", shape: [2], data: b },
      join(tmp, "m", "model.onnx"),
    );
    assert.equal(loads, 1);
    const diff = maxDiff(y, expected(w, b, input));
    assert.ok(diff < 1e-5, `maxdiff ${diff}`);
    assert.deepEqual(written.dataFiles, [join(tmp, "m", "model.onnx.data")]);
    assert.equal(fs.statSync(written.dataFiles[0]!).size, 2400);
    assert.equal(written.bytesWritten, 2408);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("writeModel() copies file regions when asked and refuses wrong sizes", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-ext-" });
  try {
    const w = Float32Array.from({ length: 600 }, (_, i) => (i % 5) / 7);
    const b = new Float32Array([3, 4]);
    const st = join(tmp, "a.safetensors");
    const offsets = writeSafetensors(st, {
      "linear.weight": { shape: [2, 300], data: w },
      "linear.bias": { shape: [2], data: b },
    });
    const { written, y, input } = await buildAndRun(
      { dtype: "float32", shape: [2, 300], file: st, ...offsets.get("linear.weight")! },
      { dtype: "float32", shape: [2], file: st, ...offsets.get("linear.bias")! },
      join(tmp, "c", "model.onnx"),
      "copy",
    );
    assert.ok(maxDiff(y, expected(w, b, input)) < 1e-5);
    assert.equal(written.bytesReferenced, 0);
    assert.equal(written.bytesWritten, 2408);
    const bad = new GraphBuilder("bad");
    bad.input("x", "float32", [1]);
    assert.throws(
      () => bad.initializer("w", { dtype: "float32", shape: [3], file: st, offset: 8, length: 8 }),
      /file region of 8 bytes, float32 \[3\] needs 12/,
    );
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("writeModel() references 3 GiB of weights at offsets past 2^31 (sparse file)", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-big-" });
  try {
    const file = join(tmp, "big.bin");
    const n = 256 * 1024 * 1024; // float32 elements per tensor: 1 GiB
    const fd = fs.openSync(file, "w");
    try {
      fs.ftruncateSync(fd, 12 + 3 * n * 4); // sparse: no disk blocks for the zeros
      for (let t = 0; t < 3; t++) {
        fs.writeSync(fd, new Float32Array([t + 1.5]), 0, 4, 12 + t * n * 4 + 7 * 4);
      }
    } finally {
      fs.closeSync(fd);
    }
    const g = new GraphBuilder("big");
    const idx = g.input("idx", "int64", [1]);
    const picks = [0, 1, 2].map((t) => {
      const w = g.initializer(`w${t}`, {
        dtype: "float32",
        shape: [n],
        file,
        offset: 12 + t * n * 4,
        length: n * 4,
      });
      return g.op("Gather", [w, idx], { axis: 0 });
    });
    g.output(g.op("Concat", picks, { axis: 0 }), "y");
    const written = await writeModel(g.build(), join(tmp, "m", "model.onnx"));
    assert.equal(written.bytesReferenced, 3 * 2 ** 30);
    assert.ok(fs.statSync(written.path).size < 2000);
    const session = await createSession(written.path, { threads: 1 });
    try {
      const out = await session.run({ idx: hostTensor("int64", new BigInt64Array([7n]), [1]) });
      assert.deepEqual(Array.from(out.y!.data as Float32Array), [1.5, 2.5, 3.5]);
    } finally {
      await session.release();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

Deno.test("writeModel() beside the weights references the file by name, with no link", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "denoise-ext-" });
  try {
    const w = Float32Array.from({ length: 600 }, (_, i) => ((i * 7) % 11) / 13);
    const b = new Float32Array([0, 1]);
    const st = join(tmp, "model.safetensors");
    const offsets = writeSafetensors(st, {
      "linear.weight": { shape: [2, 300], data: w },
      "linear.bias": { shape: [2], data: b },
    });
    const { written, y, input } = await buildAndRun(
      { dtype: "float32", shape: [2, 300], file: st, ...offsets.get("linear.weight")! },
      { dtype: "float32", shape: [2], file: st, ...offsets.get("linear.bias")! },
      join(tmp, "model.onnx"),
    );
    assert.ok(maxDiff(y, expected(w, b, input)) < 1e-5);
    assert.deepEqual(written.dataFiles, []);
    assert.deepEqual(fs.readdirSync(tmp).sort(), ["model.onnx", "model.safetensors"]);
    const init = decodeModelProto(fs.readFileSync(written.path)).graph.initializer[0]!;
    assert.equal(init.externalData![0]!.value, "model.safetensors");
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
