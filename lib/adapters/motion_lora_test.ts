import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { maxAbsDiff } from "../../tests/fixtures/golden.ts";
import { writeTorchCheckpoint } from "../convert/testing.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { convertFloat } from "../onnx/tensor_sources.ts";
import { memoryWeights } from "../models/layers.ts";
import { parseMotionConfig } from "../models/motion.ts";
import { openMotionAdapter } from "../models/motion_adapter.ts";
import { randomMotionWeights } from "../models/random_motion.ts";
import { SafetensorsFile, writeSafetensors } from "../weights/safetensors.ts";
import { applyMotionLoras, motionLoraTarget } from "./motion_lora.ts";

const ADAPTER = "golden/models/tiny_sd_animatediff/motion_adapter";
const LORA = "golden/models/tiny_sd_animatediff/motion_lora/diffusion_pytorch_model.safetensors";

async function values(name: string, source: TensorSource): Promise<Float32Array> {
  const bytes = await readSource(name, source);
  const from = source.dtype === "float16" ? "F16" : "F32";
  return (convertFloat(bytes, from, "float32") as Float32Array).slice();
}

/** `W + scale * up @ down` in float64 (`up [out, r]`, `down [r, in]`), as Diffusers' fuse_lora. */
function merged(
  w: Float32Array,
  up: Float32Array,
  down: Float32Array,
  rank: number,
  scale: number,
): Float64Array {
  const inF = down.length / rank;
  const result = new Float64Array(w.length);
  for (let o = 0; o < w.length / inF; o++) {
    for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let k = 0; k < rank; k++) s += up[o * rank + k]! * down[k * inF + i]!;
      result[o * inF + i] = w[o * inF + i]! + scale * s;
    }
  }
  return result;
}

/** The golden LoRA under guoyww's original AnimateDiff names (the reference's recipe). */
function originalName(key: string): string {
  return key
    .replace(/^unet\./, "")
    .replace(".attn1.", ".attention_blocks.0.")
    .replace(".attn2.", ".attention_blocks.1.")
    .replace(/(motion_modules\.\d+)\./, "$1.temporal_transformer.");
}

Deno.test({
  name: "applyMotionLoras() merges the Diffusers-layout motion LoRA as W + scale * up @ down " +
    "(no alpha: factor 1)",
  ignore: !hasShared,
  fn: async () => {
    using adapter = await openMotionAdapter(sharedPath(ADAPTER));
    const scale = 0.75;
    const result = await applyMotionLoras(adapter.weights, [{ path: sharedPath(LORA), scale }]);
    const ledger = result.ledgers[0]!;
    assert.equal(ledger.layout, "diffusers");
    assert.equal(ledger.applied.length, 168, "every attention projection of every motion module");
    using lora = await SafetensorsFile.open(sharedPath(LORA));
    let diff = 0;
    for (const { module, target } of ledger.applied) {
      const up = await lora.readFloat32(`${module}.up.weight`);
      const down = await lora.readFloat32(`${module}.down.weight`);
      const want = merged(await values(target, adapter.weights.get(target)!), up, down, 4, scale);
      diff = Math.max(diff, maxAbsDiff(await values(target, result.weights.get(target)!), want));
    }
    console.log(
      `merged motion weights vs float64 W + s * up @ down: maxdiff ${diff.toExponential(3)}`,
    );
    assert.ok(diff < 1e-6);
    // Biases and other weights are the same sources as before.
    const bias = "mid_block.motion_modules.0.transformer_blocks.0.attn1.to_out.0.bias";
    assert.equal(result.weights.get(bias), adapter.weights.get(bias));
    assert.equal(result.weights.size, adapter.weights.size);
    assert.match(result.key, /"scale":0.75/);
  },
});

