import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { maxAbsDiff } from "../../tests/fixtures/golden.ts";
import { SD15_UNET, SDXL_UNET } from "../../tests/fixtures/configs.ts";
import { writeTorchCheckpoint } from "../convert/testing.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { convertFloat } from "../onnx/tensor_sources.ts";
import { SafetensorsFile, writeSafetensors } from "../weights/safetensors.ts";
import { parseUnetConfig } from "./config.ts";
import { assertMotionFits, motionParameterShapes, parseMotionConfig } from "./motion.ts";
import {
  animatediffKeyToDiffusers,
  detectMotionConfig,
  diffusersKeyToAnimatediff,
  openMotionAdapter,
} from "./motion_adapter.ts";

const ADAPTER = "golden/models/tiny_sd_animatediff/motion_adapter";

async function values(name: string, source: TensorSource): Promise<Float32Array> {
  const bytes = await readSource(name, source);
  return convertFloat(bytes, source.dtype === "float16" ? "F16" : "F32", "float32") as Float32Array;
}

/** The golden adapter's tensors under their original AnimateDiff names. */
async function originalTensors(): Promise<
  Array<{ name: string; dtype: "F32"; shape: number[]; data: Uint8Array }>
> {
  using file = await SafetensorsFile.open(
    sharedPath(`${ADAPTER}/diffusion_pytorch_model.safetensors`),
  );
  const out = [];
  for (const [name, info] of file.tensors) {
    const data = await file.read(name);
    for (const original of diffusersKeyToAnimatediff(name)!) {
      out.push({ name: original, dtype: "F32" as const, shape: [...info.shape], data });
    }
  }
  return out;
}

