/**
 * float16 UNet and VAE graphs (`floatType: "float16"`) against the Diffusers golden outputs.
 * Measured on ORT 1.30 CPU (2 threads), max abs diff / max |reference|: UNet 6.4e-4 (tiny_sd) to
 * 8.5e-4 (tiny_dummy), VAE encoder mean up to 5.8e-4, VAE decoder up to 1.1e-3, SDXL-shaped
 * random UNet (fp16 vs fp32 graph) 1.8e-3. The tolerance is 5e-3 x max |reference| (float32
 * graphs are held to 1e-4 absolute in unet_test.ts and vae_test.ts).
 */
import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { type GoldenArray, maxAbsDiff, readModelReference } from "../../tests/fixtures/golden.ts";
import { TINY_SDXL_UNET } from "../../tests/fixtures/configs.ts";
import type { OnnxModel } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { parseUnetConfig, parseVaeConfig } from "./config.ts";
import { type AttentionKernel, castWeights, memoryWeights } from "./layers.ts";
import { randomWeights, unetParameterShapes } from "./random.ts";
import { buildUnet, unetResidualSpecs } from "./unet.ts";
import { buildVaeDecoder, buildVaeEncoder, vaeFloatType } from "./vae.ts";

/** Relative tolerance of float16 graphs: max abs diff <= REL * max |reference|. */
const REL = 5e-3;

interface Reference {
  unet: {
    sample: GoldenArray;
    encoder_hidden_states: GoldenArray;
    out: Record<string, GoldenArray>;
  };
  vae: { input: GoldenArray; latent_mean: GoldenArray; decode_mean: GoldenArray };
}

function feed(a: GoldenArray): HostTensor {
  return hostTensor("float32", Float32Array.from(a.values), a.shape);
}

/** Asserts float16 closeness and that the result is not float32-exact (float16 really ran). */
function assertHalfClose(actual: Float32Array, want: GoldenArray, label: string): void {
  assert.deepEqual(actual.length, want.values.length);
  let scale = 0;
  for (const v of want.values) scale = Math.max(scale, Math.abs(v));
  const diff = maxAbsDiff(actual, want.values);
  console.log(
    `${label}: maxdiff ${diff.toExponential(3)} = ${(diff / scale).toExponential(2)} x scale ` +
      `${scale.toFixed(3)} (tolerance ${REL} x scale)`,
  );
  assert.ok(diff <= REL * scale, `${label}: maxdiff ${diff} > ${REL} x ${scale}`);
  assert.ok(diff > 1e-5, `${label}: maxdiff ${diff} is float32-exact; was float16 used?`);
}

function assertHalfWeights(model: OnnxModel, what: string): void {
  const types = new Set(model.initializers.map((i) => i.source.dtype));
  assert.deepEqual([...types], ["float16"], `${what} initializer types`);
}

async function checkUnet(set: string, attention: AttentionKernel): Promise<void> {
  const dir = sharedPath(`golden/models/${set}/pipeline/unet`);
  const ref = readModelReference<Reference>(set).unet;
  const config = parseUnetConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  using file = await SafetensorsFile.open(`${dir}/diffusion_pytorch_model.safetensors`);
  const model = buildUnet(config, tensorSources(file, { floatType: "float16" }), {
    attention,
    floatType: "float16",
  });
  assertHalfWeights(model, `${set} unet`);
  const session = await createSession(await serializeModel(model), { threads: 2 });
  try {
    for (const t of ["10", "999"]) {
      const out = await session.run({
        sample: feed(ref.sample),
        timestep: hostTensor("float32", Float32Array.of(Number(t)), [1]),
        encoder_hidden_states: feed(ref.encoder_hidden_states),
      });
      assert.equal(out.out_sample!.type, "float32");
      assert.deepEqual(out.out_sample!.dims, ref.out[t]!.shape);
      assertHalfClose(
        out.out_sample!.data as Float32Array,
        ref.out[t]!,
        `${set} fp16 unet (${attention}) t=${t}`,
      );
    }
  } finally {
    await session.release();
  }
}

async function checkVae(set: string, attention: AttentionKernel): Promise<void> {
  const dir = sharedPath(`golden/models/${set}/pipeline/vae`);
  const ref = readModelReference<Reference>(set).vae;
  const config = parseVaeConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  using file = await SafetensorsFile.open(`${dir}/diffusion_pytorch_model.safetensors`);
  const weights = tensorSources(file, { floatType: "float16" });
  const options = { attention, floatType: "float16" } as const;
  const encoderModel = buildVaeEncoder(config, weights, options);
  const decoderModel = buildVaeDecoder(config, weights, options);
  assertHalfWeights(encoderModel, `${set} vae encoder`);
  assertHalfWeights(decoderModel, `${set} vae decoder`);
  const encoder = await createSession(await serializeModel(encoderModel), { threads: 2 });
  const decoder = await createSession(await serializeModel(decoderModel), { threads: 2 });
  try {
    const moments = (await encoder.run({ sample: feed(ref.input) })).latent_parameters!;
    assert.equal(moments.type, "float32");
    const plane = ref.latent_mean.values.length / ref.latent_mean.shape[0]!;
    assert.equal(ref.latent_mean.shape[0], 1);
    const mean = (moments.data as Float32Array).subarray(0, plane);
    assertHalfClose(mean, ref.latent_mean, `${set} fp16 vae latent mean (${attention})`);
    const decoded = (await decoder.run({ latent_sample: feed(ref.latent_mean) })).sample!;
    assert.equal(decoded.type, "float32");
    assert.deepEqual(decoded.dims, ref.decode_mean.shape);
    assertHalfClose(
      decoded.data as Float32Array,
      ref.decode_mean,
      `${set} fp16 vae decode(mean) (${attention})`,
    );
  } finally {
    await encoder.release();
    await decoder.release();
  }
}