Deno.test({
  name: "applyMotionLoras() reads guoyww's original motion-LoRA layout (.ckpt) to the same weights",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "denoise-motion-lora-" });
    try {
      using lora = await SafetensorsFile.open(sharedPath(LORA));
      const tensors = [];
      for (const [name, info] of lora.tensors) {
        tensors.push({
          name: originalName(name),
          dtype: "F32",
          shape: [...info.shape],
          data: await lora.read(name),
        });
      }
      assert.ok(tensors[0]!.name.includes(".temporal_transformer.transformer_blocks."));
      const ckpt = join(dir, "v2_lora_Tiny.ckpt");
      await writeTorchCheckpoint(ckpt, tensors);
      using adapter = await openMotionAdapter(sharedPath(ADAPTER));
      const a = await applyMotionLoras(adapter.weights, [{ path: sharedPath(LORA), scale: 1 }]);
      const b = await applyMotionLoras(adapter.weights, [{ path: ckpt, scale: 1 }]);
      assert.equal(b.ledgers[0]!.layout, "animatediff");
      assert.deepEqual(
        b.ledgers[0]!.applied.map((x) => x.target).sort(),
        a.ledgers[0]!.applied.map((x) => x.target).sort(),
      );
      for (const { target } of a.ledgers[0]!.applied) {
        const d = maxAbsDiff(
          await values(target, a.weights.get(target)!),
          await values(target, b.weights.get(target)!),
        );
        assert.equal(d, 0, target);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const TINY = parseMotionConfig({
  block_out_channels: [8, 16],
  motion_layers_per_block: 1,
  motion_num_attention_heads: 2,
  motion_max_seq_length: 4,
});

Deno.test("applyMotionLoras() stacks files, scales by alpha / rank when an alpha is stored", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-motion-lora-" });
  try {
    const weights = memoryWeights(randomMotionWeights(TINY, 0));
    const target = "up_blocks.1.motion_modules.1.transformer_blocks.0.attn2.to_v.weight";
    const before = await values(target, weights.get(target)!);
    const original = "up_blocks.1.motion_modules.1.temporal_transformer.transformer_blocks.0." +
      "attention_blocks.1.processor.to_v_lora";
    const converted =
      "unet.up_blocks.1.motion_modules.1.transformer_blocks.0.attn2.processor.to_v_lora";
    const down = Float32Array.from({ length: 2 * 8 }, (_, i) => Math.sin(i));
    const up = Float32Array.from({ length: 8 * 2 }, (_, i) => Math.cos(i));
    const plain = join(dir, "plain.safetensors");
    await writeSafetensors(plain, [
      { name: `${original}.down.weight`, dtype: "F32", shape: [2, 8], data: down },
      { name: `${original}.up.weight`, dtype: "F32", shape: [8, 2], data: up },
    ]);
    const withAlpha = join(dir, "alpha.safetensors");
    await writeSafetensors(withAlpha, [
      { name: `${converted}.down.weight`, dtype: "F32", shape: [2, 8], data: down },
      { name: `${converted}.up.weight`, dtype: "F32", shape: [8, 2], data: up },
      { name: `${converted}.alpha`, dtype: "F32", shape: [], data: Float32Array.of(1) },
    ]);
    const result = await applyMotionLoras(weights, [
      { path: plain, scale: 0.5 },
      { path: withAlpha, scale: 2 },
    ]);
    assert.deepEqual(result.ledgers.map((l) => l.layout), ["animatediff", "diffusers"]);
    // 0.5 * 1 + 2 * (alpha 1 / rank 2) = 1.5 times up @ down
    const d = maxAbsDiff(
      await values(target, result.weights.get(target)!),
      merged(before, up, down, 2, 1.5),
    );
    assert.ok(d < 1e-6, `maxdiff ${d}`);
    assert.equal(
      maxAbsDiff(await values(target, weights.get(target)!), before),
      0,
      "input untouched",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "applyMotionLoras() refuses a LoRA with modules the motion module lacks",
  ignore: !hasShared,
  fn: async () => {
    // The golden LoRA has mid-block modules; a module without a mid block (mm_sd_v15) lacks them.
    using adapter = await openMotionAdapter(sharedPath(ADAPTER));
    const noMid = new Map([...adapter.weights].filter(([k]) => !k.startsWith("mid_block.")));
    await assert.rejects(
      () => applyMotionLoras(noMid, [{ path: sharedPath(LORA), scale: 1 }]),
      (e: Error) => e instanceof RangeError && /mid_block\.motion_modules\.0/.test(e.message),
    );
  },
});

Deno.test("motionLoraTarget() maps every motion-LoRA spelling to the Diffusers weight", () => {
  const want = "mid_block.motion_modules.0.transformer_blocks.0.attn1.to_out.0.weight";
  for (
    const key of [
      "unet.mid_block.motion_modules.0.transformer_blocks.0.attn1.processor.to_out_lora",
      "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_out_lora",
      "mid_block.motion_modules.0.transformer_blocks.0.attn1.to_out.0",
      "unet.mid_block.motion_modules.0.transformer_blocks.0.attn1.to_out",
    ]
  ) assert.equal(motionLoraTarget(key), want, key);
  assert.equal(motionLoraTarget("unet.down_blocks.0.attentions.0.proj_in"), undefined);
  assert.equal(motionLoraTarget("mid_block.motion_modules.0.proj_in"), undefined);
});
