import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { assertClose, maxAbsDiff, readModelReference } from "../../tests/fixtures/golden.ts";
import { TINY_SD15_UNET, TINY_SDXL_UNET } from "../../tests/fixtures/configs.ts";
import type { OnnxModel, TensorSource } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { framesToVideo, videoToFrames } from "../tensor/frames.ts";
import { parseUnetConfig } from "./config.ts";
import { type AttentionKernel, type GraphFloatType, memoryWeights } from "./layers.ts";
import {
  assertMotionFits,
  type MotionConfig,
  motionParameterShapes,
  parseMotionConfig,
  sinusoidalPositions,
} from "./motion.ts";
import { openMotionAdapter } from "./motion_adapter.ts";
import { randomWeights, unetParameterShapes } from "./random.ts";
import { createRandomMotionAdapter, randomMotionWeights } from "./random_motion.ts";
import { buildUnet } from "./unet.ts";

interface AnimateDiffReference {
  unet_single: {
    sample: { shape: number[]; values: number[] };
    encoder_hidden_states: { shape: number[]; values: number[] };
    t: number;
    out: { shape: number[]; values: number[] };
  };
}

type Feeds = Record<string, HostTensor>;

async function runAll(model: OnnxModel, ...feedSets: Feeds[]): Promise<Float32Array[]> {
  const session = await createSession(await serializeModel(model), { threads: 2 });
  try {
    const out: Float32Array[] = [];
    for (const feeds of feedSets) {
      out.push((await session.run(feeds)).out_sample!.data as Float32Array);
    }
    return out;
  } finally {
    await session.release();
  }
}

function frames(n: number): HostTensor {
  return hostTensor("int64", BigInt64Array.of(BigInt(n)), [1]);
}

/**
 * The reference UNetMotionModel pass (tiny_sd UNet + the tiny MotionAdapter, t=500), within
 * `tolerance` of Diffusers' output; returns the maxdiff.
 */
async function goldenPass(
  motion: { config: MotionConfig; weights: ReadonlyMap<string, TensorSource> },
  options: { attention: AttentionKernel; floatType: GraphFloatType },
  tolerance: number,
  label: string,
): Promise<number> {
  const ref = readModelReference<AnimateDiffReference>("tiny_sd_animatediff").unet_single;
  const dir = sharedPath("golden/models/tiny_sd/pipeline/unet");
  const config = parseUnetConfig(JSON.parse(await Deno.readTextFile(join(dir, "config.json"))));
  using file = await SafetensorsFile.open(join(dir, "diffusion_pytorch_model.safetensors"));
  const weights = tensorSources(file, { floatType: options.floatType });
  const model = buildUnet(config, weights, { ...options, motion });
  const [b, c, f, h, w] = ref.sample.shape as [number, number, number, number, number];
  const [out] = await runAll(model, {
    sample: hostTensor(
      "float32",
      videoToFrames(Float32Array.from(ref.sample.values), ref.sample.shape),
      [b * f, c, h, w],
    ),
    timestep: hostTensor("float32", Float32Array.of(ref.t), [1]),
    encoder_hidden_states: hostTensor(
      "float32",
      Float32Array.from(ref.encoder_hidden_states.values),
      ref.encoder_hidden_states.shape,
    ),
    num_frames: frames(f),
  });
  return assertClose(framesToVideo(out!, ref.out.shape), ref.out.values, tolerance, label);
}

for (const attention of ["fused", "onnx"] as const) {
  Deno.test({
    name: `buildUnet({ motion }) matches Diffusers' UNetMotionModel on tiny_sd_animatediff, ` +
      `(1,4,8,16,16) at t=500 (${attention} attention)`,
    ignore: !hasShared,
    fn: async () => {
      using adapter = await openMotionAdapter(
        sharedPath("golden/models/tiny_sd_animatediff/motion_adapter"),
      );
      assert.equal(adapter.layout, "diffusers");
      assert.deepEqual(adapter.config.blockOutChannels, [32, 32, 32, 64]);
      assert.equal(adapter.config.maxSeqLength, 32);
      assert.equal(adapter.config.useMotionMidBlock, true);
      const options = { attention, floatType: "float32" } as const;
      await goldenPass(
        adapter,
        options,
        1e-4,
        `UNetMotionModel tiny_sd_animatediff (${attention})`,
      );
    },
  });
}

