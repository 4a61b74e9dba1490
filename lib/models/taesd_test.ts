import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import {
  buildTaesdDecoder,
  buildTaesdEncoder,
  parseTaesdConfig,
  scaleTaesdLatents,
  taesdOriginalKeyTable,
} from "./taesd.ts";

interface Arr {
  shape: number[];
  values: number[];
}
interface Golden {
  config: Record<string, unknown>;
  key_map_diffusers_to_taesd_py: Record<string, string>;
  input01: Arr;
  latents: Arr;
  scaled_latents: Arr;
  decode: Arr;
  z: Arr;
  decode_z: Arr;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const DIR = "golden/models/taesd_random";

Deno.test({
  name: "buildTaesdEncoder() and buildTaesdDecoder() match Diffusers AutoencoderTiny",
  ignore: !hasShared,
  fn: async () => {
    const golden = readSharedJson<Golden>("golden/taesd.json");
    const config = parseTaesdConfig(readSharedJson(`${DIR}/config.json`));
    const file = await SafetensorsFile.open(
      sharedPath(`${DIR}/diffusion_pytorch_model.safetensors`),
    );
    const weights = tensorSources(file); // F16 on disk -> float32 graph
    const encoder = await createSession(await serializeModel(buildTaesdEncoder(config, weights)));
    const decoder = await createSession(await serializeModel(buildTaesdDecoder(config, weights)));
    try {
      const x = Float32Array.from(golden.input01.values, (v) => 2 * v - 1);
      const enc = await encoder.run({ sample: hostTensor("float32", x, golden.input01.shape) });
      const latents = enc.latent_sample!;
      assert.deepEqual(latents.dims, golden.latents.shape);
      const dLat = maxDiff(latents.data as Float32Array, golden.latents.values);
      const dScaled = maxDiff(
        scaleTaesdLatents(config, latents.data as Float32Array),
        golden.scaled_latents.values,
      );
      const dec = await decoder.run({ latent_sample: latents });
      assert.deepEqual(dec.sample!.dims, golden.decode.shape);
      const dDec = maxDiff(dec.sample!.data as Float32Array, golden.decode.values);
      const z = Float32Array.from(golden.z.values);
      const decZ = await decoder.run({ latent_sample: hostTensor("float32", z, golden.z.shape) });
      const dDecZ = maxDiff(decZ.sample!.data as Float32Array, golden.decode_z.values);
      const msg = `maxdiff latents ${dLat}, scaled ${dScaled}, decode ${dDec}, decode_z ${dDecZ}`;
      assert.ok(dLat <= 1e-4 && dScaled <= 1e-4 && dDec <= 1e-4 && dDecZ <= 1e-4, msg);
    } finally {
      await encoder.release();
      await decoder.release();
      file.close();
    }
  },
});

Deno.test({
  name: "taesdOriginalKeyTable() equals the golden taesd.py key map",
  ignore: !hasShared,
  fn: () => {
    const golden = readSharedJson<Golden>("golden/taesd.json");
    const table = taesdOriginalKeyTable(parseTaesdConfig(golden.config));
    const expected = new Map(
      Object.entries(golden.key_map_diffusers_to_taesd_py).map(([diffusers, original]) => [
        original,
        diffusers,
      ]),
    );
    assert.deepEqual(new Map([...table].sort()), new Map([...expected].sort()));
  },
});

Deno.test({
  name: "buildTaesdDecoder() loads original taesd.py names through the key table",
  ignore: !hasShared,
  fn: async () => {
    const config = parseTaesdConfig(readSharedJson(`${DIR}/config.json`));
    const file = await SafetensorsFile.open(
      sharedPath(`${DIR}/diffusion_pytorch_model.safetensors`),
    );
    try {
      // Rename to taesd.py's decoder file keys ("1.weight", ...) and back through the table.
      const table = taesdOriginalKeyTable(config);
      const toOriginal = new Map([...table].map(([o, d]) => [d, o.slice("decoder:".length)]));
      const original = new Map(
        [...tensorSources(file)].filter(([k]) => k.startsWith("decoder.")).map((
          [k, v],
        ) => [toOriginal.get(k)!, v]),
      );
      const renamed = new Map([...original].map(([k, v]) => [table.get(`decoder:${k}`)!, v]));
      const model = buildTaesdDecoder(config, renamed);
      assert.equal(model.initializers.length, original.size);
      // Using the original names directly is refused with the names listed.
      assert.throws(() => buildTaesdDecoder(config, original), /unknown weights .*"1\.weight"/);
    } finally {
      file.close();
    }
  },
});

Deno.test("buildTaesdDecoder() lists missing and misshapen weights", () => {
  const config = parseTaesdConfig({
    block_out_channels: [64, 64],
    num_encoder_blocks: [1, 1],
    num_decoder_blocks: [1, 1],
  });
  const w = (shape: number[]) => ({
    dtype: "float32" as const,
    shape,
    load: () => new Float32Array(shape.reduce((a, b) => a * b, 1)),
  });
  const weights = new Map([
    ["decoder.layers.0.weight", w([64, 4, 3, 3])],
    ["decoder.layers.0.bias", w([32])],
  ]);
  assert.throws(
    () => buildTaesdDecoder(config, weights),
    /missing "decoder\.layers\.2\.conv\.0\.weight".*misshapen "decoder\.layers\.0\.bias" \[32\] \(expected \[64\]\)/,
  );
});
