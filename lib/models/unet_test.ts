import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { assertClose, type GoldenArray, readModelReference } from "../../tests/fixtures/golden.ts";
import type { OnnxModel } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor } from "../onnx/session.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { TINY_SD15_UNET, TINY_SD2_UNET, TINY_SDXL_UNET } from "../../tests/fixtures/configs.ts";
import { parseUnetConfig, type UnetConfig } from "./config.ts";
import { type AttentionKernel, memoryWeights } from "./layers.ts";
import { randomWeights, unetParameterShapes } from "./random.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { buildUnet, unetResidualSpecs } from "./unet.ts";

interface Reference {
  unet: {
    sample: GoldenArray;
    encoder_hidden_states: GoldenArray;
    out: Record<string, GoldenArray>;
  };
}

async function checkUnetParity(set: string, attention: AttentionKernel): Promise<void> {
  const dir = sharedPath(`golden/models/${set}/pipeline/unet`);
  const ref = readModelReference<Reference>(set);
  const config = parseUnetConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  using file = await SafetensorsFile.open(`${dir}/diffusion_pytorch_model.safetensors`);
  const model = buildUnet(config, tensorSources(file), { attention });
  const session = await createSession(await serializeModel(model), { threads: 2 });
  try {
    for (const t of ["10", "999"]) {
      const out = await session.run({
        sample: hostTensor(
          "float32",
          Float32Array.from(ref.unet.sample.values),
          ref.unet.sample.shape,
        ),
        timestep: hostTensor("float32", Float32Array.of(Number(t)), [1]),
        encoder_hidden_states: hostTensor(
          "float32",
          Float32Array.from(ref.unet.encoder_hidden_states.values),
          ref.unet.encoder_hidden_states.shape,
        ),
      });
      const want = ref.unet.out[t]!;
      assert.deepEqual(out.out_sample!.dims, want.shape);
      assertClose(
        out.out_sample!.data as Float32Array,
        want.values,
        1e-4,
        `${set} unet (${attention} attention) t=${t}`,
      );
    }
  } finally {
    await session.release();
  }
}

for (const attention of ["fused", "onnx"] as const) {
  Deno.test({
    name: `buildUnet() matches Diffusers on tiny_dummy at t=10 and t=999 (${attention} attention)`,
    ignore: !hasShared,
    fn: () => checkUnetParity("tiny_dummy", attention),
  });

  Deno.test({
    name:
      `buildUnet() matches Diffusers on tiny_sd (SD 1.x layout) at t=10 and t=999 (${attention})`,
    ignore: !hasShared,
    fn: () => checkUnetParity("tiny_sd", attention),
  });
}

function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

type Output = { data: Float32Array; dims: readonly number[] };
type Feeds = Record<string, { data: Float32Array; dims: number[] }>;

/** Builds a session for `model` and runs it on each feed set. */
async function runUnet(
  model: OnnxModel,
  ...feedSets: Feeds[]
): Promise<Array<{ data: Float32Array; dims: readonly number[] }>> {
  const session = await createSession(await serializeModel(model), { threads: 2 });
  try {
    const results = [];
    for (const feeds of feedSets) {
      const hf: Record<string, HostTensor> = {};
      for (const [k, v] of Object.entries(feeds)) hf[k] = hostTensor("float32", v.data, v.dims);
      const out = (await session.run(hf)).out_sample!;
      results.push({ data: out.data as Float32Array, dims: out.dims });
    }
    return results;
  } finally {
    await session.release();
  }
}

function tinyFeeds(config: UnetConfig, b: number, h: number, w: number, seq: number) {
  const feeds: Record<string, { data: Float32Array; dims: number[] }> = {
    sample: { data: seeded(b * config.inChannels * h * w, 1), dims: [b, config.inChannels, h, w] },
    timestep: { data: Float32Array.of(500), dims: [1] },
    encoder_hidden_states: {
      data: seeded(b * seq * config.crossAttentionDim[0]!, 2),
      dims: [b, seq, config.crossAttentionDim[0]!],
    },
  };
  if (config.additionEmbedType === "text_time") {
    const d = config.projectionClassEmbeddingsInputDim! - 6 * config.additionTimeEmbedDim!;
    feeds.text_embeds = { data: seeded(b * d, 3), dims: [b, d] };
    const ids = new Float32Array(b * 6);
    for (let i = 0; i < b; i++) ids.set([64, 64, 0, 0, 64, 64], i * 6);
    feeds.time_ids = { data: ids, dims: [b, 6] };
  }
  return feeds;
}

for (const [label, json] of [["SD 2.x", TINY_SD2_UNET], ["SDXL", TINY_SDXL_UNET]] as const) {
  Deno.test(`buildUnet() runs a ${label}-shaped UNet at odd sizes and any context length`, async () => {
    const config = parseUnetConfig(json);
    const weights = memoryWeights(randomWeights(unetParameterShapes(json), 11));
    const model = buildUnet(config, weights);
    const session = await createSession(await serializeModel(model), { threads: 2 });
    try {
      for (const [h, w, seq] of [[13, 11, 5], [8, 8, 77]]) {
        const feeds = tinyFeeds(config, 2, h!, w!, seq!);
        const hf: Record<string, HostTensor> = {};
        for (const [k, v] of Object.entries(feeds)) hf[k] = hostTensor("float32", v.data, v.dims);
        const out = (await session.run(hf)).out_sample!;
        assert.deepEqual(out.dims, [2, 4, h, w]);
        const data = out.data as Float32Array;
        assert.ok(data.every(Number.isFinite), `${label} ${h}x${w}: non-finite output`);
        const rms = Math.sqrt(data.reduce((s, v) => s + v * v, 0) / data.length);
        assert.ok(rms > 1e-3 && rms < 1e3, `${label} output rms ${rms}`);
      }
    } finally {
      await session.release();
    }
  });
}

