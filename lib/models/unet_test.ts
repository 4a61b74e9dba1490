import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { assertClose, type GoldenArray, readModelReference } from "../../tests/fixtures/golden.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { parseUnetConfig } from "./config.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { buildUnet } from "./unet.ts";

interface Reference {
  unet: {
    sample: GoldenArray;
    encoder_hidden_states: GoldenArray;
    out: Record<string, GoldenArray>;
  };
}

async function checkUnetParity(set: string): Promise<void> {
  const dir = sharedPath(`golden/models/${set}/pipeline/unet`);
  const ref = readModelReference<Reference>(set);
  const config = parseUnetConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  using file = await SafetensorsFile.open(`${dir}/diffusion_pytorch_model.safetensors`);
  const model = buildUnet(config, tensorSources(file));
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
      assertClose(out.out_sample!.data as Float32Array, want.values, 1e-4, `${set} unet t=${t}`);
    }
  } finally {
    await session.release();
  }
}

Deno.test({
  name: "buildUnet() matches Diffusers on tiny_dummy at t=10 and t=999",
  ignore: !hasShared,
  fn: () => checkUnetParity("tiny_dummy"),
});

Deno.test({
  name: "buildUnet() matches Diffusers on tiny_sd (SD 1.x block layout) at t=10 and t=999",
  ignore: !hasShared,
  fn: () => checkUnetParity("tiny_sd"),
});
