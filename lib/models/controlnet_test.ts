import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import {
  assertClose,
  type GoldenArray,
  maxAbsDiff,
  readModelReference,
} from "../../tests/fixtures/golden.ts";
import { TINY_SD15_UNET, TINY_SD2_UNET, TINY_SDXL_UNET } from "../../tests/fixtures/configs.ts";
import { ModelNotFoundError } from "../errors.ts";
import { decodeImage } from "../image/codec.ts";
import type { OnnxModel } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { parseUnetConfig } from "./config.ts";
import {
  assertControlnetFitsUnet,
  buildControlnet,
  controlnetConditioningScales,
  controlnetResidualSpecs,
} from "./controlnet.ts";
import { type ControlnetConfig, modelBase, parseControlnetConfig } from "./controlnet_config.ts";
import { loadControlnet } from "./controlnet_loader.ts";
import { castWeights, memoryWeights } from "./layers.ts";
import {
  controlnetParameterShapes,
  createRandomControlnet,
  randomWeights,
  unetParameterShapes,
} from "./random.ts";
import { buildUnet, unetResidualSpecs } from "./unet.ts";

const SET = "tiny_sd_controlnet";

interface Stats {
  shape: number[];
  sum: number;
  abs_sum: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  first: number[];
}

interface Step {
  down: Array<GoldenArray | Stats>;
  mid: GoldenArray | Stats;
  unet_with_residuals?: GoldenArray;
}

interface Reference {
  raw: {
    cond_sha256_f32: string;
    cond_embedding: GoldenArray;
    t500: Step;
    t10: Step;
    t999: Step;
    "t500_scale0.5": Step & { conditioning_scale: number };
    t500_guess_mode: Step & { scales: number[] };
  };
}

type Outputs = Record<string, { data: Float32Array; dims: readonly number[] }>;

async function run(
  session: OnnxSession,
  feeds: Record<string, { data: Float32Array; dims: number[] }>,
): Promise<Outputs> {
  const hf: Record<string, ReturnType<typeof hostTensor>> = {};
  for (const [k, v] of Object.entries(feeds)) hf[k] = hostTensor("float32", v.data, v.dims);
  const out = await session.run(hf);
  const result: Outputs = {};
  for (const [k, v] of Object.entries(out)) {
    result[k] = { data: v.data as Float32Array, dims: v.dims };
  }
  return result;
}

async function sessionOf(model: OnnxModel): Promise<OnnxSession> {
  return await createSession(await serializeModel(model), { threads: 2 });
}

/** The control image as Diffusers' control_image_processor gives it: RGB / 255, [1, 3, H, W]. */
async function controlImage(name: string): Promise<{ data: Float32Array; dims: number[] }> {
  const image = await decodeImage(await Deno.readFile(sharedPath(`golden/models/${SET}/${name}`)));
  const plane = image.width * image.height;
  const data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) data[c * plane + i] = image.data[i * image.channels + c]! / 255;
  }
  return { data, dims: [1, 3, image.height, image.width] };
}

function isStats(x: GoldenArray | Stats): x is Stats {
  return (x as Stats).first !== undefined;
}