Deno.test({
  name: "openMotionAdapter() reads an original AnimateDiff .ckpt and .safetensors like the " +
    "Diffusers folder they convert to",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "denoise-mm-" });
    try {
      const tensors = await originalTensors();
      assert.ok(tensors.some((t) => t.name.endsWith(".attention_blocks.1.pos_encoder.pe")));
      const ckpt = join(dir, "mm_tiny.ckpt");
      await writeTorchCheckpoint(ckpt, tensors);
      const st = join(dir, "mm_tiny.safetensors");
      await writeSafetensors(st, tensors);
      using folder = await openMotionAdapter(sharedPath(ADAPTER));
      for (const path of [ckpt, st]) {
        using mm = await openMotionAdapter(path);
        assert.equal(mm.layout, "animatediff");
        assert.deepEqual(mm.config, folder.config, "config detected from shapes = config.json");
        assert.deepEqual([...mm.weights.keys()].sort(), [...folder.weights.keys()].sort());
        let diff = 0;
        for (const [name, source] of mm.weights) {
          assert.ok("file" in source, `${name} is read in place from ${path}`);
          diff = Math.max(
            diff,
            maxAbsDiff(await values(name, source), await values(name, folder.weights.get(name)!)),
          );
        }
        assert.equal(diff, 0, `${path}: every weight equals the Diffusers folder's`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "openMotionAdapter() computes position tables a file lacks and casts to float16",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "denoise-mm-" });
    try {
      using file = await SafetensorsFile.open(
        sharedPath(`${ADAPTER}/diffusion_pytorch_model.safetensors`),
      );
      const kept = [];
      for (const [name, info] of file.tensors) {
        if (name.endsWith(".pos_embed.pe")) continue;
        kept.push({
          name,
          dtype: "F32" as const,
          shape: [...info.shape],
          data: await file.read(name),
        });
      }
      const path = join(dir, "no_tables.safetensors");
      await writeSafetensors(path, kept);
      using folder = await openMotionAdapter(sharedPath(ADAPTER));
      using mm = await openMotionAdapter(path);
      assert.equal(mm.layout, "diffusers");
      assert.equal(mm.config.maxSeqLength, 32, "Diffusers' default length without tables");
      const name = "up_blocks.0.motion_modules.2.transformer_blocks.0.pos_embed.pe";
      const d = maxAbsDiff(
        await values(name, mm.weights.get(name)!),
        await values(name, folder.weights.get(name)!),
      );
      console.log(`computed vs saved position table: maxdiff ${d.toExponential(3)}`);
      assert.ok(d < 1e-6);
      using half = await openMotionAdapter(sharedPath(ADAPTER), { floatType: "float16" });
      assert.ok([...half.weights.values()].every((s) => s.dtype === "float16"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "openMotionAdapter() refuses a UNet file and a config.json that contradicts the weights",
  ignore: !hasShared,
  fn: async () => {
    await assert.rejects(
      () =>
        openMotionAdapter(
          sharedPath("golden/models/tiny_sd/pipeline/unet/diffusion_pytorch_model.safetensors"),
        ),
      (e: Error) => e instanceof RangeError && /belongs to no motion module/.test(e.message),
    );
    const dir = await Deno.makeTempDir({ prefix: "denoise-mm-" });
    try {
      const config = JSON.parse(await Deno.readTextFile(sharedPath(`${ADAPTER}/config.json`)));
      await Deno.writeTextFile(
        join(dir, "config.json"),
        JSON.stringify({ ...config, motion_max_seq_length: 24 }),
      );
      await Deno.symlink(
        sharedPath(`${ADAPTER}/diffusion_pytorch_model.safetensors`),
        join(dir, "diffusion_pytorch_model.safetensors"),
      );
      await assert.rejects(() => openMotionAdapter(dir), /does not describe its weights/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The published AnimateDiff modules' layouts (guoyww/AnimateDiff configs, Diffusers hub). */
const PUBLISHED = {
  "mm_sd_v14 / mm_sd_v15": { use_motion_mid_block: false, motion_max_seq_length: 24 },
  "mm_sd_v15_v2 / v3_sd15_mm": { use_motion_mid_block: true, motion_max_seq_length: 32 },
  "mm_sdxl_v10_beta": {
    block_out_channels: [320, 640, 1280],
    use_motion_mid_block: false,
    motion_max_seq_length: 32,
  },
};

Deno.test("detectMotionConfig() tells the published motion modules apart by their shapes", () => {
  const sd15 = parseUnetConfig(SD15_UNET);
  const sdxl = parseUnetConfig(SDXL_UNET);
  for (const [label, json] of Object.entries(PUBLISHED)) {
    const want = parseMotionConfig(json);
    // The original file's names and shapes, read back through the key table.
    const shapes = new Map<string, number[]>();
    for (const [name, shape] of motionParameterShapes(want)) {
      for (const original of diffusersKeyToAnimatediff(name)!) {
        const back = animatediffKeyToDiffusers(original);
        if (back !== null) shapes.set(back!, shape);
      }
    }
    assert.deepEqual(detectMotionConfig(shapes), want, label);
    const isXl = want.blockOutChannels.length === 3;
    assertMotionFits(isXl ? sdxl : sd15, want);
    assert.throws(() => assertMotionFits(isXl ? sd15 : sdxl, want), RangeError, label);
  }
});

Deno.test("animatediffKeyToDiffusers() follows Diffusers' conversion table", () => {
  const mm = "up_blocks.3.motion_modules.2";
  const cases: Array<[string, string | null | undefined]> = [
    [`${mm}.temporal_transformer.norm.weight`, `${mm}.norm.weight`],
    [`${mm}.temporal_transformer.proj_in.bias`, `${mm}.proj_in.bias`],
    [
      `${mm}.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight`,
      `${mm}.transformer_blocks.0.attn2.to_out.0.weight`,
    ],
    [
      `${mm}.temporal_transformer.transformer_blocks.0.norms.1.bias`,
      `${mm}.transformer_blocks.0.norm2.bias`,
    ],
    [
      `${mm}.temporal_transformer.transformer_blocks.0.ff_norm.weight`,
      `${mm}.transformer_blocks.0.norm3.weight`,
    ],
    [
      `${mm}.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight`,
      `${mm}.transformer_blocks.0.ff.net.0.proj.weight`,
    ],
    [
      `${mm}.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe`,
      `${mm}.transformer_blocks.0.pos_embed.pe`,
    ],
    [`${mm}.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe`, null],
    ["down_blocks.0.resnets.0.conv1.weight", undefined],
    ["model.diffusion_model.input_blocks.1.0.in_layers.0.weight", undefined],
  ];
  for (const [from, to] of cases) assert.equal(animatediffKeyToDiffusers(from), to, from);
});
