/**
 * LoRA and textual inversion through the real CLI: the Diffusers golden image with the kohya LoRA
 * at 0.7 (by --lora and by prompt tag with --lora-dir), A1111 hashes in the metadata, and the
 * errors for files that are not LoRAs or match nothing.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import sharp from "sharp";
import { writeSafetensors } from "../lib/weights/safetensors.ts";
import { runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { hasShared, sharedPath } from "./shared.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-lora-home-" });
const ENV = { DENOISE_HOME: HOME };
const TINY = sharedPath("golden/models/tiny_dummy");
const LORA = join(TINY, "lora_kohya.safetensors");
const GOLDEN = join(TINY, "txt2img_lora07_EulerDiscreteScheduler.png");
const ARGS = ["--steps", "4", "--cfg", "7.5", "--seed", "0", "--sampler", "euler", "-q"];

async function maxPixelDiff(a: Uint8Array, b: Uint8Array): Promise<number> {
  const [pa, pb] = [
    await sharp(a).removeAlpha().raw().toBuffer(),
    await sharp(b).removeAlpha().raw().toBuffer(),
  ];
  assert.equal(pa.length, pb.length, "image sizes differ");
  let max = 0;
  for (let i = 0; i < pa.length; i++) max = Math.max(max, Math.abs(pa[i]! - pb[i]!));
  return max;
}

Deno.test({
  name: "generate --lora FILE:0.7 matches the Diffusers golden image within 1/255",
  ignore: !hasShared,
  fn: async () => {
    const r = await runCli(
      [
        "generate",
        "a photo of a cat",
        "-m",
        join(TINY, "pipeline"),
        "--lora",
        `${LORA}:0.7`,
        ...ARGS,
      ],
      { env: ENV },
    );
    assert.equal(r.code, 0, r.stderr);
    const diff = await maxPixelDiff(r.stdout, await Deno.readFile(GOLDEN));
    assert.ok(diff <= 1, `maxdiff ${diff} > 1`);
    // The hash A1111 records: sha256 of the bytes after the safetensors header, 12 digits.
    const bytes = await Deno.readFile(LORA);
    const header = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const addnet = createHash("sha256").update(bytes.subarray(8 + header)).digest("hex");
    const png = new TextDecoder("latin1").decode(r.stdout);
    assert.ok(
      png.includes(`Lora hashes: "lora_kohya: ${addnet.slice(0, 12)}"`),
      "no Lora hashes entry in the infotext",
    );
  },
});

Deno.test({
  name:
    "generate with <lora:lora_kohya:0.7> and --lora-dir matches the golden image; --debug prints the ledger",
  ignore: !hasShared,
  fn: async () => {
    const r = await runCli([
      "generate",
      "a photo of a cat<lora:lora_kohya:0.7>",
      "-m",
      join(TINY, "pipeline"),
      "--lora-dir",
      TINY,
      ...ARGS,
      "--debug",
    ], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    const diff = await maxPixelDiff(r.stdout, await Deno.readFile(GOLDEN));
    assert.ok(diff <= 1, `maxdiff ${diff} > 1`);
    assert.match(r.stderr, /LoRA "lora_kohya" \(.*\): 66 modules applied, 0 not in the model/);
    assert.match(
      r.stderr,
      /applied lora_unet_mid_block_attentions_0_proj_in -> unet\.mid_block\.attentions\.0\.proj_in\.weight/,
    );
  },
});

Deno.test({
  name: "generate refuses an embedding given as --lora, a missing tag and a LoRA for another model",
  ignore: !hasShared,
  fn: async () => {
    const model = join(TINY, "pipeline");
    const asLora = await runCli([
      "generate",
      "a cat",
      "-m",
      model,
      "--lora",
      sharedPath("fixtures/real/embeddings/EasyNegative.safetensors"),
      ...ARGS,
    ], { env: ENV });
    assert.notEqual(asLora.code, 0);
    assert.match(asLora.stderr, /it is a textual-inversion embedding, not a LoRA/);
    const noDir = await runCli(["generate", "a cat <lora:x:1>", "-m", model, ...ARGS], {
      env: ENV,
    });
    assert.notEqual(noDir.code, 0);
    assert.match(noDir.stderr, /no LoRA folder is set; pass --lora-dir DIR/);
    const sd15 = await runCli([
      "generate",
      "a cat",
      "-m",
      model,
      "--lora",
      sharedPath("fixtures/real/lora/lycoris_lokr_smart_falcon_4.safetensors"),
      ...ARGS,
    ], { env: ENV });
    assert.notEqual(sd15.code, 0);
    assert.match(sd15.stderr, /changes a weight of shape|matches a weight of this model/);
  },
});

Deno.test("generate --lora at scale 0 equals no LoRA, at 1 differs; --embedding token in the prompt", async () => {
  const model = await makeTinyModel("sd15", {
    seed: 5,
    tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir()),
  });
  const dir = await Deno.makeTempDir();
  // A LoCon-style LoRA on one attention projection and one 3x3 conv of the random model.
  const lora = join(dir, "tiny.safetensors");
  const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 0.5);
  await writeSafetensors(lora, {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": {
      dtype: "F32",
      shape: [2, 32],
      data: rand(64),
    },
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": {
      dtype: "F32",
      shape: [32, 2],
      data: rand(64),
    },
    "lora_unet_conv_in.lora_down.weight": { dtype: "F32", shape: [2, 4, 3, 3], data: rand(72) },
    "lora_unet_conv_in.lora_up.weight": { dtype: "F32", shape: [32, 2, 1, 1], data: rand(64) },
    "lora_unet_conv_in.alpha": { dtype: "F32", shape: [], data: Float32Array.of(1) },
  });
  const emb = join(dir, "Shiny.safetensors");
  await writeSafetensors(emb, { emb_params: { dtype: "F32", shape: [2, 32], data: rand(64) } });
  const base = ["generate", "a fox", "-m", model, "--steps", "2", "--seed", "3", "-q"];
  const none = await runCli(base, { env: ENV });
  const zero = await runCli([...base, "--lora", `${lora}:0`], { env: ENV });
  const one = await runCli([...base, "--lora", lora, "--debug"], { env: ENV });
  for (const r of [none, zero, one]) assert.equal(r.code, 0, r.stderr);
  assert.equal(await maxPixelDiff(none.stdout, zero.stdout), 0);
  assert.ok((await maxPixelDiff(none.stdout, one.stdout)) > 0, "the LoRA changed nothing");
  assert.match(one.stderr, /2 modules applied/);
  const ti = await runCli([
    ...base.slice(0, 1),
    "a Shiny fox",
    ...base.slice(2),
    "--embedding",
    emb,
  ], {
    env: ENV,
  });
  assert.equal(ti.code, 0, ti.stderr);
  assert.ok((await maxPixelDiff(none.stdout, ti.stdout)) > 0, "the embedding changed nothing");
  assert.match(new TextDecoder("latin1").decode(ti.stdout), /TI hashes: "Shiny: [0-9a-f]{12}"/);
});