Deno.test({
  name: 'buildUnet({ motion, floatType: "float16" }) stays within float16 error of Diffusers',
  ignore: !hasShared,
  fn: async () => {
    using adapter = await openMotionAdapter(
      sharedPath("golden/models/tiny_sd_animatediff/motion_adapter"),
      { floatType: "float16" },
    );
    // |out| <= 1.76 here: 5e-3 relative, as float16_test.ts allows the plain UNet.
    const options = { attention: "fused", floatType: "float16" } as const;
    const diff = await goldenPass(adapter, options, 5e-3 * 1.76, "UNetMotionModel float16");
    assert.ok(diff > 1e-5, "float32-exact: was float16 used?");
  },
});

// ---------------------------------------------------------------------------------------------
// Tiny random model: the frames-as-batch interface

const TINY_MOTION = {
  block_out_channels: [32, 32, 32, 64],
  motion_layers_per_block: 1,
  motion_max_seq_length: 6,
  motion_num_attention_heads: 4,
};

function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function tinyMotionUnet(): OnnxModel {
  const unet = parseUnetConfig(TINY_SD15_UNET);
  const config = parseMotionConfig(TINY_MOTION);
  const weights = memoryWeights(randomWeights(unetParameterShapes(TINY_SD15_UNET), 0));
  const motion = { config, weights: memoryWeights(randomMotionWeights(config, 1)) };
  return buildUnet(unet, weights, { motion });
}

/** Repeats each of `rows` rows of `x` `times` times (torch repeat_interleave). */
function repeatRows(x: Float32Array, rows: number, times: number): Float32Array {
  const size = x.length / rows;
  const out = new Float32Array(x.length * times);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < times; k++) {
      out.set(x.subarray(r * size, (r + 1) * size), (r * times + k) * size);
    }
  }
  return out;
}

Deno.test("buildUnet({ motion }): clips are independent, conditioning per clip equals per frame", async () => {
  const [clips, f, h, w, seq, ctx] = [2, 4, 8, 8, 5, 32];
  const frameSize = 4 * h * w;
  const sample = seeded(clips * f * frameSize, 1);
  const ehs = seeded(clips * seq * ctx, 2);
  const both: Feeds = {
    sample: hostTensor("float32", sample, [clips * f, 4, h, w]),
    timestep: hostTensor("float32", Float32Array.of(400, 600), [clips]),
    encoder_hidden_states: hostTensor("float32", ehs, [clips, seq, ctx]),
    num_frames: frames(f),
  };
  const perFrame: Feeds = {
    ...both,
    timestep: hostTensor("float32", repeatRows(Float32Array.of(400, 600), 2, f), [clips * f]),
    encoder_hidden_states: hostTensor("float32", repeatRows(ehs, clips, f), [clips * f, seq, ctx]),
  };
  const clip = (k: number, t: number): Feeds => ({
    sample: hostTensor("float32", sample.slice(k * f * frameSize, (k + 1) * f * frameSize), [
      f,
      4,
      h,
      w,
    ]),
    timestep: hostTensor("float32", Float32Array.of(t), [1]),
    encoder_hidden_states: hostTensor("float32", ehs.slice(k * seq * ctx, (k + 1) * seq * ctx), [
      1,
      seq,
      ctx,
    ]),
    num_frames: frames(f),
  });
  // Frame 0 changed: every frame of its clip changes (attention over frames), the other clip not.
  const moved = sample.slice();
  for (let i = 0; i < frameSize; i++) moved[i] = moved[i]! + 0.5;
  const nudged: Feeds = { ...both, sample: hostTensor("float32", moved, [clips * f, 4, h, w]) };
  const [a, b, c0, c1, n] = await runAll(
    tinyMotionUnet(),
    both,
    perFrame,
    clip(0, 400),
    clip(1, 600),
    nudged,
  );
  assert.equal(a!.length, clips * f * frameSize);
  assertClose(b!, a!, 1e-6, "per-frame vs per-clip conditioning");
  const half = f * frameSize;
  assertClose(c0!, a!.subarray(0, half), 1e-5, "clip 0 alone vs in a batch of 2");
  assertClose(c1!, a!.subarray(half), 1e-5, "clip 1 alone vs in a batch of 2");
  const lastFrame = maxAbsDiff(
    n!.subarray(half - frameSize, half),
    a!.subarray(half - frameSize, half),
  );
  console.log(`frame 3 moves by ${lastFrame.toExponential(3)} when frame 0 changes`);
  assert.ok(lastFrame > 1e-3, "the motion modules do not mix frames");
  assert.equal(maxAbsDiff(n!.subarray(half), a!.subarray(half)), 0);
});