/** Compares a tensor with a reference: all values (1e-4), or the recorded statistics. */
function compare(actual: Float32Array, want: GoldenArray | Stats, label: string): void {
  if (!isStats(want)) {
    assertClose(actual, want.values, 1e-4, label);
    return;
  }
  assertClose(actual.subarray(0, want.first.length), want.first, 1e-4, `${label} first values`);
  let sum = 0, abs = 0, min = Infinity, max = -Infinity;
  for (const v of actual) {
    sum += v;
    abs += Math.abs(v);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const mean = sum / actual.length;
  let sq = 0;
  for (const v of actual) sq += (v - mean) ** 2;
  const std = Math.sqrt(sq / actual.length); // numpy .std(): population
  const diffs = {
    mean: Math.abs(mean - want.mean),
    std: Math.abs(std - want.std),
    min: Math.abs(min - want.min),
    max: Math.abs(max - want.max),
    absMean: Math.abs(abs - want.abs_sum) / actual.length,
  };
  console.log(`${label} stats: ${JSON.stringify(diffs)}`);
  for (const [k, d] of Object.entries(diffs)) {
    assert.ok(d <= 1e-4, `${label}: ${k} differs by ${d}`);
  }
}

Deno.test({
  name:
    "buildControlnet() matches Diffusers on tiny_sd_controlnet: embedding, residuals, UNet output, scale 0.5, guess mode",
  ignore: !hasShared,
  fn: async (t) => {
    const ref = readModelReference<Reference>(SET).raw;
    const dir = sharedPath(`golden/models/${SET}/controlnet`);
    const config = parseControlnetConfig(
      JSON.parse(await Deno.readTextFile(join(dir, "config.json"))),
    );
    assert.equal(config.base, "sd15");
    using file = await SafetensorsFile.open(join(dir, "diffusion_pytorch_model.safetensors"));
    const net = await sessionOf(
      buildControlnet(config, tensorSources(file), { conditioningEmbeddingOutput: true }),
    );
    const unetDir = sharedPath("golden/models/tiny_sd/pipeline/unet");
    const unetConfig = parseUnetConfig(
      JSON.parse(await Deno.readTextFile(join(unetDir, "config.json"))),
    );
    using unetFile = await SafetensorsFile.open(
      join(unetDir, "diffusion_pytorch_model.safetensors"),
    );
    const unet = await sessionOf(
      buildUnet(unetConfig, tensorSources(unetFile), { controlnetResiduals: true }),
    );
    try {
      const cond = await controlImage("control_edges.png");
      const sha = createHash("sha256").update(new Uint8Array(cond.data.buffer)).digest("hex");
      assert.equal(
        sha,
        ref.cond_sha256_f32,
        "control image tensor differs from Diffusers' preprocess",
      );
      const sample = { data: new TorchCpuGenerator(3).randn([1, 4, 16, 16]), dims: [1, 4, 16, 16] };
      const ehs = { data: new TorchCpuGenerator(4).randn([1, 77, 32]), dims: [1, 77, 32] };
      const specs = controlnetResidualSpecs(config);
      assert.equal(specs.length, 13);

      const step = async (t: number, scales: Float32Array, want: Step, label: string) => {
        const out = await run(net, {
          sample,
          timestep: { data: Float32Array.of(t), dims: [1] },
          encoder_hidden_states: ehs,
          controlnet_cond: cond,
          conditioning_scales: { data: scales, dims: [scales.length] },
        });
        specs.slice(0, -1).forEach((s, k) => {
          assert.deepEqual(out[s.name]!.dims, want.down[k]!.shape);
          compare(out[s.name]!.data, want.down[k]!, `${label} down ${k}`);
        });
        const mid = out["mid_block_additional_residual"]!;
        assert.deepEqual(mid.dims, want.mid.shape);
        compare(mid.data, want.mid, `${label} mid`);
        if (want.unet_with_residuals !== undefined) {
          const feeds: Record<string, { data: Float32Array; dims: number[] }> = {
            sample,
            timestep: { data: Float32Array.of(t), dims: [1] },
            encoder_hidden_states: ehs,
          };
          for (const s of specs) {
            feeds[s.name] = { data: out[s.name]!.data, dims: [...out[s.name]!.dims] };
          }
          const y = await run(unet, feeds);
          compare(y["out_sample"]!.data, want.unet_with_residuals, `${label} UNet with residuals`);
        }
        return out;
      };

      await t.step(
        "t=500: conditioning embedding, 12 down residuals, mid residual, UNet output",
        async () => {
          const out = await step(500, controlnetConditioningScales(config, 1), ref.t500, "t=500");
          compare(
            out["controlnet_cond_embedding"]!.data,
            ref.cond_embedding,
            "t=500 cond embedding",
          );
        },
      );
      await t.step("t=10 and t=999 (statistics), UNet output", async () => {
        await step(10, controlnetConditioningScales(config, 1), ref.t10, "t=10");
        await step(999, controlnetConditioningScales(config, 1), ref.t999, "t=999");
      });
      await t.step("t=500 at conditioning scale 0.5", async () => {
        const s = ref["t500_scale0.5"];
        assert.equal(s.conditioning_scale, 0.5);
        await step(500, controlnetConditioningScales(config, 0.5), s, "t=500 scale 0.5");
      });
      await t.step("t=500 in guess mode (logspace(-1, 0, 13) per residual)", async () => {
        const g = ref.t500_guess_mode;
        const scales = controlnetConditioningScales(config, 1, { guessMode: true });
        assertClose(scales, g.scales, 1e-7, "guess-mode scales");
        await step(500, scales, g, "t=500 guess mode");
      });
    } finally {
      await net.release();
      await unet.release();
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Random tiny nets (no golden data needed)

const CONDITIONING = { conditioning_embedding_out_channels: [8, 16, 16, 32] };
type Feeds = Record<string, { data: Float32Array; dims: number[] }>;

/** A ControlNet config made from a UNet config, as `ControlNetModel.from_unet` does. */
function netJson(unet: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { ...unet, ...CONDITIONING, ...extra };
}

function netFeeds(config: ControlnetConfig, batch: number, condBatch: number, side: number): Feeds {
  const gen = new TorchCpuGenerator(7);
  const cross = config.crossAttentionDim[0]!;
  const feeds: Feeds = {
    sample: { data: gen.randn([batch, 4, side, side]), dims: [batch, 4, side, side] },
    timestep: { data: Float32Array.of(500), dims: [1] },
    encoder_hidden_states: { data: gen.randn([batch, 5, cross]), dims: [batch, 5, cross] },
    controlnet_cond: {
      data: gen.rand([condBatch, 3, side * 8, side * 8]),
      dims: [condBatch, 3, side * 8, side * 8],
    },
  };
  const scales = controlnetConditioningScales(config, 1);
  feeds.conditioning_scales = { data: scales, dims: [scales.length] };
  if (config.additionEmbedType === "text_time") {
    const d = config.projectionClassEmbeddingsInputDim! - 6 * config.additionTimeEmbedDim!;
    feeds.text_embeds = { data: gen.randn([batch, d]), dims: [batch, d] };
    const ids = new Float32Array(batch * 6);
    for (let i = 0; i < batch; i++) ids.set([64, 64, 0, 0, 64, 64], i * 6);
    feeds.time_ids = { data: ids, dims: [batch, 6] };
  }
  return feeds;
}

function randomNet(json: Record<string, unknown>, seed: number) {
  return memoryWeights(randomWeights(controlnetParameterShapes(json), seed));
}

for (
  const [label, unetJson] of [
    ["SD 1.x", TINY_SD15_UNET],
    ["SD 2.x", TINY_SD2_UNET],
    ["SDXL", TINY_SDXL_UNET],
  ] as const
) {
  Deno.test(`buildControlnet() ${label}: residuals feed the UNet's inputs; zero scales give zero residuals`, async () => {
    const json = netJson(unetJson);
    const config = parseControlnetConfig(json);
    const unetConfig = parseUnetConfig(unetJson);
    assert.equal(config.base, modelBase(unetConfig));
    assertControlnetFitsUnet(config, unetConfig);
    const net = await sessionOf(buildControlnet(config, randomNet(json, 3)));
    const unet = await sessionOf(
      buildUnet(unetConfig, memoryWeights(randomWeights(unetParameterShapes(unetJson), 4)), {
        controlnetResiduals: true,
      }),
    );
    try {
      // Batch 2 with one control image, broadcast as Diffusers' duplicated image would be.
      const feeds = netFeeds(config, 2, 1, 8);
      const out = await run(net, feeds);
      const specs = unetResidualSpecs(unetConfig);
      assert.deepEqual(Object.keys(out).sort(), specs.map((s) => s.name).sort());
      const zeroScales = new Float32Array(specs.length);
      const zero = await run(net, {
        ...feeds,
        conditioning_scales: { data: zeroScales, dims: [specs.length] },
      });
      const unetFeeds: Feeds = {};
      const zeroFeeds: Feeds = {};
      for (const k of ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]) {
        if (feeds[k] !== undefined) unetFeeds[k] = zeroFeeds[k] = feeds[k]!;
      }
      for (const s of specs) {
        const side = Math.ceil(8 / s.downscale);
        assert.deepEqual(out[s.name]!.dims, [2, s.channels, side, side], s.name);
        assert.ok(zero[s.name]!.data.every((v) => v === 0), `${s.name} at scale 0`);
        unetFeeds[s.name] = { data: out[s.name]!.data, dims: [...out[s.name]!.dims] };
        zeroFeeds[s.name] = { data: zero[s.name]!.data, dims: [...zero[s.name]!.dims] };
      }
      const withNet = (await run(unet, unetFeeds)).out_sample!.data;
      const without = (await run(unet, zeroFeeds)).out_sample!.data;
      assert.ok(withNet.every(Number.isFinite));
      const moved = maxAbsDiff(withNet, without);
      assert.ok(moved > 1e-3, `the net moved the UNet output by only ${moved}`);
    } finally {
      await net.release();
      await unet.release();
    }
  });
}

Deno.test("buildControlnet() scales each residual by its conditioning_scales entry; one control image serves the batch", async () => {
  const json = netJson(TINY_SD15_UNET);
  const config = parseControlnetConfig(json);
  const net = await sessionOf(buildControlnet(config, randomNet(json, 5)));
  try {
    const one = await run(net, netFeeds(config, 2, 1, 8));
    const twoFeeds = netFeeds(config, 2, 2, 8);
    const cond = twoFeeds.controlnet_cond!;
    const half = cond.data.length / 2;
    cond.data.set(cond.data.subarray(0, half), half); // the same image twice
    const scales = Float32Array.from({ length: 9 }, (_, k) => 0.25 + 0.1 * k);
    const scaled = await run(net, {
      ...twoFeeds,
      conditioning_scales: { data: scales, dims: [9] },
    });
    controlnetResidualSpecs(config).forEach((s, k) => {
      const want = one[s.name]!.data.map((v) => v * scales[k]!);
      assertClose(scaled[s.name]!.data, want, 1e-6, `${s.name} x ${scales[k]!.toFixed(2)}`);
    });
  } finally {
    await net.release();
  }
});

Deno.test("buildControlnet() bgr nets flip the control image's channels; global_pool_conditions averages each residual", async () => {
  const json = netJson(TINY_SD15_UNET);
  const weights = randomNet(json, 6);
  const rgb = parseControlnetConfig(json);
  const bgr = parseControlnetConfig({ ...json, controlnet_conditioning_channel_order: "bgr" });
  const pool = parseControlnetConfig({ ...json, global_pool_conditions: true });
  assert.equal(pool.globalPoolConditions, true);
  // Guess mode does not scale shuffle nets per residual (Diffusers: `not global_pool_conditions`).
  assert.ok(
    controlnetConditioningScales(pool, 0.7, { guessMode: true }).every((s) =>
      s === Math.fround(0.7)
    ),
  );
  const feeds = netFeeds(rgb, 1, 1, 8);
  const flipped = new Float32Array(feeds.controlnet_cond!.data.length);
  const plane = flipped.length / 3;
  for (let c = 0; c < 3; c++) {
    flipped.set(feeds.controlnet_cond!.data.subarray(c * plane, (c + 1) * plane), (2 - c) * plane);
  }
  const [a, b, p] = [
    await sessionOf(buildControlnet(rgb, weights)),
    await sessionOf(buildControlnet(bgr, weights)),
    await sessionOf(buildControlnet(pool, weights)),
  ];
  try {
    const outRgb = await run(a, feeds);
    const outBgr = await run(b, {
      ...feeds,
      controlnet_cond: { data: flipped, dims: feeds.controlnet_cond!.dims },
    });
    const outPool = await run(p, feeds);
    for (const s of controlnetResidualSpecs(rgb)) {
      assertClose(outBgr[s.name]!.data, outRgb[s.name]!.data, 0, `bgr ${s.name}`);
      const [, c, h, w] = outRgb[s.name]!.dims as [number, number, number, number];
      assert.deepEqual(outPool[s.name]!.dims, [1, c, 1, 1]);
      const means = new Float32Array(c);
      for (let i = 0; i < c; i++) {
        let sum = 0;
        for (let j = 0; j < h * w; j++) sum += outRgb[s.name]!.data[i * h * w + j]!;
        means[i] = sum / (h * w);
      }
      assertClose(outPool[s.name]!.data, means, 1e-6, `pooled ${s.name}`);
    }
  } finally {
    await Promise.all([a.release(), b.release(), p.release()]);
  }
});

Deno.test("buildControlnet() float16 graph stays within float16 rounding of the float32 graph", async () => {
  const json = netJson(TINY_SD2_UNET);
  const config = parseControlnetConfig(json);
  const weights = randomNet(json, 8);
  const f32 = await sessionOf(buildControlnet(config, weights));
  const f16 = await sessionOf(
    buildControlnet(config, castWeights(weights, "float16"), { floatType: "float16" }),
  );
  try {
    const feeds = netFeeds(config, 1, 1, 8);
    const [a, b] = [await run(f32, feeds), await run(f16, feeds)];
    for (const s of controlnetResidualSpecs(config)) {
      const scale = Math.max(...a[s.name]!.data.map(Math.abs));
      assertClose(b[s.name]!.data, a[s.name]!.data, 2e-2 * scale, `float16 ${s.name}`);
    }
  } finally {
    await f32.release();
    await f16.release();
  }
});

Deno.test("buildControlnet() reports missing and leftover weights by name", () => {
  const json = netJson(TINY_SD15_UNET);
  const weights = randomWeights(controlnetParameterShapes(json), 1);
  weights.delete("controlnet_down_blocks.3.bias");
  weights.set("up_blocks.0.resnets.0.conv1.weight", { shape: [1], data: new Float32Array(1) });
  assert.throws(
    () => buildControlnet(parseControlnetConfig(json), memoryWeights(weights)),
    (e: Error) =>
      e.message.includes('"controlnet_down_blocks.3.bias"') &&
      e.message.includes('"up_blocks.0.resnets.0.conv1.weight"'),
  );
});

Deno.test("assertControlnetFitsUnet() refuses a net of another family in one line naming both", () => {
  const sdxlNet = parseControlnetConfig(netJson(TINY_SDXL_UNET));
  const sd15Unet = parseUnetConfig(TINY_SD15_UNET);
  assert.throws(
    () => assertControlnetFitsUnet(sdxlNet, sd15Unet, { controlnetName: '"canny-xl"' }),
    (e: Error) =>
      e instanceof RangeError && !e.message.includes("\n") && e.message.includes('"canny-xl"') &&
      e.message.includes("SDXL") && e.message.includes("SD 1.x"),
  );
  const narrow = parseControlnetConfig(
    netJson({ ...TINY_SD15_UNET, block_out_channels: [32, 32, 32, 32] }),
  );
  assert.throws(() => assertControlnetFitsUnet(narrow, sd15Unet), /residual channels/);
});

Deno.test("parseControlnetConfig() reads Diffusers' keys and refuses what the builder lacks", () => {
  const sd15 = parseControlnetConfig({ cross_attention_dim: 768 });
  assert.equal(sd15.base, "sd15");
  assert.deepEqual(sd15.conditioningEmbeddingOutChannels, [16, 32, 96, 256]);
  assert.equal(controlnetResidualSpecs(sd15).length, 13);
  assert.equal(sd15.timeEmbedDim, 1280);
  // ControlNetModel takes num_attention_heads when given (the UNet refuses it).
  const heads = parseControlnetConfig({ cross_attention_dim: 768, num_attention_heads: 4 });
  assert.deepEqual(heads.numAttentionHeads, [4, 4, 4, 4]);
  // UNet-only keys are ignored, as Diffusers' from_config does.
  assert.equal(
    parseControlnetConfig({ cross_attention_dim: 768, time_cond_proj_dim: 256 }).timeCondProjDim,
    null,
  );
  assert.throws(
    () => parseControlnetConfig({ class_embed_type: "timestep" }),
    /"class_embed_type"/,
  );
  assert.throws(() => parseControlnetConfig({ mid_block_type: null }), /"mid_block_type"/);
  assert.throws(
    () => parseControlnetConfig({ layers_per_block: [2, 2, 2, 2] }),
    /"layers_per_block"/,
  );
  assert.throws(
    () => parseControlnetConfig({ controlnet_conditioning_channel_order: "rbg" }),
    /channel_order/,
  );
  assert.throws(() => parseControlnetConfig({ block_out_channels: [320, 640] }), /ControlNetModel/);
});

Deno.test("createRandomControlnet() writes a Diffusers folder that loadControlnet() builds; missing nets are ModelNotFoundError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-random-controlnet-" });
  try {
    const json = netJson(TINY_SDXL_UNET);
    await createRandomControlnet(json, join(dir, "net"), { seed: 2 });
    const written = JSON.parse(await Deno.readTextFile(join(dir, "net", "config.json")));
    assert.equal(written._class_name, "ControlNetModel");
    const net = await loadControlnet(join(dir, "net"));
    try {
      assert.equal(net.config.base, "sdxl");
      assert.deepEqual(net.config, parseControlnetConfig(json));
      buildControlnet(net.config, net.weights);
    } finally {
      net.close();
    }
    await assert.rejects(() => loadControlnet(join(dir, "absent")), ModelNotFoundError);
    await Deno.mkdir(join(dir, "empty"));
    await assert.rejects(() => loadControlnet(join(dir, "empty")), /config\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