for (const attention of ["fused", "onnx"] as const) {
  for (const set of ["tiny_dummy", "tiny_sd"]) {
    Deno.test({
      name:
        `buildUnet() in float16 matches Diffusers on ${set} within ${REL} x scale (${attention})`,
      ignore: !hasShared,
      fn: () => checkUnet(set, attention),
    });
    Deno.test({
      name:
        `buildVaeEncoder()/buildVaeDecoder() in float16 match Diffusers on ${set} (${attention})`,
      ignore: !hasShared,
      fn: () => checkVae(set, attention),
    });
  }
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

Deno.test("buildUnet() in float16 follows the float32 graph on an SDXL-shaped UNet with ControlNet inputs", async () => {
  const config = parseUnetConfig(TINY_SDXL_UNET);
  const weights = memoryWeights(randomWeights(unetParameterShapes(TINY_SDXL_UNET), 5));
  const [b, h, w, seq] = [2, 9, 11, 7];
  const d = config.projectionClassEmbeddingsInputDim! - 6 * config.additionTimeEmbedDim!;
  const ids = new Float32Array(b * 6);
  for (let i = 0; i < b; i++) ids.set([72, 88, 0, 0, 72, 88], i * 6);
  const feeds: Record<string, HostTensor> = {
    sample: hostTensor("float32", seeded(b * config.inChannels * h * w, 1), [
      b,
      config.inChannels,
      h,
      w,
    ]),
    timestep: hostTensor("float32", Float32Array.of(700, 20), [2]),
    encoder_hidden_states: hostTensor(
      "float32",
      seeded(b * seq * config.crossAttentionDim[0]!, 2),
      [b, seq, config.crossAttentionDim[0]!],
    ),
    text_embeds: hostTensor("float32", seeded(b * d, 3), [b, d]),
    time_ids: hostTensor("float32", ids, [b, 6]),
  };
  const results: Float32Array[] = [];
  for (const floatType of ["float32", "float16"] as const) {
    const model = buildUnet(config, castWeights(weights, floatType), {
      floatType,
      controlnetResiduals: true,
    });
    const session = await createSession(await serializeModel(model), { threads: 2 });
    try {
      const all = { ...feeds };
      unetResidualSpecs(config).forEach((spec, k) => {
        const rh = Math.ceil(h / spec.downscale);
        const rw = Math.ceil(w / spec.downscale);
        const dims = [b, spec.channels, rh, rw];
        all[spec.name] = hostTensor("float32", seeded(b * spec.channels * rh * rw, 10 + k), dims);
      });
      const out = (await session.run(all)).out_sample!;
      assert.equal(out.type, "float32");
      results.push(out.data as Float32Array);
    } finally {
      await session.release();
    }
  }
  const want = { shape: [], values: Array.from(results[0]!) };
  assertHalfClose(results[1]!, want, "SDXL-shaped fp16 vs fp32 unet");
});

Deno.test("buildUnet() and buildVaeDecoder() refuse weights of the other float type", () => {
  const config = parseUnetConfig(TINY_SDXL_UNET);
  const weights = memoryWeights(randomWeights(unetParameterShapes(TINY_SDXL_UNET), 5));
  assert.throws(
    () => buildUnet(config, weights, { floatType: "float16" }),
    (e: Error) => e instanceof RangeError && /floatType: "float16"/.test(e.message),
  );
  assert.throws(
    () => buildUnet(config, castWeights(weights, "float16")),
    (e: Error) => e instanceof RangeError && /is float16 but the graph is float32/.test(e.message),
  );
});

Deno.test("vaeFloatType() keeps force_upcast VAEs in float32 unless overridden", () => {
  assert.equal(vaeFloatType({ force_upcast: true }, "float16"), "float32");
  assert.equal(vaeFloatType({}, "float16"), "float32"); // Diffusers' default is true
  assert.equal(vaeFloatType({ force_upcast: false }, "float16"), "float16");
  assert.equal(vaeFloatType({ force_upcast: false }, "float32"), "float32");
  assert.equal(vaeFloatType({ force_upcast: true }, "float16", "float16"), "float16");
  assert.equal(vaeFloatType({ force_upcast: false }, "float16", "float32"), "float32");
});
