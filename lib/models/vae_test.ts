import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { assertClose, type GoldenArray, readModelReference } from "../../tests/fixtures/golden.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { parseVaeConfig } from "./config.ts";
import type { AttentionKernel } from "./layers.ts";
import {
  buildVaeDecoder,
  buildVaeEncoder,
  latentDistribution,
  type Nchw,
  needsTiling,
  sampleLatent,
  scaleLatents,
  tiledDecode,
  tiledEncode,
  unscaleLatents,
} from "./vae.ts";

interface Reference {
  vae: {
    input: GoldenArray;
    latent_mean: GoldenArray;
    latent_std: GoldenArray;
    decode_mean: GoldenArray;
    z: GoldenArray;
    decode_z: GoldenArray;
  };
}

function nchw(a: GoldenArray): Nchw {
  return { data: Float32Array.from(a.values), dims: a.shape as Nchw["dims"] };
}

async function runOne(session: OnnxSession, input: string, x: Nchw): Promise<Nchw> {
  const out = await session.run({ [input]: hostTensor("float32", x.data, x.dims) });
  const t = out[session.outputNames[0]!]!;
  return { data: t.data as Float32Array, dims: [...t.dims] as Nchw["dims"] };
}

async function checkVaeParity(set: string, attention: AttentionKernel): Promise<void> {
  const dir = sharedPath(`golden/models/${set}/pipeline/vae`);
  const ref = readModelReference<Reference>(set).vae;
  const config = parseVaeConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  using file = await SafetensorsFile.open(`${dir}/diffusion_pytorch_model.safetensors`);
  const weights = tensorSources(file);
  const encoder = await createSession(
    await serializeModel(buildVaeEncoder(config, weights, { attention })),
    {
      threads: 2,
    },
  );
  const decoder = await createSession(
    await serializeModel(buildVaeDecoder(config, weights, { attention })),
    {
      threads: 2,
    },
  );
  try {
    const moments = await runOne(encoder, "sample", nchw(ref.input));
    const dist = latentDistribution(moments);
    assert.deepEqual(dist.mean.dims, ref.latent_mean.shape);
    assertClose(
      dist.mean.data,
      ref.latent_mean.values,
      1e-4,
      `${set} vae latent mean (${attention})`,
    );
    assertClose(dist.std.data, ref.latent_std.values, 1e-4, `${set} vae latent std (${attention})`);
    const decodedMean = await runOne(decoder, "latent_sample", nchw(ref.latent_mean));
    assert.deepEqual(decodedMean.dims, ref.decode_mean.shape);
    assertClose(
      decodedMean.data,
      ref.decode_mean.values,
      1e-4,
      `${set} vae decode(mean) (${attention})`,
    );
    const decodedZ = await runOne(decoder, "latent_sample", nchw(ref.z));
    assertClose(decodedZ.data, ref.decode_z.values, 1e-4, `${set} vae decode(z) (${attention})`);
  } finally {
    await encoder.release();
    await decoder.release();
  }
}

for (const attention of ["fused", "onnx"] as const) {
  Deno.test({
    name: `buildVaeEncoder() and buildVaeDecoder() match Diffusers on tiny_dummy (${attention})`,
    ignore: !hasShared,
    fn: () => checkVaeParity("tiny_dummy", attention),
  });

  Deno.test({
    name: `buildVaeEncoder() and buildVaeDecoder() match Diffusers on tiny_sd (${attention})`,
    ignore: !hasShared,
    fn: () => checkVaeParity("tiny_sd", attention),
  });
}

Deno.test("buildVaeDecoder() lists missing and unused weights in one error", () => {
  const config = parseVaeConfig({
    block_out_channels: [4],
    norm_num_groups: 2,
    down_block_types: ["DownEncoderBlock2D"],
    up_block_types: ["UpDecoderBlock2D"],
  });
  const weights = new Map([
    ["decoder.extra.weight", { dtype: "float32" as const, shape: [1], data: new Float32Array(1) }],
  ]);
  assert.throws(
    () => buildVaeDecoder(config, weights),
    (e: Error) =>
      e.message.includes('"post_quant_conv.weight"') && e.message.includes("decoder.extra.weight"),
  );
});

const tinyConfig = parseVaeConfig({
  block_out_channels: [4, 8, 8, 8],
  sample_size: 64,
  scaling_factor: 0.5,
  down_block_types: Array(4).fill("DownEncoderBlock2D"),
  up_block_types: Array(4).fill("UpDecoderBlock2D"),
});

/** Nearest-neighbour upsampling by `f`: a pointwise "decoder" whose tiles must stitch exactly. */
function upsample(x: Nchw, f: number): Nchw {
  const [b, c, h, w] = x.dims;
  const out = new Float32Array(b * c * h * f * w * f);
  for (let p = 0; p < b * c; p++) {
    for (let y = 0; y < h * f; y++) {
      for (let xx = 0; xx < w * f; xx++) {
        out[(p * h * f + y) * w * f + xx] = x
          .data[(p * h + Math.floor(y / f)) * w + Math.floor(xx / f)]!;
      }
    }
  }
  return { data: out, dims: [b, c, h * f, w * f] };
}

Deno.test("tiledDecode() stitches a pointwise decoder exactly and covers the whole image", async () => {
  // 20x13 latents, tiles of 8 latents (64 px) every 6: 4x3 tiles with ragged edges.
  const latents: Nchw = { data: new Float32Array(2 * 4 * 20 * 13), dims: [2, 4, 20, 13] };
  for (let i = 0; i < latents.data.length; i++) latents.data[i] = Math.sin(i * 0.37);
  let calls = 0;
  const out = await tiledDecode(latents, tinyConfig, (tile) => {
    calls++;
    assert.ok(tile.dims[2] <= 8 && tile.dims[3] <= 8);
    return Promise.resolve(upsample(tile, 8));
  });
  assert.equal(calls, 4 * 3);
  assert.deepEqual(out.dims, [2, 4, 160, 104]);
  assertClose(out.data, upsample(latents, 8).data, 1e-6, "tiled nearest upsample");
});

