import assert from "node:assert/strict";
import { join } from "node:path";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { writeSafetensors } from "../weights/safetensors.ts";
import { diffSafetensors, readAllTensors, writeTorchCheckpoint } from "./testing.ts";
import { emaKey } from "../model_io/key_map.ts";
import { convertCheckpoint } from "./to_diffusers.ts";
import { writeSingleFile } from "./to_single_file.ts";

// Tiny widths are not 64 channels per head; the heads come from an LDM YAML, as users pass one.
const YAML = "model:\n  params:\n    unet_config:\n      params:\n        num_head_channels: 16\n";

const UNET = "unet/diffusion_pytorch_model.safetensors";
const VAE = "vae/diffusion_pytorch_model.safetensors";
const TEXT = "text_encoder/model.safetensors";

async function same(a: string, b: string, what: string): Promise<void> {
  const d = await diffSafetensors(a, b);
  assert.deepEqual(
    [d.onlyA, d.onlyB, d.different.slice(0, 3)],
    [[], [], []],
    `${what}: maxdiff ${d.maxAbs}`,
  );
}

Deno.test("convertCheckpoint() reads a tiny SD 2.x .ckpt exactly; global_step 875000 means epsilon", async () => {
  const dir = await Deno.makeTempDir();
  const tok = await writeByteTokenizer(join(dir, "tok"));
  const model = await makeTinyModel("sd2", { seed: 7, tokenizerDir: tok });
  try {
    await writeSingleFile(model, join(dir, "sd2.safetensors"));
    const tensors = await readAllTensors(join(dir, "sd2.safetensors"));
    const yaml = join(dir, "v2.yaml");
    await Deno.writeTextFile(yaml, YAML);
    for (const [step, prediction] of [[875000, "epsilon"], [110000, "v_prediction"]] as const) {
      const ckpt = join(dir, `sd2-${step}.ckpt`);
      await writeTorchCheckpoint(ckpt, tensors, step);
      const out = join(dir, `out-${step}`);
      const r = await convertCheckpoint(ckpt, out, { tokenizerDir: tok, originalConfig: yaml });
      assert.equal(r.detected.family, "sd2");
      assert.equal(r.detected.prediction, prediction);
      const sched = JSON.parse(
        await Deno.readTextFile(join(out, "scheduler/scheduler_config.json")),
      );
      assert.equal(sched.prediction_type, prediction);
      assert.equal(sched._class_name, "DDIMScheduler");
      for (const f of [UNET, VAE, TEXT]) await same(join(out, f), join(model, f), `${step} ${f}`);
      const tokenizer = JSON.parse(
        await Deno.readTextFile(join(out, "tokenizer/special_tokens_map.json")),
      );
      assert.equal(tokenizer.pad_token, "!");
    }
    // Without a YAML the tiny widths leave the heads unknown; --config-from supplies every
    // config, as Diffusers' from_single_file(config=...) does, and the folder comes back whole.
    const ckpt = join(dir, "sd2-110000.ckpt");
    await assert.rejects(
      convertCheckpoint(ckpt, join(dir, "no-yaml"), { tokenizerDir: tok }),
      /--config-from/,
    );
    await convertCheckpoint(ckpt, join(dir, "from"), { tokenizerDir: tok, configFrom: model });
    for (const f of [UNET, VAE, TEXT]) await same(join(dir, "from", f), join(model, f), f);
    for (
      const c of ["unet/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json"]
    ) {
      const got = JSON.parse(await Deno.readTextFile(join(dir, "from", c)));
      const want = JSON.parse(await Deno.readTextFile(join(model, c)));
      for (const k of Object.keys(want)) {
        if (k !== "_diffusers_version" && k !== "torch_dtype") {
          assert.deepEqual(got[k], want[k], `${c} ${k}`);
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(join(model, ".."), { recursive: true });
  }
});

Deno.test("convertCheckpoint() --extract-ema reads model_ema.* and --vae replaces the VAE", async () => {
  const dir = await Deno.makeTempDir();
  const tok = await writeByteTokenizer(join(dir, "tok"));
  const model = await makeTinyModel("sd15", { seed: 8, tokenizerDir: tok });
  const other = await makeTinyModel("sd15", { seed: 9, tokenizerDir: tok });
  try {
    await writeSingleFile(model, join(dir, "a.safetensors"));
    await writeSingleFile(other, join(dir, "b.safetensors"));
    const tensors = await readAllTensors(join(dir, "a.safetensors"));
    // Training checkpoint: live UNet weights zeroed, the EMA copy holds the real ones.
    const withEma = tensors.flatMap((t) => {
      if (!t.name.startsWith("model.diffusion_model.")) return [t];
      return [{ ...t, data: new Uint8Array(t.data.length) }, { ...t, name: emaKey(t.name) }];
    });
    withEma.push({
      name: "model_ema.num_updates",
      dtype: "I64",
      shape: [],
      data: new Uint8Array(8),
    });
    const ckpt = join(dir, "train.ckpt");
    await writeTorchCheckpoint(ckpt, withEma);
    // A stand-alone VAE in the LDM layout without prefix (like vae-ft-mse-840000-ema-pruned).
    const vae = (await readAllTensors(join(dir, "b.safetensors")))
      .filter((t) => t.name.startsWith("first_stage_model."))
      .map((t) => ({ ...t, name: t.name.slice("first_stage_model.".length) }));
    const vaeFile = join(dir, "vae.safetensors");
    await writeSafetensors(vaeFile, vae as Parameters<typeof writeSafetensors>[1]);

    const yaml = join(dir, "v1.yaml");
    await Deno.writeTextFile(yaml, YAML.replace("num_head_channels: 16", "num_heads: 8"));
    const out = join(dir, "ema");
    const r = await convertCheckpoint(ckpt, out, {
      tokenizerDir: tok,
      originalConfig: yaml,
      extractEma: true,
      vae: vaeFile,
    });
    assert.ok(r.detected.hasEma);
    await same(join(out, UNET), join(model, UNET), "EMA unet");
    await same(join(out, VAE), join(other, VAE), "--vae");
    await same(join(out, TEXT), join(model, TEXT), "text encoder");

    // Without --extract-ema the live (zero) weights are used, and a note says EMA exists.
    const plain = await convertCheckpoint(ckpt, join(dir, "plain"), {
      tokenizerDir: tok,
      originalConfig: yaml,
    });
    assert.ok(plain.detected.notes.some((n) => n.includes("--extract-ema")));
    const d = await diffSafetensors(join(dir, "plain", UNET), join(model, UNET));
    assert.ok(d.different.length > 0);
    // --extract-ema on a file without EMA weights is refused.
    await assert.rejects(
      convertCheckpoint(join(dir, "a.safetensors"), join(dir, "x"), {
        tokenizerDir: tok,
        extractEma: true,
      }),
      /has no model_ema/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(join(model, ".."), { recursive: true });
    await Deno.remove(join(other, ".."), { recursive: true });
  }
});