Deno.test("buildUnet({ motion }) on an SDXL-shaped UNet (mm_sdxl layout): text_embeds and time_ids per clip", async () => {
  const unet = parseUnetConfig(TINY_SDXL_UNET);
  const config = parseMotionConfig({
    block_out_channels: [32, 64, 64],
    use_motion_mid_block: false,
    motion_max_seq_length: 4,
  });
  const weights = memoryWeights(randomWeights(unetParameterShapes(TINY_SDXL_UNET), 0));
  const motion = { config, weights: memoryWeights(randomMotionWeights(config, 1)) };
  const [clips, f, h, w] = [2, 3, 8, 8];
  const ids = Float32Array.of(64, 64, 0, 0, 64, 64, 128, 128, 0, 0, 128, 128);
  const textEmbeds = seeded(clips * 32, 3);
  const ehs = seeded(clips * 7 * 64, 4);
  const perClip: Feeds = {
    sample: hostTensor("float32", seeded(clips * f * 4 * h * w, 5), [clips * f, 4, h, w]),
    timestep: hostTensor("float32", Float32Array.of(999), [1]),
    encoder_hidden_states: hostTensor("float32", ehs, [clips, 7, 64]),
    text_embeds: hostTensor("float32", textEmbeds, [clips, 32]),
    time_ids: hostTensor("float32", ids, [clips, 6]),
    num_frames: frames(f),
  };
  const perFrame: Feeds = {
    ...perClip,
    encoder_hidden_states: hostTensor("float32", repeatRows(ehs, clips, f), [clips * f, 7, 64]),
    text_embeds: hostTensor("float32", repeatRows(textEmbeds, clips, f), [clips * f, 32]),
    time_ids: hostTensor("float32", repeatRows(ids, clips, f), [clips * f, 6]),
  };
  const [a, b] = await runAll(buildUnet(unet, weights, { motion }), perClip, perFrame);
  assert.ok(a!.every(Number.isFinite));
  assertClose(b!, a!, 1e-6, "SDXL motion UNet, per-frame vs per-clip conditioning");
});

Deno.test("buildUnet({ motion }) refuses more frames than the module's position table", async () => {
  const f = TINY_MOTION.motion_max_seq_length + 1;
  const session = await createSession(await serializeModel(tinyMotionUnet()), { threads: 1 });
  try {
    await assert.rejects(() =>
      session.run({
        sample: hostTensor("float32", seeded(f * 4 * 64, 7), [f, 4, 8, 8]),
        timestep: hostTensor("float32", Float32Array.of(10), [1]),
        encoder_hidden_states: hostTensor("float32", seeded(77 * 32, 6), [1, 77, 32]),
        num_frames: frames(f),
      })
    );
  } finally {
    await session.release();
  }
});

Deno.test("buildUnet({ motion }) names the missing, misshapen and unused motion weights", () => {
  const unet = parseUnetConfig(TINY_SD15_UNET);
  const config = parseMotionConfig(TINY_MOTION);
  const weights = memoryWeights(randomWeights(unetParameterShapes(TINY_SD15_UNET), 0));
  const motion = memoryWeights(randomMotionWeights(config, 1));
  const mm = "up_blocks.3.motion_modules.1";
  motion.delete(`${mm}.proj_in.weight`);
  motion.set(`${mm}.norm.weight`, { dtype: "float32", shape: [3], data: new Float32Array(3) });
  motion.set("mid_block.motion_modules.1.norm.weight", motion.get(`${mm}.norm.bias`)!);
  assert.throws(
    () => buildUnet(unet, weights, { motion: { config, weights: motion } }),
    (e: Error) =>
      e instanceof TypeError && e.message.includes("UNetMotionModel") &&
      e.message.includes(`${mm}.proj_in.weight`) && e.message.includes(`${mm}.norm.weight`) &&
      e.message.includes("mid_block.motion_modules.1.norm.weight"),
  );
});

