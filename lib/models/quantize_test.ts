import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { readModelReference } from "../../tests/fixtures/golden.ts";
import { GraphBuilder, type TensorSource } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { buildClipTextModel, parseClipTextConfig } from "./clip_text.ts";
import { parseUnetConfig } from "./config.ts";
import { quantizedConv, quantizedLinear, quantizeRows } from "./quantize.ts";
import { buildUnet } from "./unet.ts";

function seeded(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = scale * (s / 2 ** 31 - 1);
  }
  return out;
}

/** Signal-to-noise ratio of `got` against `want` in dB. */
function snr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < want.length; i++) {
    signal += want[i]! ** 2;
    noise += (got[i]! - want[i]!) ** 2;
  }
  return noise === 0 ? Infinity : 10 * Math.log10(signal / noise);
}

Deno.test("quantizeRows() keeps each row's largest weight exact and rounds the rest", () => {
  const w = Float32Array.of(0.5, -1, 0.25, 0, 0, 0, 3, 1.5, -2.999);
  const { q, scale } = quantizeRows(w, 3, 3);
  assert.deepEqual(Array.from(q), [64, -127, 32, 0, 0, 0, 127, 64, -127]);
  assert.deepEqual(Array.from(scale), [1 / 127, 1, 3 / 127].map(Math.fround));
  for (let r = 0; r < 3; r++) {
    for (let i = 0; i < 3; i++) {
      const err = Math.abs(q[r * 3 + i]! * scale[r]! - w[r * 3 + i]!);
      assert.ok(err <= scale[r]! / 2 + 1e-7, `row ${r} col ${i}: error ${err}`);
    }
  }
  assert.throws(() => quantizeRows(Float32Array.of(1, NaN), 1, 2), RangeError);
  assert.throws(() => quantizeRows(new Float32Array(3), 2, 2), RangeError);
});

/**
 * Minimum SNR of one int8 layer against float32 on uniform random inputs and weights. Measured:
 * 44.4-45.9 dB over the cases below (8-bit activations and weights each give about 48 dB).
 */
const LAYER_MIN_SNR_DB = 40;

Deno.test("quantizedLinear() matches a float32 Gemm within the int8 noise", async () => {
  for (const [n, inF, outF] of [[5, 48, 24], [64, 96, 160]] as const) {
    const w = seeded(outF * inF, 1, 1 / Math.sqrt(inF));
    const b = seeded(outF, 2, 0.1);
    const x = seeded(n * inF, 3);
    const weight: TensorSource = { dtype: "float32", shape: [outF, inF], data: w };
    const g = new GraphBuilder("q");
    const xv = g.input("x", "float32", [n, inF]);
    const bias = g.constant(b, "float32", [outF]);
    g.output(quantizedLinear(g, xv, { name: "fc.weight", weight, bias }, inF, outF), "q");
    g.output(g.op("Gemm", [xv, g.constant(w, "float32", [outF, inF]), bias], { transB: 1 }), "f");
    const session = await createSession(await serializeModel(g.build()), {
      threads: 1,
      optimizationLevel: "extended",
    });
    const out = await session.run({ x: hostTensor("float32", x, [n, inF]) });
    await session.release();
    const db = snr(out.q!.data as Float32Array, out.f!.data as Float32Array);
    console.log(`linear ${n}x${inF}->${outF}: SNR ${db.toFixed(1)} dB`);
    assert.ok(db >= LAYER_MIN_SNR_DB, `SNR ${db} dB`);
  }
});

Deno.test("quantizedConv() matches a float32 Conv (kernels 1 and 3, strides 1 and 2)", async () => {
  const cases = [
    { c: 8, o: 16, h: 9, w: 7, k: 3, stride: 1, pad: 1 },
    { c: 8, o: 24, h: 9, w: 8, k: 3, stride: 2, pad: 1 },
    { c: 16, o: 16, h: 6, w: 5, k: 1, stride: 1, pad: 0 },
    { c: 4, o: 16, h: 7, w: 7, k: 3, stride: 1, pad: 0 },
  ];
  for (const t of cases) {
    const inner = t.c * t.k * t.k;
    const w = seeded(t.o * inner, 4, 1 / Math.sqrt(inner));
    const b = seeded(t.o, 5, 0.1);
    const x = seeded(2 * t.c * t.h * t.w, 6);
    const weight: TensorSource = { dtype: "float32", shape: [t.o, t.c, t.k, t.k], data: w };
    const g = new GraphBuilder("q");
    const xv = g.input("x", "float32", [2, t.c, "h", "w"]);
    const bias = g.constant(b, "float32", [t.o]);
    const opts = { kernel: t.k, stride: t.stride, padding: t.pad };
    g.output(quantizedConv(g, xv, { name: "conv.weight", weight, bias }, t.c, t.o, opts), "q");
    g.output(
      g.op("Conv", [xv, g.constant(w, "float32", [t.o, t.c, t.k, t.k]), bias], {
        kernel_shape: [t.k, t.k],
        strides: [t.stride, t.stride],
        pads: [t.pad, t.pad, t.pad, t.pad],
      }),
      "f",
    );
    const session = await createSession(await serializeModel(g.build()), {
      threads: 1,
      optimizationLevel: "extended",
    });
    const out = await session.run({ x: hostTensor("float32", x, [2, t.c, t.h, t.w]) });
    await session.release();
    assert.deepEqual(out.q!.dims, out.f!.dims);
    const db = snr(out.q!.data as Float32Array, out.f!.data as Float32Array);
    console.log(`conv ${JSON.stringify(t)}: SNR ${db.toFixed(1)} dB, output [${out.q!.dims}]`);
    assert.ok(db >= LAYER_MIN_SNR_DB, `SNR ${db} dB`);
  }
});

