import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile, writeSafetensors } from "../weights/safetensors.ts";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { parseUnetConfig } from "../models/config.ts";
import { type LoraPlan, planLoras } from "./lora.ts";
import { openLoraFile } from "./lora_file.ts";
import { ldmUnetAliases } from "./lora_keys.ts";
import { moduleDelta } from "./lora_math.ts";

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

Deno.test({
  name: "planLoras() merges Diffusers/PEFT and attention-processor names exactly like kohya's",
  ignore: !hasShared,
  fn: async () => {
    const golden = readSharedJson<LoraGolden>(`${TINY}/lora.json`);
    const weights = components(sharedPath(`${TINY}/pipeline`));
    const kohyaPath = sharedPath(`${TINY}/lora_kohya.safetensors`);
    using kohya = await SafetensorsFile.open(kohyaPath);
    // PEFT files carry no alpha: fold kohya's alpha / rank (2 / 4) into lora_B.
    const peft: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [i, m] of golden.modules.entries()) {
      const down = await kohya.readFloat32(`${m.key}.lora_down.weight`);
      const up = (await kohya.readFloat32(`${m.key}.lora_up.weight`)).map((v) => v * 0.5);
      const dshape = [...kohya.info(`${m.key}.lora_down.weight`).shape];
      const ushape = [...kohya.info(`${m.key}.lora_up.weight`).shape];
      const processor = /attn\d\.to_(q|k|v|out\.0)$/.exec(m.module);
      if (processor && i % 2 === 0) {
        const name = m.module.replace(
          /\.to_(q|k|v|out\.0)$/,
          (_, p: string) => `.processor.to_${p === "out.0" ? "out" : p}_lora`,
        );
        peft[`${name}.down.weight`] = { dtype: "F32", shape: dshape, data: down };
        peft[`${name}.up.weight`] = { dtype: "F32", shape: ushape, data: up };
      } else {
        peft[`${m.module}.lora_A.weight`] = { dtype: "F32", shape: dshape, data: down };
        peft[`${m.module}.lora_B.weight`] = { dtype: "F32", shape: ushape, data: up };
      }
    }
    const path = join(await Deno.makeTempDir(), "peft.safetensors");
    await writeSafetensors(path, peft);
    const a = await merged(
      await planLoras([{ path: kohyaPath, te: 0.8, unet: 0.3 }], weights),
      weights,
    );
    const planB = await planLoras([{ path, te: 0.8, unet: 0.3 }], weights);
    assert.equal(planB.ledgers[0]!.applied.length, golden.modules.length);
    const b = await merged(planB, weights);
    let worst = 0;
    for (const m of golden.modules) {
      const x = await floats(m.module, a.get(`${m.module}.weight`)!);
      const y = await floats(m.module, b.get(`${m.module}.weight`)!);
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    }
    assert.ok(worst < 1e-6, `maxdiff ${worst}`);
  },
});

Deno.test("planLoras() matches kohya's original-LDM UNet names (SDXL spelling) through the key table", async () => {
  const model = await makeTinyModel("sdxl", { seed: 2 });
  const unet = join(model, "unet/diffusion_pytorch_model.safetensors");
  const config = parseUnetConfig(
    JSON.parse(await Deno.readTextFile(join(model, "unet/config.json"))),
  );
  using file = await SafetensorsFile.open(unet);
  const target = [...file.tensors.keys()].find((n) =>
    /attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight$/.test(n)
  )!;
  const ldm = ldmUnetAliases(config, file.tensors.keys()).get(target)!;
  assert.match(ldm, /^(input_blocks|middle_block|output_blocks)\./);
  const [out, inFeatures] = file.info(target).shape as [number, number];
  const key = `lora_unet_${ldm.replace(/\.weight$/, "").replaceAll(".", "_")}`;
  const path = join(await Deno.makeTempDir(), "xl.safetensors");
  await writeSafetensors(path, {
    [`${key}.lora_down.weight`]: {
      dtype: "F32",
      shape: [1, inFeatures],
      data: new Float32Array(inFeatures).fill(1),
    },
    [`${key}.lora_up.weight`]: {
      dtype: "F32",
      shape: [out, 1],
      data: new Float32Array(out).fill(0.5),
    },
  });
  const plan = await planLoras([{ path, te: 1, unet: 2 }], { unet }, { unetConfig: config });
  assert.deepEqual(plan.ledgers[0]!.applied.map((a) => a.target), [target]);
  const sources = await plan.transforms.unet!.apply(await sourcesOf(unet));
  const before = await floats(target, (await sourcesOf(unet)).get(target)!);
  const after = await floats(target, sources.get(target)!);
  assert.ok(Math.abs(after[0]! - before[0]! - 1) < 1e-6, `delta ${after[0]! - before[0]!}`);
  // Without the config the LDM name matches nothing.
  await assert.rejects(planLoras([{ path, te: 1, unet: 1 }], { unet }), /matches a weight/);
});

Deno.test({
  name: "openLoraFile() reads the real LyCORIS LoKr file and refuses cloneofsimo layouts clearly",
  ignore: !hasShared,
  fn: async () => {
    const lokr = await openLoraFile(
      sharedPath("fixtures/real/lora/lycoris_lokr_smart_falcon_4.safetensors"),
    );
    try {
      assert.ok(lokr.modules.length > 100);
      assert.ok(lokr.modules.every((m) => m.algorithm === "lokr"));
      assert.deepEqual(lokr.unknown, []);
      const fc1 = lokr.modules.find((m) =>
        m.key === "lora_te_text_model_encoder_layers_0_mlp_fc1"
      )!;
      assert.equal(fc1.component, "text_encoder");
      const tensors: Record<string, { data: Float32Array; shape: number[] }> = {};
      for (const [role, name] of Object.entries(fc1.tensors)) {
        tensors[role] = {
          data: await lokr.source.readFloat32(name),
          shape: lokr.source.info(name).shape,
        };
      }
      const { delta, rank } = moduleDelta(fc1.key, fc1.algorithm, tensors);
      assert.deepEqual(delta.shape, [3072, 768]);
      assert.equal(rank, 4);
      assert.ok(delta.data.every(Number.isFinite));
    } finally {
      lokr.close();
    }
    await assert.rejects(
      openLoraFile(sharedPath("fixtures/real/lora/cloneofsimo_lora_disney_inpainting.safetensors")),
      /is a cloneofsimo lora_diffusion file/,
    );
    await assert.rejects(
      openLoraFile(sharedPath("fixtures/real/lora/cloneofsimo_lora_kiriko2.text_encoder.pt")),
      /plain list of tensors/,
    );
  },
});
