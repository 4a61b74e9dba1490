import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { writeSafetensors } from "../weights/safetensors.ts";
import { type LoraPlan, planLoras } from "./lora.ts";

const TINY = "golden/models/tiny_dummy";

interface LoraGolden {
  modules: Array<{ key: string; module: string; weight_shape: number[] }>;
  merged: Record<string, { weights: Record<string, { sum: number; abs_sum: number }> }>;
}

async function floats(name: string, source: TensorSource): Promise<Float32Array> {
  const bytes = (await readSource(name, source)).slice();
  return new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
}

async function sourcesOf(path: string): Promise<Map<string, TensorSource>> {
  using file = await SafetensorsFile.open(path);
  return tensorSources(file, { floatType: "float32" });
}

function components(root: string) {
  return {
    unet: join(root, "unet/diffusion_pytorch_model.safetensors"),
    text_encoder: join(root, "text_encoder/model.safetensors"),
  };
}

async function merged(plan: LoraPlan, weights: ReturnType<typeof components>) {
  const out = new Map<string, TensorSource>();
  for (const c of ["unet", "text_encoder"] as const) {
    const t = plan.transforms[c];
    assert.ok(t, `no transform for ${c}`);
    for (const [k, v] of await t.apply(await sourcesOf(weights[c]))) out.set(`${c}.${k}`, v);
  }
  return out;
}

// Golden: ../shared/golden/models/tiny_dummy/lora.json (kohya file merged in PyTorch float32,
// checksums accumulated in float64, rounded to 7 significant digits).
Deno.test({
  name: "planLoras() merges the kohya LoRA like PyTorch at scales 1.0 and 0.5 (tiny_dummy)",
  ignore: !hasShared,
  fn: async () => {
    const golden = readSharedJson<LoraGolden>(`${TINY}/lora.json`);
    const weights = components(sharedPath(`${TINY}/pipeline`));
    for (const scale of ["1.0", "0.5"]) {
      const s = Number(scale);
      const plan = await planLoras(
        [{ path: sharedPath(`${TINY}/lora_kohya.safetensors`), te: s, unet: s }],
        weights,
      );
      const ledger = plan.ledgers[0]!;
      assert.equal(ledger.applied.length, golden.modules.length);
      assert.deepEqual(ledger.unmatched, []);
      const sources = await merged(plan, weights);
      let worst = 0;
      for (const m of golden.modules) {
        const applied = ledger.applied.find((a) => a.module === m.key);
        assert.ok(applied, `${m.key} not applied`);
        assert.equal(`${applied.component}.${applied.target}`, `${m.module}.weight`);
        const source = sources.get(`${m.module}.weight`)!;
        assert.ok("data" in source, `${m.module} was not materialised`);
        const w = await floats(m.module, source);
        let sum = 0;
        let abs = 0;
        for (const v of w) {
          sum += v;
          abs += Math.abs(v);
        }
        const ref = golden.merged[scale]!.weights[m.key]!;
        const err = Math.max(Math.abs(sum - ref.sum), Math.abs(abs - ref.abs_sum) / ref.abs_sum);
        worst = Math.max(worst, err);
      }
      assert.ok(worst < 2e-5, `scale ${scale}: maxdiff ${worst}`);
      // Untouched weights stay references into the file.
      const untouched = sources.get("unet.conv_in.weight")!;
      assert.ok("file" in untouched, "conv_in was copied");
    }
  },
});

Deno.test({
  name: "planLoras() cache key changes with the scale only for the component it affects",
  ignore: !hasShared,
  fn: async () => {
    const weights = components(sharedPath(`${TINY}/pipeline`));
    const path = sharedPath(`${TINY}/lora_kohya.safetensors`);
    const a = await planLoras([{ path, te: 1, unet: 1 }], weights);
    const b = await planLoras([{ path, te: 1, unet: 0.5 }], weights);
    assert.equal(a.transforms.text_encoder!.key, b.transforms.text_encoder!.key);
    assert.notEqual(a.transforms.unet!.key, b.transforms.unet!.key);
  },
});

Deno.test({
  name: "planLoras() applies the tiny_sd kohya LoRA to every target of the SD 1.x layout",
  ignore: !hasShared,
  fn: async () => {
    const weights = components(sharedPath("golden/models/tiny_sd/pipeline"));
    const plan = await planLoras(
      [{ path: sharedPath("golden/models/tiny_sd/lora_kohya.safetensors"), te: 1, unet: 1 }],
      weights,
    );
    const ledger = plan.ledgers[0]!;
    assert.deepEqual(ledger.unmatched, []);
    assert.deepEqual(ledger.ignored, []);
    assert.equal(ledger.applied.length, 630 / 3);
  },
});

Deno.test("planLoras() refuses a LoRA for another model and a change of the wrong shape", async () => {
  const dir = await Deno.makeTempDir();
  const model = join(dir, "model.safetensors");
  await writeSafetensors(model, {
    "down_blocks.0.attentions.0.proj_in.weight": {
      dtype: "F32",
      shape: [4, 8],
      data: new Float32Array(32),
    },
  });
  const other = join(dir, "other.safetensors");
  await writeSafetensors(other, {
    "lora_unet_input_blocks_1_1_proj_in.lora_down.weight": {
      dtype: "F32",
      shape: [2, 8],
      data: new Float32Array(16),
    },
    "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": {
      dtype: "F32",
      shape: [4, 2],
      data: new Float32Array(8),
    },
  });
  await assert.rejects(
    planLoras([{ path: other, te: 1, unet: 1 }], { unet: model }),
    /Cannot apply LoRA "other.safetensors": none of its 1 modules matches a weight/,
  );
  const wrong = join(dir, "wrong.safetensors");
  await writeSafetensors(wrong, {
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": {
      dtype: "F32",
      shape: [2, 6],
      data: new Float32Array(12),
    },
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": {
      dtype: "F32",
      shape: [4, 2],
      data: new Float32Array(8),
    },
  });
  await assert.rejects(
    planLoras([{ path: wrong, te: 1, unet: 1 }], { unet: model }),
    /"lora_unet_down_blocks_0_attentions_0_proj_in" changes a weight of shape \[4, 6\], but "down_blocks.0.attentions.0.proj_in.weight" has shape \[4, 8\]/,
  );
});