/**
 * Minimum SNR of tiny_sd's int8 UNet output against its float32 output at t=500 (random weights,
 * 32-64 channels, every layer but conv_in/conv_out quantised). Measured: 30.1 dB.
 */
const UNET_MIN_SNR_DB = 26;
/** The same for tiny_sd's text encoder (32 wide, 3 layers). Measured: 33.5-35.3 dB. */
const TEXT_MIN_SNR_DB = 28;

Deno.test({
  name: `int8 tiny_sd UNet stays within ${UNET_MIN_SNR_DB} dB SNR of float32`,
  ignore: !hasShared,
  fn: async () => {
    const dir = sharedPath("golden/models/tiny_sd/pipeline/unet");
    // deno-lint-ignore no-explicit-any
    const ref = readModelReference<any>("tiny_sd");
    const config = parseUnetConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
    using file = await SafetensorsFile.open(`${dir}/diffusion_pytorch_model.safetensors`);
    const feeds = {
      sample: hostTensor(
        "float32",
        Float32Array.from(ref.unet.sample.values),
        ref.unet.sample.shape,
      ),
      timestep: hostTensor("float32", Float32Array.of(500), [1]),
      encoder_hidden_states: hostTensor(
        "float32",
        Float32Array.from(ref.unet.encoder_hidden_states.values),
        ref.unet.encoder_hidden_states.shape,
      ),
    };
    const outs: Float32Array[] = [];
    for (const quantize of [undefined, "int8"] as const) {
      const model = buildUnet(config, tensorSources(file), { quantize });
      if (quantize !== undefined) {
        const types = new Set(model.proto.graph.node.map((n) => n.opType));
        assert.ok(types.has("MatMulInteger") && types.has("DynamicQuantizeLinear"));
        // Only conv_in (4 channels in) and conv_out (4 out) stay float.
        assert.equal(model.proto.graph.node.filter((n) => n.opType === "Conv").length, 2);
        assert.equal(model.proto.graph.node.filter((n) => n.opType === "Gemm").length, 0);
      }
      const session = await createSession(await serializeModel(model), {
        threads: 2,
        optimizationLevel: "extended",
      });
      outs.push((await session.run(feeds)).out_sample!.data as Float32Array);
      await session.release();
    }
    const db = snr(outs[1]!, outs[0]!);
    console.log(`tiny_sd UNet int8 vs fp32 at t=500: SNR ${db.toFixed(1)} dB`);
    assert.ok(db >= UNET_MIN_SNR_DB, `SNR ${db} dB`);
  },
});

Deno.test({
  name: `int8 tiny_sd text encoder stays within ${TEXT_MIN_SNR_DB} dB SNR of float32`,
  ignore: !hasShared,
  fn: async () => {
    const dir = "golden/models/tiny_sd/pipeline/text_encoder";
    const config = parseClipTextConfig(readSharedJson(`${dir}/config.json`));
    using file = await SafetensorsFile.open(sharedPath(`${dir}/model.safetensors`));
    const ids = BigInt64Array.from([49406, 320, 1125, 539, 320, 2368, 49407], (v) => BigInt(v));
    const outs: Float32Array[] = [];
    for (const quantize of [undefined, "int8"] as const) {
      const model = buildClipTextModel(config, tensorSources(file), { quantize });
      const session = await createSession(await serializeModel(model), { threads: 1 });
      const out = await session.run({ input_ids: hostTensor("int64", ids, [1, ids.length]) });
      outs.push(out.last_hidden_state!.data as Float32Array);
      await session.release();
    }
    const db = snr(outs[1]!, outs[0]!);
    console.log(`tiny_sd text encoder int8 vs fp32: SNR ${db.toFixed(1)} dB`);
    assert.ok(db >= TEXT_MIN_SNR_DB, `SNR ${db} dB`);
  },
});

Deno.test("quantised graphs refuse float16 weights", () => {
  const config = parseUnetConfig({
    block_out_channels: [32],
    layers_per_block: 1,
    down_block_types: ["DownBlock2D"],
    up_block_types: ["UpBlock2D"],
    norm_num_groups: 8,
  });
  assert.throws(
    () => buildUnet(config, new Map(), { floatType: "float16", quantize: "int8" }),
    (e: Error) => e instanceof TypeError && /float32/.test(e.message),
  );
});
