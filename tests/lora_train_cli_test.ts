/**
 * lora-train through the real CLI on tiny random models: a few steps on a two-image folder, the
 * kohya file (modules, .alpha, ss_* metadata, hashes) loaded by lib/adapters and by
 * `generate --lora`, resume after kill -9 giving the same weights as a straight run, SD 2.x
 * (v-prediction) and SDXL with text-encoder LoRA, and the bad inputs.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import sharp from "sharp";
import { fileHashes } from "../lib/adapters/hashes.ts";
import { planLoras } from "../lib/adapters/lora.ts";
import { SafetensorsFile } from "../lib/weights/safetensors.ts";
import { listDir, runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { REPO_ROOT } from "./shared.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-train-home-" });
const ENV = { DENOISE_HOME: HOME };
const TOKENIZER = await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" }));
const SD15 = await makeTinyModel("sd15", { seed: 3, tokenizerDir: TOKENIZER });
const WORK = await Deno.makeTempDir({ prefix: "denoise-train-" });
const SIZE = ["--resolution", "64", "--seed", "1"];

/** A folder with two captioned images (not square, so resizing and cropping matter). */
async function twoImages(dir: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const images = [["red", { r: 230, g: 20, b: 10 }, 80, 64], [
    "blue",
    { r: 10, g: 30, b: 220 },
    64,
    96,
  ]];
  for (const [name, background, width, height] of images) {
    const png = await sharp({
      create: {
        width: width as number,
        height: height as number,
        channels: 3,
        background: background as { r: number; g: number; b: number },
      },
    }).png().toBuffer();
    await Deno.writeFile(join(dir, `${name}.png`), png);
    await Deno.writeTextFile(join(dir, `${name}.txt`), `a ${name} square, flat`);
  }
  return dir;
}
const DATA = await twoImages(join(WORK, "data"));

async function readLora(path: string): Promise<Record<string, Float32Array>> {
  using file = await SafetensorsFile.open(path);
  const out: Record<string, Float32Array> = {};
  for (const name of file.tensors.keys()) out[name] = await file.readFloat32(name);
  return out;
}

