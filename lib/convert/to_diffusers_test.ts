import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import {
  createRandomModel,
  makeTinyModel,
  TINY_MODELS,
} from "../../tests/fixtures/random_model.ts";
import { TINY_SD15_UNET, TINY_SDXL_UNET } from "../../tests/fixtures/configs.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { openWeights } from "../weights/weight_source.ts";
import { detectCheckpoint, synthesizeConfigs } from "./detect.ts";
import { diffSafetensors, stripMetadata } from "./testing.ts";
import { convertCheckpoint } from "./to_diffusers.ts";
import { writeSingleFile } from "./to_single_file.ts";

const TINY = "golden/models/tiny_sd";
const FILES: Array<[string, string]> = [
  ["unet", "diffusion_pytorch_model.safetensors"],
  ["vae", "diffusion_pytorch_model.safetensors"],
  ["text_encoder", "model.safetensors"],
  ["text_encoder_2", "model.safetensors"],
];

async function assertSameFolder(a: string, b: string, what: string): Promise<void> {
  for (const [dir, file] of FILES) {
    const pa = join(a, dir, file);
    const pb = join(b, dir, file);
    let exists = true;
    try {
      await Deno.stat(pb);
    } catch {
      exists = false;
    }
    if (!exists) continue;
    const d = await diffSafetensors(pa, pb);
    assert.deepEqual(
      { onlyA: d.onlyA, onlyB: d.onlyB, different: d.different.slice(0, 5) },
      { onlyA: [], onlyB: [], different: [] },
      `${what} ${dir}: not bit-identical (maxdiff ${d.maxAbs})`,
    );
    const ca = JSON.parse(await Deno.readTextFile(join(a, dir, "config.json")));
    const cb = JSON.parse(await Deno.readTextFile(join(b, dir, "config.json")));
    for (const k of Object.keys(cb)) {
      if (k.startsWith("_") || k === "torch_dtype" || k === "transformers_version") continue;
      assert.deepEqual(ca[k], cb[k], `${what} ${dir}/config.json "${k}"`);
    }
  }
}

