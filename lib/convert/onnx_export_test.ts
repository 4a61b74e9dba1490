import assert from "node:assert/strict";
import { join } from "node:path";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { buildClipTextModel } from "../models/clip_text.ts";
import { buildUnet } from "../models/unet.ts";
import { buildVaeDecoder, buildVaeEncoder } from "../models/vae.ts";
import type { OnnxModel } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { openDiffusersModel } from "../model_io/diffusers_folder.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { exportOnnx } from "./onnx_export.ts";
import { convertCheckpoint } from "./to_diffusers.ts";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";

function randn(seed: number, n: number): Float32Array {
  const gen = new TorchCpuGenerator(seed);
  return gen.randn([n]) as Float32Array;
}

async function builderSession(
  weights: string,
  build: (s: ReturnType<typeof tensorSources>) => OnnxModel,
): Promise<OnnxSession> {
  const file = await SafetensorsFile.open(weights);
  try {
    return await createSession(await serializeModel(build(tensorSources(file))));
  } finally {
    file.close();
  }
}

function maxDiff(a: HostTensor | undefined, b: HostTensor | undefined): number {
  assert.ok(a && b);
  assert.deepEqual([...a.dims], [...b.dims]);
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

// The exported graphs use plain ONNX attention; the builders' default (the reference here) uses
// onnxruntime's fused MultiHeadAttention, so results agree to float rounding, not bit for bit.
const TOLERANCE = 1e-4;

// SD 1.5 layout; SDXL adds text_encoder_2 and the text_embeds/time_ids inputs, same code path.
for (const family of ["sd15"] as const) {
  Deno.test(`exportOnnx() writes Optimum-layout ${family} models that match the builders within ${TOLERANCE}`, async () => {
    const dir = await Deno.makeTempDir();
    const tok = await writeByteTokenizer(join(dir, "tok"));
    const modelDir = await makeTinyModel(family, { seed: 2, tokenizerDir: tok });
    try {
      const out = join(dir, "onnx");
      const written = await exportOnnx(modelDir, out);
      const m = await openDiffusersModel(modelDir);
      const index = JSON.parse(await Deno.readTextFile(join(out, "model_index.json")));
      assert.deepEqual(index.unet, ["diffusers", "OnnxRuntimeModel"]);
      for (
        const f of ["scheduler/scheduler_config.json", "tokenizer/vocab.json", "unet/config.json"]
      ) {
        await Deno.stat(join(out, f));
      }

      // Text encoder(s): input_ids int32.
      const ids = Int32Array.from(
        { length: 2 * 77 },
        (_, i) => i % 77 === 76 ? 49407 : (i * 37) % 500,
      );
      const ids64 = BigInt64Array.from(ids, (v) => BigInt(v));
      for (
        const [name, te] of [["text_encoder", m.textEncoder], [
          "text_encoder_2",
          m.textEncoder2,
        ]] as const
      ) {
        if (te === undefined) continue;
        assert.ok(written.includes(name));
        const exported = await createSession(join(out, name, "model.onnx"));
        assert.deepEqual([...exported.inputNames], ["input_ids"]);
        assert.ok(exported.outputNames.includes("last_hidden_state"));
        assert.ok(!exported.outputNames.some((n) => n.startsWith("normed_")));
        const reference = await builderSession(te.weights, (s) => buildClipTextModel(te.config, s));
        const got = await exported.run({ input_ids: hostTensor("int32", ids, [2, 77]) });
        const want = await reference.run({ input_ids: hostTensor("int64", ids64, [2, 77]) });
        for (const o of exported.outputNames) {
          const d = maxDiff(got[o], want[o]);
          assert.ok(d <= TOLERANCE, `${name} ${o}: maxdiff ${d}`);
        }
      }

      // UNet.
      const u = m.unet.config;
      const unet = await createSession(join(out, "unet", "model.onnx"));
      const unetRef = await builderSession(m.unet.weights, (s) => buildUnet(u, s));
      const hw = u.sampleSize;
      const cross = u.crossAttentionDim[0]!;
      const feeds: Record<string, HostTensor> = {
        sample: hostTensor("float32", randn(3, 2 * u.inChannels * hw * hw), [
          2,
          u.inChannels,
          hw,
          hw,
        ]),
        timestep: hostTensor("float32", Float32Array.of(10), [1]),
        encoder_hidden_states: hostTensor("float32", randn(4, 2 * 77 * cross), [2, 77, cross]),
      };
      if (u.additionEmbedType === "text_time") {
        const textDim = u.projectionClassEmbeddingsInputDim! - 6 * u.additionTimeEmbedDim!;
        feeds["text_embeds"] = hostTensor("float32", randn(5, 2 * textDim), [2, textDim]);
        feeds["time_ids"] = hostTensor(
          "float32",
          Float32Array.from({ length: 12 }, (_, i) => 64 * (i % 3)),
          [2, 6],
        );
      }
      assert.deepEqual([...unet.outputNames], ["out_sample"]);
      const d = maxDiff(
        (await unet.run(feeds))["out_sample"],
        (await unetRef.run(feeds))["out_sample"],
      );
      assert.ok(d <= TOLERANCE, `unet out_sample: maxdiff ${d}`);

      // VAE encoder and decoder.
      const v = m.vae.config;
      const px = v.sampleSize;
      const enc = await createSession(join(out, "vae_encoder", "model.onnx"));
      const encRef = await builderSession(m.vae.weights, (s) => buildVaeEncoder(v, s));
      const image = { sample: hostTensor("float32", randn(6, 3 * px * px), [1, 3, px, px]) };
      assert.deepEqual([...enc.outputNames], ["latent_parameters"]);
      const de = maxDiff(
        (await enc.run(image))["latent_parameters"],
        (await encRef.run(image))["latent_parameters"],
      );
      assert.ok(de <= TOLERANCE, `vae_encoder: maxdiff ${de}`);
      const lat = px / 2 ** (v.blockOutChannels.length - 1);
      const dec = await createSession(join(out, "vae_decoder", "model.onnx"));
      const decRef = await builderSession(m.vae.weights, (s) => buildVaeDecoder(v, s));
      const z = {
        latent_sample: hostTensor("float32", randn(7, v.latentChannels * lat * lat), [
          1,
          v.latentChannels,
          lat,
          lat,
        ]),
      };
      assert.deepEqual([...dec.inputNames], ["latent_sample"]);
      const dd = maxDiff((await dec.run(z))["sample"], (await decRef.run(z))["sample"]);
      assert.ok(dd <= TOLERANCE, `vae_decoder: maxdiff ${dd}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(join(modelDir, ".."), { recursive: true });
    }
  });
}

interface Golden {
  unet: {
    sample: { shape: number[]; values: number[] };
    encoder_hidden_states: { shape: number[]; values: number[] };
    out: Record<string, { values: number[] }>;
  };
  vae: Record<string, { shape: number[]; values: number[] }>;
}

function maxDiffValues(a: Float32Array, b: number[]): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// Golden: ../shared/golden/models/tiny_sd/reference.json (Diffusers 0.27, fp32 CPU). Single model
// passes: 1e-4 absolute, as the golden README suggests.
Deno.test({
  name: "an ONNX export of the tiny_sd single file matches Diffusers' UNet and VAE within 1e-4",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const folder = join(dir, "diffusers");
      await convertCheckpoint(
        sharedPath("golden/models/tiny_sd/ldm/tiny_sd_ldm_fp16.safetensors"),
        folder,
        {
          tokenizerDir: sharedPath("golden/models/tiny_sd/pipeline/tokenizer"),
          originalConfig: sharedPath("golden/models/tiny_sd/ldm/v1-inference-tiny.yaml"),
        },
      );
      const out = join(dir, "onnx");
      await exportOnnx(folder, out);
      const ref = readSharedJson<Golden>("golden/models/tiny_sd/reference.json");
      const unet = await createSession(join(out, "unet", "model.onnx"));
      for (const t of ["10", "999"]) {
        const r = await unet.run({
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
        const d = maxDiffValues(r["out_sample"]!.data as Float32Array, ref.unet.out[t]!.values);
        assert.ok(d <= 1e-4, `unet t=${t}: maxdiff ${d}`);
      }
      const enc = await createSession(join(out, "vae_encoder", "model.onnx"));
      const x = ref.vae["input"]!;
      const moments =
        (await enc.run({ sample: hostTensor("float32", Float32Array.from(x.values), x.shape) }))[
          "latent_parameters"
        ]!.data as Float32Array;
      const half = moments.length / 2;
      const mean = moments.slice(0, half);
      const std = moments.slice(half).map((lv) => Math.exp(0.5 * Math.min(20, Math.max(-30, lv))));
      const dm = maxDiffValues(mean, ref.vae["latent_mean"]!.values);
      const ds = maxDiffValues(std, ref.vae["latent_std"]!.values);
      assert.ok(dm <= 1e-4 && ds <= 1e-4, `vae_encoder: mean maxdiff ${dm}, std maxdiff ${ds}`);
      const dec = await createSession(join(out, "vae_decoder", "model.onnx"));
      const z = ref.vae["z"]!;
      const img = (await dec.run({
        latent_sample: hostTensor("float32", Float32Array.from(z.values), z.shape),
      }))[
        "sample"
      ]!.data as Float32Array;
      const dd = maxDiffValues(img, ref.vae["decode_z"]!.values);
      assert.ok(dd <= 1e-4, `vae_decoder: maxdiff ${dd}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