function maxDiff(a: Record<string, Float32Array>, b: Record<string, Float32Array>): number {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
  let max = 0;
  for (const [k, x] of Object.entries(a)) {
    const y = b[k]!;
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return max;
}

async function pixelDiff(a: Uint8Array, b: Uint8Array): Promise<number> {
  const [pa, pb] = [await sharp(a).raw().toBuffer(), await sharp(b).raw().toBuffer()];
  let max = 0;
  for (let i = 0; i < pa.length; i++) max = Math.max(max, Math.abs(pa[i]! - pb[i]!));
  return max;
}

Deno.test("lora-train trains on a two-image folder; the kohya file loads in lib/adapters and generate --lora changes the image", async () => {
  const out = join(WORK, "cat.safetensors");
  const r = await runCli([
    "lora-train",
    DATA,
    "-o",
    out,
    "-m",
    SD15,
    "--steps",
    "4",
    "--lr",
    "0.05",
    ...SIZE,
    "--json",
    "--progress",
    "json",
  ], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.text);
  assert.equal(summary.steps, 4);
  assert.equal(summary.job.command, "lora-train");
  // Progress: one JSON line per step with loss, learning rate, it/s and ETA.
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  const steps = lines.filter((l) => l.task === "lora-train");
  assert.equal(steps.length, 4);
  for (const s of steps) {
    assert.ok(
      Number.isFinite(s.loss) && s.lr === 0.05 && s.it_s > 0 && s.eta_s >= 0,
      JSON.stringify(s),
    );
  }
  // The kohya file: down, up and alpha per module; kohya's metadata and hashes.
  using file = await SafetensorsFile.open(out);
  const modules = [...file.tensors.keys()].filter((k) => k.endsWith(".alpha"));
  assert.equal(modules.length, 80); // 10 transformers x (attn1, attn2) x (q, k, v, out)
  for (const a of modules) {
    const m = a.slice(0, -".alpha".length);
    assert.deepEqual(file.tensors.get(`${m}.lora_down.weight`)!.shape.length, 2);
    assert.equal(file.tensors.get(`${m}.lora_up.weight`)!.shape[1], 4);
  }
  const meta = file.metadata;
  assert.equal(meta.ss_network_module, "networks.lora");
  assert.equal(meta.ss_network_dim, "4");
  assert.equal(meta.ss_network_alpha, "4.0");
  assert.equal(meta.ss_base_model_version, "sd_v1");
  assert.equal(meta.ss_resolution, "(64, 64)");
  assert.equal(meta.ss_num_train_images, "2");
  assert.equal(meta.ss_learning_rate, "0.05");
  assert.equal(meta.ss_steps, "4");
  assert.equal(meta.ss_output_name, "cat");
  assert.ok(Number(meta.ss_training_started_at) > 1.6e9);
  assert.deepEqual(JSON.parse(meta.ss_tag_frequency!), {
    data: { "a red square": 1, "a blue square": 1, flat: 2 },
  });
  const bytes = await Deno.readFile(out);
  const header = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(
    meta.sshs_model_hash,
    createHash("sha256").update(bytes.subarray(8 + header)).digest("hex"),
  );
  assert.equal(summary.sshs_model_hash, meta.sshs_model_hash);
  // ... which is the hash A1111 records for a LoRA (lib/adapters/hashes.ts).
  assert.equal((await fileHashes(out)).addnet, meta.sshs_model_hash);
  // The adapters loader matches every module to a weight of the model.
  const plan = await planLoras([{ path: out, te: 1, unet: 1 }], {
    unet: join(SD15, "unet/diffusion_pytorch_model.safetensors"),
    text_encoder: join(SD15, "text_encoder/model.safetensors"),
  });
  assert.equal(plan.ledgers[0]!.applied.length, 80);
  assert.deepEqual([plan.ledgers[0]!.unmatched, plan.ledgers[0]!.ignored], [[], []]);
  // generate --lora runs with it and the image changes.
  const gen = [
    "generate",
    "a red square",
    "-m",
    SD15,
    "--steps",
    "3",
    "--seed",
    "0",
    "--width",
    "64",
    "--height",
    "64",
    "-q",
  ];
  const plain = await runCli(gen, { env: ENV });
  const withLora = await runCli([...gen, "--lora", out], { env: ENV });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(withLora.code, 0, withLora.stderr);
  const diff = await pixelDiff(plain.stdout, withLora.stdout);
  console.log(`generate with vs without the trained LoRA: max pixel diff ${diff} (must be > 0)`);
  assert.ok(diff > 0);
});

Deno.test("lora-train --resume after kill -9 (and from a copied checkpoint) gives the weights of a straight run", async () => {
  const args = [
    "-m",
    SD15,
    "--steps",
    "40",
    "--lr",
    "0.01",
    ...SIZE,
    "--snr-gamma",
    "5",
    "--noise-offset",
    "0.1",
    "--lr-scheduler",
    "cosine",
    "--lr-warmup-steps",
    "2",
    "-q",
  ];
  const straight = join(WORK, "straight.safetensors");
  const a = await runCli(["lora-train", DATA, "-o", straight, ...args, "--save-every", "20"], {
    env: ENV,
  });
  assert.equal(a.code, 0, a.stderr);
  // Resume from a copy of the step-20 checkpoint, with nothing but --resume and -o.
  const copy = join(WORK, "copy");
  await Deno.mkdir(copy);
  await Deno.rename(join(WORK, "straight-checkpoints", "step-000020"), join(copy, "step-000020"));
  const resumed = join(WORK, "resumed.safetensors");
  const b = await runCli(["lora-train", "--resume", copy, "-o", resumed, "-q"], { env: ENV });
  assert.equal(b.code, 0, b.stderr);
  const d1 = maxDiff(await readLora(straight), await readLora(resumed));
  console.log(`20 steps + resume 20 vs 40 straight: maxdiff ${d1} (tolerance 0)`);
  assert.equal(d1, 0);
  // Kill -9 a run once it has written a checkpoint, then resume from its folder.
  const killed = join(WORK, "killed.safetensors");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--no-lock",
      join(REPO_ROOT, "main.ts"),
      "lora-train",
      DATA,
      "-o",
      killed,
      ...args,
      "--save-every",
      "1",
    ],
    env: { ...ENV, NO_COLOR: "1" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  const dir = join(WORK, "killed-checkpoints");
  const deadline = Date.now() + 120_000;
  while (!listDir(dir).some((n) => n.startsWith("step-")) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill("SIGKILL");
  await child.status;
  const atKill = listDir(dir).filter((n) => n.startsWith("step-"));
  assert.ok(atKill.length > 0, "no checkpoint before the kill");
  assert.ok(!listDir(WORK).includes("killed.safetensors"), "the run ended before the kill");
  const c = await runCli(["lora-train", "--resume", dir, "-q"], { env: ENV });
  assert.equal(c.code, 0, c.stderr);
  const d2 = maxDiff(await readLora(straight), await readLora(killed));
  console.log(
    `killed with ${atKill.join(",")} saved + resume vs straight: maxdiff ${d2} (tolerance 0)`,
  );
  assert.equal(d2, 0);
});

Deno.test("lora-train refuses bad input with one-line errors and writes nothing", async () => {
  const out = join(WORK, "bad.safetensors");
  const empty = join(WORK, "empty");
  await Deno.mkdir(empty);
  const e = await runCli(["lora-train", empty, "-o", out, "-m", SD15, "--steps", "1", ...SIZE], {
    env: ENV,
  });
  assert.equal(e.code, 3);
  assert.match(e.stderr, /^denoise: The dataset ".*empty" has no images\nhint: /);
  // An undecodable image is skipped and a caption without an image is reported; training runs.
  const mixed = await twoImages(join(WORK, "mixed"));
  await Deno.writeTextFile(join(mixed, "broken.png"), "not a png");
  await Deno.writeTextFile(join(mixed, "broken.txt"), "a broken image");
  await Deno.writeTextFile(join(mixed, "lonely.txt"), "no image here");
  const m = await runCli(["lora-train", mixed, "-o", out, "-m", SD15, "--steps", "1", ...SIZE], {
    env: ENV,
  });
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stderr, /warning: lonely\.txt: caption file with no image; ignored/);
  assert.match(m.stderr, /warning: .*broken\.png: cannot be decoded .*; skipped/);
  await Deno.remove(out);
  // A checkpoint of another model.
  const other = await makeTinyModel("sd15", { seed: 99, tokenizerDir: TOKENIZER });
  const ck = join(WORK, "ck.safetensors");
  const t = await runCli([
    "lora-train",
    DATA,
    "-o",
    ck,
    "-m",
    SD15,
    "--steps",
    "1",
    "--save-every",
    "1",
    ...SIZE,
    "-q",
  ], { env: ENV });
  assert.equal(t.code, 0, t.stderr);
  const r = await runCli([
    "lora-train",
    "--resume",
    join(WORK, "ck-checkpoints"),
    "-m",
    other,
    "-o",
    out,
  ], { env: ENV });
  assert.equal(r.code, 3);
  assert.match(
    r.stderr,
    /^denoise: Cannot resume from ".*step-000001": it was made for the model ".*", not ".*"\n/,
  );
  const rank = await runCli([
    "lora-train",
    "--resume",
    join(WORK, "ck-checkpoints"),
    "--rank",
    "8",
    "-o",
    out,
  ], { env: ENV });
  assert.equal(rank.code, 3);
  assert.match(rank.stderr, /it was trained with rank 4, not 8/);
  const both = await runCli([
    "lora-train",
    DATA,
    "-o",
    out,
    "-m",
    SD15,
    "--steps",
    "2",
    "--epochs",
    "2",
  ], { env: ENV });
  assert.equal(both.code, 2);
  assert.match(both.stderr, /pass --steps or --epochs, not both/);
  const exists = await runCli(["lora-train", DATA, "-o", ck, "-m", SD15, "--steps", "1"], {
    env: ENV,
  });
  assert.equal(exists.code, 2);
  assert.match(exists.stderr, /exists\nhint: pass --overwrite/);
  assert.deepEqual(listDir(WORK).filter((n) => n.startsWith("bad")), []);
  await Deno.remove(other, { recursive: true });
});

Deno.test("lora-train --dry-run prints the resolved Job (alpha defaults to the rank, a seed is fixed)", async () => {
  const r = await runCli([
    "lora-train",
    DATA,
    "-o",
    "x.safetensors",
    "-m",
    "sd15",
    "--rank",
    "8",
    "--dry-run",
  ], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const job = JSON.parse(r.text);
  assert.equal(job.command, "lora-train");
  assert.equal(job.alpha, 8);
  assert.ok(Number.isInteger(job.seed));
  assert.equal(job.flip, true);
});

for (const family of ["sd2", "sdxl"] as const) {
  Deno.test(`lora-train --text-encoder on a tiny ${family} model; generate --lora applies every module`, async () => {
    const model = await makeTinyModel(family, { seed: 4, tokenizerDir: TOKENIZER });
    try {
      const out = join(WORK, `${family}.safetensors`);
      const r = await runCli([
        "lora-train",
        DATA,
        "-o",
        out,
        "-m",
        model,
        "--steps",
        "2",
        "--lr",
        "0.01",
        "--text-encoder",
        ...SIZE,
        "-q",
      ], { env: ENV });
      assert.equal(r.code, 0, r.stderr);
      using file = await SafetensorsFile.open(out);
      const names = [...file.tensors.keys()];
      const te = family === "sdxl" ? ["lora_te1_", "lora_te2_"] : ["lora_te_"];
      for (const p of te) assert.ok(names.some((n) => n.startsWith(p)), `no ${p} modules`);
      if (family === "sdxl") {
        // kohya's SDXL spelling of UNet modules (original-LDM block names).
        assert.ok(
          names.some((n) => n.startsWith("lora_unet_input_blocks_")),
          "no LDM-named modules",
        );
        assert.equal(file.metadata.ss_base_model_version, "sdxl_base_v1-0");
      } else {
        assert.equal(file.metadata.ss_v2, "True");
        assert.equal(file.metadata.ss_base_model_version, "sd_v2_768_v");
      }
      const modules = names.filter((n) => n.endsWith(".alpha")).length;
      const g = await runCli([
        "generate",
        "a red square",
        "-m",
        model,
        "--steps",
        "2",
        "--seed",
        "0",
        "--width",
        "64",
        "--height",
        "64",
        "--lora",
        out,
        "--debug",
      ], { env: ENV });
      assert.equal(g.code, 0, g.stderr);
      assert.match(
        g.stderr,
        new RegExp(`${modules} modules applied, 0 not in the model, 0 tensors ignored`),
      );
    } finally {
      await Deno.remove(model, { recursive: true });
    }
  });
}

Deno.test("lora-train --buckets --batch-size 2 --validation-prompt: bucket metadata and a validation image", async () => {
  const out = join(WORK, "buckets.safetensors");
  const r = await runCli([
    "lora-train",
    DATA,
    "-o",
    out,
    "-m",
    SD15,
    "--steps",
    "2",
    "--buckets",
    "--batch-size",
    "2",
    "--validation-prompt",
    "a red square",
    ...SIZE,
    "-q",
  ], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  using file = await SafetensorsFile.open(out);
  assert.equal(file.metadata.ss_enable_bucket, "True");
  assert.deepEqual(JSON.parse(file.metadata.ss_bucket_info!).buckets["0"], {
    resolution: [64, 64],
    count: 2,
  });
  assert.equal(file.metadata.ss_num_batches_per_epoch, "1");
  const png = await Deno.readFile(join(WORK, "buckets-validation.png"));
  const info = await sharp(png).metadata();
  assert.deepEqual([info.width, info.height], [64, 64]);
});