// Golden: ../shared/golden/models/tiny_sd: ldm/tiny_sd_ldm_fp16.safetensors was written by
// Diffusers' convert_diffusers_to_original_stable_diffusion.py --half from pipeline/, whose fp32
// weights are fp16-representable, so the upcast single file equals the folder bit for bit.
Deno.test({
  name: "convertCheckpoint() turns the tiny_sd LDM fp16 file into the Diffusers folder bit-exactly",
  ignore: !hasShared,
  fn: async () => {
    const out = await Deno.makeTempDir();
    try {
      const r = await convertCheckpoint(
        sharedPath(`${TINY}/ldm/tiny_sd_ldm_fp16.safetensors`),
        join(out, "fp32"),
        {
          tokenizerDir: sharedPath(`${TINY}/pipeline/tokenizer`),
          dtype: "fp32",
          originalConfig: sharedPath(`${TINY}/ldm/v1-inference-tiny.yaml`),
        },
      );
      assert.equal(r.detected.family, "sd1");
      assert.equal(r.detected.prediction, "epsilon");
      assert.deepEqual(r.tensors, { unet: 684, vae: 244, text_encoder: 53 });
      const golden = sharedPath(`${TINY}/pipeline`);
      for (const [dir, file] of FILES.slice(0, 3)) {
        const d = await diffSafetensors(join(out, "fp32", dir, file), join(golden, dir, file));
        assert.deepEqual(
          [d.onlyA, d.onlyB, d.different],
          [[], [], []],
          `${dir}: maxdiff ${d.maxAbs}`,
        );
        assert.equal(d.maxAbs, 0);
      }
      // Configs, scheduler and tokenizer the pipeline reads.
      for (const dir of ["unet", "vae"]) {
        const got = JSON.parse(await Deno.readTextFile(join(out, "fp32", dir, "config.json")));
        const want = JSON.parse(await Deno.readTextFile(join(golden, dir, "config.json")));
        delete got._diffusers_version;
        delete want._diffusers_version;
        assert.deepEqual(got, want, `${dir}/config.json`);
      }
      const te = JSON.parse(await Deno.readTextFile(join(out, "fp32/text_encoder/config.json")));
      for (
        const k of ["hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers"]
      ) {
        assert.equal(
          te[k],
          {
            hidden_size: 32,
            intermediate_size: 64,
            num_attention_heads: 8,
            num_hidden_layers: 3,
          }[k],
        );
      }
      const sched = JSON.parse(
        await Deno.readTextFile(join(out, "fp32/scheduler/scheduler_config.json")),
      );
      const wantSched = JSON.parse(
        await Deno.readTextFile(join(golden, "scheduler/scheduler_config.json")),
      );
      assert.deepEqual(sched, wantSched);

      // Default dtype keeps fp16; its upcast is still exact.
      await convertCheckpoint(
        sharedPath(`${TINY}/ldm/tiny_sd_ldm_fp16.safetensors`),
        join(out, "keep"),
        { tokenizerDir: sharedPath(`${TINY}/pipeline/tokenizer`) },
      );
      const unet = await SafetensorsFile.open(
        join(out, "keep/unet/diffusion_pytorch_model.safetensors"),
      );
      assert.equal(unet.info("conv_in.weight").dtype, "F16");
      unet.close();
      const d = await diffSafetensors(
        join(out, "keep/unet/diffusion_pytorch_model.safetensors"),
        join(golden, "unet/diffusion_pytorch_model.safetensors"),
      );
      assert.equal(d.maxAbs, 0, `fp16 upcast maxdiff ${d.maxAbs}`);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "writeSingleFile() gives the reference LDM file's keys and values, and round-trips losslessly",
  ignore: !hasShared,
  fn: async () => {
    const out = await Deno.makeTempDir();
    try {
      const golden = sharedPath(`${TINY}/pipeline`);
      const single = join(out, "tiny.safetensors");
      const n = await writeSingleFile(golden, single, { dtype: "fp16" });
      assert.equal(n, 981);
      const d = await diffSafetensors(
        single,
        sharedPath(`${TINY}/ldm/tiny_sd_ldm_fp16.safetensors`),
      );
      assert.deepEqual(d.onlyA, []);
      assert.deepEqual(d.onlyB, []);
      // position_ids is int64 here and fp16 in the reference (Diffusers' --half casts it too).
      assert.deepEqual(d.different, [
        "cond_stage_model.transformer.text_model.embeddings.position_ids",
      ]);
      assert.equal(d.maxAbs, 0);

      // Folder -> fp32 single file -> folder is lossless.
      const single32 = join(out, "tiny32.safetensors");
      await writeSingleFile(golden, single32);
      await convertCheckpoint(single32, join(out, "back"), {
        tokenizerDir: join(golden, "tokenizer"),
      });
      await assertSameFolder(join(out, "back"), golden, "round trip");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

for (const family of ["sd2", "sdxl"] as const) {
  Deno.test(`writeSingleFile() and convertCheckpoint() round-trip a tiny ${family} model exactly`, async () => {
    const out = await Deno.makeTempDir();
    const tok = await writeByteTokenizer(join(out, "tok"));
    const model = await makeTinyModel(family, { seed: 3, tokenizerDir: tok });
    try {
      const single = join(out, `${family}.safetensors`);
      await writeSingleFile(model, single);
      const src = await openWeights(single);
      const names = src.names();
      if (family === "sd2") {
        assert.ok(
          names.includes("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"),
        );
        assert.ok(names.includes("cond_stage_model.model.positional_embedding"));
      } else {
        assert.ok(
          names.includes("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"),
        );
        assert.ok(names.includes("conditioner.embedders.1.model.text_projection"));
        assert.ok(names.includes("model.diffusion_model.label_emb.0.0.weight"));
      }
      src.close();
      const r = await convertCheckpoint(single, join(out, "back"), { tokenizerDir: tok });
      assert.equal(r.detected.family, family);
      assert.ok(r.configsFromMetadata);
      await assertSameFolder(join(out, "back"), model, family);
    } finally {
      await Deno.remove(out, { recursive: true });
      await Deno.remove(join(model, ".."), { recursive: true });
    }
  });
}

Deno.test("detectCheckpoint() and synthesizeConfigs() read tiny sd2, sdxl and inpainting files from shapes alone", async () => {
  const out = await Deno.makeTempDir();
  const tok = await writeByteTokenizer(join(out, "tok"));
  try {
    const cases: Array<[string, string, string, Record<string, unknown>]> = [];
    for (const family of ["sd2", "sdxl"] as const) {
      const model = await makeTinyModel(family, { seed: 1, tokenizerDir: tok });
      cases.push([
        family,
        model,
        family === "sd2" ? "SD 2.x, v-prediction" : "SDXL base, epsilon",
        {},
      ]);
    }
    const inpaint = join(out, "inpaint");
    await createRandomModel(
      { ...TINY_MODELS.sd15, unet: { ...TINY_SD15_UNET, in_channels: 9 } },
      inpaint,
      { tokenizerDir: tok },
    );
    cases.push(["sd1", inpaint, "SD 1.x, epsilon, 9-channel inpainting", {}]);
    for (const [family, model, label] of cases) {
      const withMeta = join(out, `${family}-meta.safetensors`);
      const bare = join(out, `${family}.safetensors`);
      await writeSingleFile(model, withMeta);
      await stripMetadata(withMeta, bare);
      const src = await openWeights(bare);
      const detected = detectCheckpoint(src);
      assert.equal(detected.family, family);
      assert.equal(detected.label, label);
      // Tiny widths are not 64 per head as in released models; heads come from a YAML here.
      const yaml = { model: { params: { unet_config: { params: { num_head_channels: 16 } } } } };
      const configs = synthesizeConfigs(src, detected, yaml);
      src.close();
      const want = JSON.parse(await Deno.readTextFile(join(model, "unet/config.json")));
      for (
        const k of [
          "in_channels",
          "down_block_types",
          "up_block_types",
          "block_out_channels",
          "cross_attention_dim",
          "use_linear_projection",
          "addition_embed_type",
          "addition_time_embed_dim",
          "projection_class_embeddings_input_dim",
        ]
      ) {
        if (want[k] === null && configs.unet[k] === undefined) continue;
        assert.deepEqual(configs.unet[k], want[k], `${family} unet ${k}`);
      }
      const layers = configs.unet["layers_per_block"];
      assert.deepEqual(layers, want["layers_per_block"], `${family} layers_per_block`);
      const depth = configs.unet["transformer_layers_per_block"];
      const wantDepth = want["transformer_layers_per_block"];
      assert.deepEqual(depth, wantDepth, `${family} transformer_layers_per_block`);
      const vae = JSON.parse(await Deno.readTextFile(join(model, "vae/config.json")));
      for (const k of ["block_out_channels", "layers_per_block", "latent_channels"]) {
        assert.deepEqual(configs.vae[k], vae[k], `${family} vae ${k}`);
      }
      if (family !== "sdxl") continue;
      const te2 = JSON.parse(await Deno.readTextFile(join(model, "text_encoder_2/config.json")));
      for (const k of ["hidden_size", "intermediate_size", "num_hidden_layers", "projection_dim"]) {
        assert.equal(configs.textEncoder2?.[k], te2[k], `sdxl text_encoder_2 ${k}`);
      }
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("a tiny SDXL refiner (OpenCLIP only, 5 time ids) round-trips and is detected from shapes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = await writeByteTokenizer(join(dir, "tok"));
    const model = join(dir, "refiner");
    const te2 = { ...TINY_MODELS.sdxl.textEncoder2 as Record<string, unknown> };
    await createRandomModel(
      {
        unet: {
          ...TINY_SDXL_UNET,
          cross_attention_dim: 32,
          projection_class_embeddings_input_dim: 32 + 5 * 8,
        },
        vae: TINY_MODELS.sdxl.vae,
        textEncoder2: te2,
        scheduler: TINY_MODELS.sdxl.scheduler,
      },
      model,
      { tokenizerDir: tok },
    );
    const single = join(dir, "refiner.safetensors");
    await writeSingleFile(model, single);
    const src = await openWeights(single);
    assert.ok(src.names().includes("conditioner.embedders.0.model.text_projection"));
    const detected = detectCheckpoint(src);
    assert.equal(detected.family, "sdxl-refiner");
    const yaml = { model: { params: { network_config: { params: { num_head_channels: 16 } } } } };
    const configs = synthesizeConfigs(src, detected, yaml);
    assert.equal(configs.unet["addition_time_embed_dim"], 8);
    assert.equal(configs.unet["projection_class_embeddings_input_dim"], 72);
    assert.equal(configs.textEncoder, undefined);
    assert.equal(configs.index["requires_aesthetics_score"], true);
    src.close();
    const r = await convertCheckpoint(single, join(dir, "back"), { tokenizerDir: tok });
    assert.deepEqual(Object.keys(r.tensors).sort(), ["text_encoder_2", "unet", "vae"]);
    await assertSameFolder(join(dir, "back"), model, "refiner");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
