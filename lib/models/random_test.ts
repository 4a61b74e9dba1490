import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import {
  SD15_UNET,
  SD21_UNET,
  SD_VAE,
  SDXL_UNET,
  TINY_SD15_UNET,
  TINY_SDXL_UNET,
} from "../../tests/fixtures/configs.ts";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { buildClipTextModel, parseClipTextConfig } from "./clip_text.ts";
import { parseUnetConfig, parseVaeConfig } from "./config.ts";
import {
  clipTextParameterShapes,
  randomWeights,
  unetParameterShapes,
  vaeParameterShapes,
} from "./random.ts";
import { buildUnet } from "./unet.ts";
import { buildVaeDecoder, buildVaeEncoder } from "./vae.ts";

function count(shapes: Map<string, number[]>): number {
  let n = 0;
  for (const s of shapes.values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}

Deno.test("unetParameterShapes() gives the published parameter counts of SD 1.5, SD 2.1 and SDXL", () => {
  // Counts from Diffusers' `sum(p.numel() for p in unet.parameters())` for the released models.
  const sd15 = unetParameterShapes(SD15_UNET);
  assert.equal(sd15.size, 686);
  assert.equal(count(sd15), 859_520_964);
  assert.equal(count(unetParameterShapes(SD21_UNET)), 865_910_724);
  const xl = unetParameterShapes(SDXL_UNET);
  assert.equal(xl.size, 1680);
  assert.equal(count(xl), 2_567_463_684);
  // Names and shapes that only exist with SD 2.x/SDXL features.
  assert.deepEqual(xl.get("add_embedding.linear_1.weight"), [1280, 2816]);
  assert.deepEqual(xl.get("down_blocks.1.attentions.0.proj_in.weight"), [640, 640]);
  assert.deepEqual(xl.get("mid_block.attentions.0.transformer_blocks.9.attn2.to_k.weight"), [
    1280,
    2048,
  ]);
  assert.deepEqual(xl.get("up_blocks.0.attentions.2.transformer_blocks.9.ff.net.0.proj.weight"), [
    10240,
    1280,
  ]);
  assert.equal(count(vaeParameterShapes(SD_VAE)), 83_653_863);
});

Deno.test("randomWeights() is deterministic per seed and sized by fan-in", () => {
  const shapes = new Map([["a.weight", [64, 16, 3, 3]], ["a.bias", [64]], ["n.weight", [8]]]);
  const a = randomWeights(shapes, 7);
  const b = randomWeights(shapes, 7);
  const c = randomWeights(shapes, 8);
  assert.deepEqual(a.get("a.weight")!.data, b.get("a.weight")!.data);
  assert.notDeepEqual(a.get("a.weight")!.data, c.get("a.weight")!.data);
  const w = a.get("a.weight")!.data;
  const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
  assert.ok(Math.abs(std - 1 / 12) < 0.01, `std ${std}, expected about 1/sqrt(144)`);
  const norm = a.get("n.weight")!.data;
  assert.ok(norm.every((v) => Math.abs(v - 1) < 0.5));
});

Deno.test("clipTextParameterShapes() matches the tiny_dummy text encoder file", {
  ignore: !hasShared,
}, async () => {
  const dir = sharedPath("golden/models/tiny_dummy/pipeline/text_encoder");
  const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  using file = await SafetensorsFile.open(join(dir, "model.safetensors"));
  const shapes = clipTextParameterShapes(config, false);
  const stored = [...file.tensors.values()].filter((t) => !t.name.endsWith("position_ids"));
  assert.equal(stored.length, shapes.size);
  for (const t of stored) assert.deepEqual(shapes.get(t.name), t.shape, t.name);
});

Deno.test("createRandomModel() writes SD 1.x, SD 2.x and SDXL folders that every builder loads", async () => {
  for (const family of ["sd15", "sd2", "sdxl"] as const) {
    const tokenizerDir = hasShared ? sharedPath("data/clip") : undefined;
    const dir = await makeTinyModel(family, { seed: 3, ...(tokenizerDir ? { tokenizerDir } : {}) });
    try {
      const index = JSON.parse(await Deno.readTextFile(join(dir, "model_index.json")));
      const unetConfig = JSON.parse(await Deno.readTextFile(join(dir, "unet/config.json")));
      assert.equal(unetConfig._class_name, "UNet2DConditionModel");
      assert.equal(unetConfig.resnet_time_scale_shift, "default"); // defaults written out
      assert.deepEqual(index.unet, ["diffusers", "UNet2DConditionModel"]);
      const encoders = family === "sdxl" ? ["text_encoder", "text_encoder_2"] : ["text_encoder"];
      if (tokenizerDir) assert.ok(existsSync(join(dir, "tokenizer/vocab.json")));
      using unetFile = await SafetensorsFile.open(
        join(dir, "unet/diffusion_pytorch_model.safetensors"),
      );
      buildUnet(parseUnetConfig(unetConfig), tensorSources(unetFile));
      const vaeConfig = parseVaeConfig(
        JSON.parse(await Deno.readTextFile(join(dir, "vae/config.json"))),
      );
      using vaeFile = await SafetensorsFile.open(
        join(dir, "vae/diffusion_pytorch_model.safetensors"),
      );
      buildVaeEncoder(vaeConfig, tensorSources(vaeFile));
      buildVaeDecoder(vaeConfig, tensorSources(vaeFile));
      for (const enc of encoders) {
        const config = parseClipTextConfig(
          JSON.parse(await Deno.readTextFile(join(dir, enc, "config.json"))),
        );
        using file = await SafetensorsFile.open(join(dir, enc, "model.safetensors"));
        const model = buildClipTextModel(config, tensorSources(file));
        const session = await createSession(await serializeModel(model), { threads: 1 });
        const want = enc === "text_encoder_2";
        assert.equal(session.outputNames.includes("text_embeds"), want, `${family} ${enc}`);
        await session.release();
      }
    } finally {
      await Deno.remove(join(dir, ".."), { recursive: true });
    }
  }
});

Deno.test("parseUnetConfig() refuses features the builder does not implement, naming the key", () => {
  assert.throws(
    () => parseUnetConfig({ ...TINY_SD15_UNET, class_embed_type: "timestep" }),
    /"class_embed_type"/,
  );
  assert.throws(
    () => parseUnetConfig({ ...TINY_SDXL_UNET, projection_class_embeddings_input_dim: null }),
    /text_time/,
  );
  assert.throws(
    () => parseUnetConfig({ ...TINY_SD15_UNET, attention_head_dim: [8, 8] }),
    /"attention_head_dim"/,
  );
});