Deno.test("assertMotionFits() refuses a motion module for another base model", () => {
  const sd15Module = parseMotionConfig({});
  const sdxl = parseUnetConfig(TINY_SDXL_UNET);
  assert.throws(
    () => assertMotionFits(sdxl, sd15Module),
    (e: Error) => e instanceof RangeError && /\[320, 640, 1280, 1280\] channels/.test(e.message),
  );
  const unet = parseUnetConfig(TINY_SD15_UNET);
  assert.throws(
    () => assertMotionFits(unet, parseMotionConfig({ ...TINY_MOTION, motion_layers_per_block: 2 })),
    /2 motion layers per block but UNet block 0 has 1 resnets/,
  );
  assert.throws(
    () =>
      assertMotionFits(
        parseUnetConfig({ ...TINY_SD15_UNET, mid_block_type: null }),
        parseMotionConfig(TINY_MOTION),
      ),
    /mid-block motion module/,
  );
  assertMotionFits(unet, parseMotionConfig({ ...TINY_MOTION, use_motion_mid_block: false }));
});

Deno.test("parseMotionConfig() reads Diffusers' defaults and refuses PIA adapters", () => {
  const c = parseMotionConfig({});
  assert.deepEqual(c, {
    blockOutChannels: [320, 640, 1280, 1280],
    layersPerBlock: 2,
    midBlockLayers: 1,
    useMotionMidBlock: true,
    numAttentionHeads: [8, 8, 8, 8],
    normNumGroups: 32,
    maxSeqLength: 32,
    transformerLayers: 1,
  });
  assert.equal(parseMotionConfig({ use_motion_mid_block: false }).midBlockLayers, 0);
  assert.throws(() => parseMotionConfig({ conv_in_channels: 9 }), /PIA/);
  assert.throws(() => parseMotionConfig({ motion_max_seq_length: 0 }), /motion_max_seq_length/);
});

Deno.test("sinusoidalPositions() is torch's SinusoidalPositionalEmbedding table", () => {
  const pe = sinusoidalPositions(32, 320);
  // pe[p, 2i] = sin(p * exp(-2i ln(10000) / d)), pe[p, 2i+1] = cos(...)
  for (const [p, i] of [[0, 0], [1, 0], [31, 5], [17, 159]] as const) {
    const arg = p * Math.exp(-2 * i * Math.log(10000) / 320);
    assert.ok(Math.abs(pe[p * 320 + 2 * i]! - Math.sin(arg)) < 1e-5);
    assert.ok(Math.abs(pe[p * 320 + 2 * i + 1]! - Math.cos(arg)) < 1e-5);
  }
});

Deno.test({
  name: "sinusoidalPositions() equals the tables Diffusers saved in the tiny MotionAdapter",
  ignore: !hasShared,
  fn: async () => {
    using file = await SafetensorsFile.open(
      sharedPath(
        "golden/models/tiny_sd_animatediff/motion_adapter/diffusion_pytorch_model.safetensors",
      ),
    );
    const name = "mid_block.motion_modules.0.transformer_blocks.0.pos_embed.pe";
    const stored = await file.readFloat32(name);
    assertClose(sinusoidalPositions(32, 64), stored, 1e-6, "pe [1, 32, 64]");
  },
});

Deno.test("createRandomMotionAdapter() writes a folder openMotionAdapter() reads back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-motion-" });
  try {
    await createRandomMotionAdapter(TINY_MOTION, dir, { seed: 3 });
    const json = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    assert.equal(json._class_name, "MotionAdapter");
    assert.equal(json.motion_max_seq_length, 6);
    using adapter = await openMotionAdapter(dir);
    assert.deepEqual(adapter.config, parseMotionConfig(TINY_MOTION));
    const shapes = motionParameterShapes(adapter.config);
    assert.deepEqual([...adapter.weights.keys()].sort(), [...shapes.keys()].sort());
    for (const [name, source] of adapter.weights) {
      assert.deepEqual([...source.shape], shapes.get(name));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