Deno.test("buildUnet() with linear projections equals the conv-projection graph on the same weights", async () => {
  // A 1x1 conv is a per-pixel linear layer: SD 2.x's proj_in/proj_out [C, C] must give the
  // same numbers as SD 1.x's [C, C, 1, 1] (golden-checked above) when the weights agree.
  const convJson = { ...TINY_SD2_UNET, use_linear_projection: false };
  const weights = randomWeights(unetParameterShapes(convJson), 5);
  const linear = new Map(weights);
  for (const [name, t] of weights) {
    if (/\.proj_(in|out)\.weight$/.test(name)) {
      linear.set(name, { ...t, shape: t.shape.slice(0, 2) });
    }
  }
  const feeds = tinyFeeds(parseUnetConfig(convJson), 2, 8, 8, 7);
  const [a] = await runUnet(buildUnet(parseUnetConfig(convJson), memoryWeights(weights)), feeds);
  const [b] = await runUnet(
    buildUnet(parseUnetConfig(TINY_SD2_UNET), memoryWeights(linear)),
    feeds,
  );
  assertClose(b!.data, a!.data, 1e-5, "linear vs conv projections");
});

Deno.test("buildUnet() broadcasts one timestep and treats batch items independently", async () => {
  const config = parseUnetConfig(TINY_SDXL_UNET);
  const model = buildUnet(
    config,
    memoryWeights(randomWeights(unetParameterShapes(TINY_SDXL_UNET), 2)),
  );
  const one = tinyFeeds(config, 1, 8, 8, 4);
  // Batch of two copies with the timestep given per item.
  const two: Feeds = {};
  for (const [k, v] of Object.entries(one)) {
    const data = new Float32Array(v.data.length * 2);
    data.set(v.data);
    data.set(v.data, v.data.length);
    two[k] = { data, dims: [2, ...v.dims.slice(1)] };
  }
  two.timestep = { data: Float32Array.of(500, 500), dims: [2] };
  const [a, b] = await runUnet(model, one, two) as [Output, Output];
  assertClose(b.data.subarray(0, a.data.length), a.data, 1e-5, "batch item 0");
  assertClose(b.data.subarray(a.data.length), a.data, 1e-5, "batch item 1");
});

Deno.test("buildUnet() adds ControlNet residuals where Diffusers does", async () => {
  const json = TINY_SD15_UNET;
  const config = parseUnetConfig(json);
  const weights = memoryWeights(randomWeights(unetParameterShapes(json), 9));
  const [plain] = await runUnet(buildUnet(config, weights), tinyFeeds(config, 1, 8, 8, 4)) as [
    Output,
  ];
  const specs = unetResidualSpecs(config);
  // conv_in + 4 blocks x 1 resnet + 3 downsamplers, then the mid block.
  assert.equal(specs.length, 1 + 4 + 3 + 1);
  assert.deepEqual(specs.map((s) => s.downscale), [1, 1, 2, 2, 4, 4, 8, 8, 8]);
  const withResiduals = buildUnet(config, weights, { controlnetResiduals: true });
  const zeroFeeds = tinyFeeds(config, 1, 8, 8, 4);
  for (const s of specs) {
    const side = 8 / s.downscale;
    zeroFeeds[s.name] = {
      data: new Float32Array(s.channels * side * side),
      dims: [1, s.channels, side, side],
    };
  }
  const mid = specs[specs.length - 1]!;
  const midFeeds = { ...zeroFeeds };
  midFeeds[mid.name] = {
    data: new Float32Array(mid.channels).fill(1),
    dims: [1, mid.channels, 1, 1],
  };
  const [zero, shifted] = await runUnet(withResiduals, zeroFeeds, midFeeds) as [Output, Output];
  assertClose(zero.data, plain.data, 1e-6, "zero residuals");
  let moved = 0;
  for (let i = 0; i < plain.data.length; i++) {
    moved = Math.max(moved, Math.abs(shifted.data[i]! - plain.data[i]!));
  }
  assert.ok(moved > 1e-3, `a mid-block residual of 1 changed the output by only ${moved}`);
});

Deno.test("buildUnet() reports missing and misshapen weights by name", () => {
  const json = TINY_SD15_UNET;
  const weights = randomWeights(unetParameterShapes(json), 1);
  weights.delete("conv_in.bias");
  weights.set("conv_out.weight", { shape: [4, 32, 1, 1], data: new Float32Array(4 * 32) });
  weights.set("extra.weight", { shape: [1], data: new Float32Array(1) });
  assert.throws(
    () => buildUnet(parseUnetConfig(json), memoryWeights(weights)),
    (e: Error) =>
      e.message.includes('"conv_in.bias"') && e.message.includes('"conv_out.weight"') &&
      e.message.includes('"extra.weight"'),
  );
});

Deno.test("buildUnet() builds a 9-channel inpainting UNet from its config alone", async () => {
  const json = { ...TINY_SD15_UNET, in_channels: 9 };
  const config = parseUnetConfig(json);
  const shapes = unetParameterShapes(json);
  assert.deepEqual(shapes.get("conv_in.weight"), [32, 9, 3, 3]);
  const model = buildUnet(config, memoryWeights(randomWeights(shapes, 4)));
  const [out] = await runUnet(model, tinyFeeds(config, 1, 8, 8, 3)) as [Output];
  assert.deepEqual(out.dims, [1, 4, 8, 8]);
  assert.ok(out.data.every(Number.isFinite));
});