Deno.test("tiledEncode() blends overlapping tiles linearly like Diffusers' blend_h", async () => {
  // Image 1x1x64x96 with 32-px tiles every 24 px -> tiles at x = 0, 24, 48, 72; every tile's
  // output is the constant (tile index), 4x4 latents, blend extent 1 latent (= floor(4*0.25)).
  const image: Nchw = { data: new Float32Array(64 * 96), dims: [1, 1, 64, 96] };
  let index = 0;
  const out = await tiledEncode(image, tinyConfig, (tile) => {
    const [b, c, h, w] = tile.dims;
    const v = index++;
    return Promise.resolve({
      data: new Float32Array(b * c * (h / 8) * (w / 8)).fill(v),
      dims: [b, c, h / 8, w / 8],
    });
  }, { tileSampleSize: 32 });
  // rows at y = 0, 24, 48; columns at x = 0, 24, 48, 72 -> 3x4 tiles; row limit 3 latents.
  assert.equal(index, 12);
  assert.deepEqual(out.dims, [1, 1, 3 + 3 + 2, 3 + 3 + 3 + 3]);
  // With extent 1, blend weight y/e = 0 at the seam: the first row/column comes from the
  // neighbour. Tile (0, 1) has value 1; its column 0 is replaced by tile (0, 0)'s last column.
  const at = (y: number, x: number) => out.data[y * out.dims[3] + x]!;
  assert.equal(at(0, 2), 0);
  assert.equal(at(0, 3), 0);
  assert.equal(at(0, 4), 1);
  // Row 3 (tile row 1) first row takes tile row 0's bottom row (blend_v), then blend_h.
  assert.equal(at(3, 4), 1);
  assert.equal(at(4, 4), 5);
});

Deno.test("scaleLatents() and unscaleLatents() invert each other, with shift and per-channel stats", () => {
  const x: Nchw = { data: Float32Array.from([1, 2, 3, 4]), dims: [1, 2, 1, 2] };
  const shifted = { ...tinyConfig, shiftFactor: 0.25 };
  const z = scaleLatents(x, shifted);
  assertClose(z, [0.375, 0.875, 1.375, 1.875], 1e-7, "(x - 0.25) * 0.5");
  assertClose(unscaleLatents({ data: z, dims: x.dims }, shifted), x.data, 1e-6, "roundtrip");
  const stats = { ...tinyConfig, latentsMean: [1, 2], latentsStd: [2, 4] };
  const s = scaleLatents(x, stats);
  assertClose(s, [0, 0.25, 0.125, 0.25], 1e-7, "(x - mean) * 0.5 / std");
  assertClose(unscaleLatents({ data: s, dims: x.dims }, stats), x.data, 1e-6, "roundtrip stats");
});

Deno.test("tiledEncode() ramps over a 2-latent blend extent", async () => {
  // 64-px tiles every 48 px on a 64x112 image: 2 rows x 3 columns, blend extent 2 latents.
  const image: Nchw = { data: new Float32Array(64 * 112), dims: [1, 1, 64, 112] };
  let index = 0;
  const out = await tiledEncode(image, tinyConfig, (tile) => {
    const [b, c, h, w] = tile.dims;
    return Promise.resolve({
      data: new Float32Array(b * c * (h / 8) * (w / 8)).fill(index++),
      dims: [b, c, h / 8, w / 8],
    });
  });
  assert.deepEqual(out.dims, [1, 1, 6 + 2, 6 + 6 + 2]);
  const at = (y: number, x: number) => out.data[y * out.dims[3] + x]!;
  assert.equal(at(0, 6), 0); // tile (0,1) column 0 = tile (0,0)'s column 6
  assert.equal(at(0, 7), 0.5); // 0.5 * 0 + 0.5 * 1
  assert.equal(at(6, 0), 0); // tile (1,0) row 0 = tile (0,0)'s row 6
  assert.equal(at(7, 0), 1.5); // 0.5 * 0 + 0.5 * 3
});

Deno.test("latentDistribution() clamps logvar and sampleLatent() adds std * noise", () => {
  // moments [1, 2, 1, 2]: mean channel [0.5, -1], logvar channel [2, 40 (clamped to 20)]
  const d = latentDistribution({ data: Float32Array.of(0.5, -1, 2, 40), dims: [1, 2, 1, 2] });
  assert.deepEqual([...d.logvar.data], [2, 20]);
  assertClose(d.std.data, [Math.exp(1), Math.exp(10)], 1e-2, "std = exp(logvar / 2)");
  const z = sampleLatent(d, Float32Array.of(1, 0));
  assertClose(z, [0.5 + Math.exp(1), -1], 1e-5, "mean + std * noise");
  assert.throws(() => sampleLatent(d, new Float32Array(3)), TypeError);
});

Deno.test("needsTiling() follows Diffusers' tile_latent_min_size", () => {
  assert.equal(needsTiling([1, 4, 8, 8], tinyConfig), false); // 64 / 8 = 8 latents per tile
  assert.equal(needsTiling([1, 4, 8, 9], tinyConfig), true);
  assert.equal(needsTiling([1, 4, 9, 8], tinyConfig, { tileSampleSize: 128 }), false);
});
