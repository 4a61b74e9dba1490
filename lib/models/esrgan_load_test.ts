import assert from "node:assert/strict";
import { join } from "node:path";
import { zipSync } from "fflate";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { UnsafePickleError } from "../weights/pickle.ts";
import { writeSafetensors } from "../weights/safetensors.ts";
import {
  buildUpscaler,
  rrdbNetConfig,
  srvggNetCompactConfig,
  upscalerParameterShapes,
} from "./esrgan.ts";
import { detectUpscalerConfig } from "./esrgan_detect.ts";
import { bsrganKeyTable, esrganKeyTable, normalizeUpscalerKeys } from "./esrgan_keys.ts";
import { loadUpscalerWeights } from "./esrgan_load.ts";
import { memoryWeights } from "./layers.ts";
import { randomWeights } from "./random.ts";

/** Shapes under the names a file in `layout` would use. */
function renamed(
  shapes: Map<string, number[]>,
  table: Map<string, string>,
): Map<string, number[]> {
  const back = new Map([...table].map(([from, to]) => [to, from]));
  return new Map([...shapes].map(([name, shape]) => [back.get(name) ?? name, shape]));
}

function detectFrom(names: Map<string, number[]>) {
  const keys = normalizeUpscalerKeys(names.keys());
  const shapes = new Map([...keys.rename].map(([stored, name]) => [name, names.get(stored)!]));
  return { layout: keys.layout, config: detectUpscalerConfig(shapes) };
}

Deno.test("detectUpscalerConfig() recognises every config from its shapes", () => {
  const configs = [
    rrdbNetConfig(), // RealESRGAN_x4plus
    rrdbNetConfig({ blocks: 6 }), // RealESRGAN_x4plus_anime_6B
    rrdbNetConfig({ scale: 2 }), // RealESRGAN_x2plus
    rrdbNetConfig({ scale: 1, features: 32, blocks: 3, growthChannels: 16 }),
    { ...rrdbNetConfig({ features: 16, blocks: 2, growthChannels: 8 }), upsamples: 0, scale: 1 },
    { ...rrdbNetConfig({ features: 16, blocks: 2, growthChannels: 8 }), upsamples: 1, scale: 2 },
    { ...rrdbNetConfig({ features: 16, blocks: 2, growthChannels: 8 }), upsamples: 3, scale: 8 },
    srvggNetCompactConfig({ convs: 32 }), // realesr-general-x4v3
    srvggNetCompactConfig(), // realesr-animevideov3
    srvggNetCompactConfig({ features: 16, convs: 4, scale: 2 }),
  ];
  for (const config of configs) {
    const shapes = upscalerParameterShapes(config);
    assert.deepEqual(detectFrom(shapes).config, config);
    if (config.architecture === "RRDBNet") {
      // The same network in the original ESRGAN and in BSRGAN's names.
      const old = renamed(shapes, esrganKeyTable(config.blocks, config.upsamples));
      assert.ok(old.has("model.1.sub.0.RDB1.conv1.0.weight"));
      assert.deepEqual(detectFrom(old), { layout: "esrgan", config });
      const bsr = renamed(shapes, bsrganKeyTable(config.blocks, config.upsamples));
      assert.deepEqual(detectFrom(bsr), { layout: "bsrgan", config });
    }
  }
});

Deno.test("esrganKeyTable() places the upsample, HR and last convs by stage count", () => {
  // x4 (two stages), as 4x-UltraSharp: model.3, model.6, model.8, model.10.
  const x4 = esrganKeyTable(23, 2);
  assert.equal(x4.get("model.3.weight"), "conv_up1.weight");
  assert.equal(x4.get("model.6.weight"), "conv_up2.weight");
  assert.equal(x4.get("model.8.weight"), "conv_hr.weight");
  assert.equal(x4.get("model.10.weight"), "conv_last.weight");
  assert.equal(x4.get("model.1.sub.22.RDB3.conv5.0.bias"), "body.22.rdb3.conv5.bias");
  // x2 (one stage): model.3, then model.5 and model.7.
  const x2 = esrganKeyTable(23, 1);
  assert.equal(x2.get("model.5.weight"), "conv_hr.weight");
  assert.equal(x2.get("model.7.weight"), "conv_last.weight");
  assert.equal(x4.size, 2 * (1 + 23 * 15 + 1 + 2 + 2));
});

Deno.test("buildUpscaler() reports missing, misshapen and unused weights together", () => {
  const config = rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 });
  const weights = memoryWeights(randomWeights(upscalerParameterShapes(config), 0));
  weights.delete("body.0.rdb2.conv3.weight");
  weights.set("conv_hr.bias", { dtype: "float32", shape: [9], data: new Float32Array(9) });
  weights.set("extra.weight", { dtype: "float32", shape: [1], data: new Float32Array(1) });
  assert.throws(
    () => buildUpscaler(config, weights, { source: "x.pth" }),
    (e: unknown) =>
      e instanceof TypeError && /RRDBNet from "x\.pth"/.test(e.message) &&
      /missing "body\.0\.rdb2\.conv3\.weight"/.test(e.message) &&
      /misshapen "conv_hr\.bias" \[9\]/.test(e.message) && /unused "extra\.weight"/.test(e.message),
  );
});

Deno.test("loadUpscalerWeights() refuses a weight file that is not an upscaler", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "lora.safetensors");
    await writeSafetensors(path, [
      { name: "lora_unet_down_blocks_0.alpha", dtype: "F32", shape: [], data: Float32Array.of(4) },
      {
        name: "lora_unet_down_blocks_0.lora_up.weight",
        dtype: "F32",
        shape: [4, 2],
        data: new Float32Array(8),
      },
    ]);
    await assert.rejects(
      () => loadUpscalerWeights(path),
      (e: unknown) =>
        e instanceof TypeError &&
        /lora\.safetensors" is not an ESRGAN-family upscaler/.test(e.message) &&
        /found 2 tensors such as "lora_unet_down_blocks_0\.alpha" \[\]/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "loadUpscalerWeights() refuses a real .pth that is not an upscaler (TAESD encoder)",
  ignore: !hasShared,
  fn: async () => {
    const path = sharedPath("fixtures/real/pickles/taesana_encoder.pth");
    await assert.rejects(
      () => loadUpscalerWeights(path),
      (e: unknown) => {
        assert.ok(e instanceof TypeError, String(e));
        console.log(e.message.slice(0, 200));
        return /not an ESRGAN-family upscaler/.test(e.message);
      },
    );
  },
});

Deno.test("loadUpscalerWeights() refuses a .pth whose pickle asks for os.system", async () => {
  const enc = new TextEncoder();
  // PROTO 2; GLOBAL os.system; BINUNICODE "echo hi"; TUPLE1; REDUCE; STOP
  const cmd = enc.encode("echo hi");
  const pickle = Uint8Array.from([
    0x80,
    2,
    ...enc.encode("cos\nsystem\n"),
    0x58,
    cmd.length,
    0,
    0,
    0,
    ...cmd,
    0x85,
    0x52,
    0x2e,
  ]);
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "evil.pth");
    await Deno.writeFile(
      path,
      zipSync({ "archive/data.pkl": pickle, "archive/version": enc.encode("3\n") }, { level: 0 }),
    );
    await assert.rejects(
      () => loadUpscalerWeights(path),
      (e: unknown) =>
        e instanceof UnsafePickleError && e.global === "os.system" && /evil\.pth/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
