/**
 * LCM models with a guidance embedding (UNet `time_cond_proj_dim`, e.g.
 * SimianLuo/LCM_Dreamshaper_v7) through the real CLI: a tiny random LCM with an LCMScheduler
 * config generates in 4 steps; --cfg is embedded (it changes the image), there is no CFG (the
 * negative prompt changes nothing), the default cfg is 8.5 and runs are deterministic.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { runCli } from "./cli.ts";
import { TINY_CLIP_TEXT, TINY_SD15_UNET, TINY_VAE } from "./fixtures/configs.ts";
import { createRandomModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-lcm-home-" });
const ENV = { DENOISE_HOME: HOME };

/** LCM_Dreamshaper_v7's scheduler_config.json (Diffusers 0.27 LCMScheduler keys). */
const LCM_SCHEDULER = {
  _class_name: "LCMScheduler",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  clip_sample_range: 1.0,
  dynamic_thresholding_ratio: 0.995,
  num_train_timesteps: 1000,
  original_inference_steps: 50,
  prediction_type: "epsilon",
  rescale_betas_zero_snr: false,
  sample_max_value: 1.0,
  set_alpha_to_one: true,
  steps_offset: 1,
  thresholding: false,
  timestep_scaling: 10.0,
  timestep_spacing: "leading",
  trained_betas: null,
};

/** A tiny random LCM: SD 1.5's tiny layout with a 32-wide guidance embedding. */
async function makeTinyLcm(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "denoise-tiny-lcm-" });
  const dir = join(root, "lcm");
  await createRandomModel(
    {
      unet: { ...TINY_SD15_UNET, time_cond_proj_dim: 32 },
      vae: TINY_VAE,
      textEncoder: TINY_CLIP_TEXT,
      scheduler: LCM_SCHEDULER,
    },
    dir,
    { seed: 4, tokenizerDir: await writeByteTokenizer(join(root, "tokenizer")) },
  );
  // As the hub's LCM folders name their pipeline.
  const indexPath = join(dir, "model_index.json");
  const index = JSON.parse(await Deno.readTextFile(indexPath));
  index._class_name = "LatentConsistencyModelPipeline";
  await Deno.writeTextFile(indexPath, JSON.stringify(index, null, 2));
  return dir;
}

const LCM_MODEL = await makeTinyLcm();

async function pixels(bytes: Uint8Array): Promise<Uint8Array> {
  const { data } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

Deno.test("generate with a tiny LCM: 4 steps, cfg embedded, no CFG, default cfg 8.5, deterministic", async () => {
  const args = ["generate", "a cat", "-m", LCM_MODEL, "--steps", "4", "--seed", "3", "-q"];
  const plain = await runCli(args, { env: ENV });
  assert.equal(plain.code, 0, plain.stderr);
  const again = await runCli(args, { env: ENV });
  assert.equal(again.code, 0, again.stderr);
  const explicit = await runCli([...args, "--cfg", "8.5"], { env: ENV });
  const negative = await runCli([...args, "--cfg", "8.5", "--negative", "blurry, dark"], {
    env: ENV,
  });
  // Longer than one 77-token chunk: with CFG it would pad the prompt to two chunks (A1111).
  const longNegative = await runCli(
    [...args, "--negative", Array(40).fill("ugly dark").join(" ")],
    {
      env: ENV,
    },
  );
  const low = await runCli([...args, "--cfg", "2"], { env: ENV });
  for (const r of [explicit, negative, longNegative, low]) assert.equal(r.code, 0, r.stderr);

  const [p, e, n, ln, l] = await Promise.all(
    [plain, explicit, negative, longNegative, low].map((r) => pixels(r.stdout)),
  );
  // Deterministic: the same run gives the same bytes.
  assert.deepEqual(plain.stdout, again.stdout);
  // Default cfg is LatentConsistencyModelPipeline's 8.5.
  assert.deepEqual(p, e);
  // No classifier-free guidance: the negative prompt is not used.
  assert.deepEqual(n, e);
  assert.deepEqual(ln, p);
  // The guidance scale reaches the UNet through timestep_cond.
  const moved = maxDiff(l!, e!);
  assert.ok(moved > 2, `--cfg 2 vs 8.5: images differ by only ${moved}/255`);

  // Metadata records the cfg used, as for any model.
  const meta = readMetadata(plain.stdout);
  assert.equal((meta.job as { cfg: number }).cfg, 8.5);
  assert.equal(meta.a1111?.params["CFG scale"], "8.5");
  assert.equal(meta.a1111?.params["Steps"], "4");
});

Deno.test("img2img with a tiny LCM: every step runs, cfg embedded, the negative prompt unused", async () => {
  const made = await runCli(
    ["generate", "a cat", "-m", LCM_MODEL, "--steps", "2", "--seed", "1", "-q"],
    { env: ENV },
  );
  assert.equal(made.code, 0, made.stderr);
  const args = ["img2img", "a dog", "-m", LCM_MODEL, "--steps", "4", "--strength", "0.5"];
  // LatentConsistencyModelImg2ImgPipeline runs all 4 steps (timesteps from the first half of
  // the distillation schedule), not get_timesteps' tail of 2.
  const progress = await runCli([...args, "--seed", "2", "--progress", "json"], {
    env: ENV,
    stdin: made.stdout,
  });
  assert.equal(progress.code, 0, progress.stderr);
  const totals = progress.stderr.split("\n").filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l)).filter((e) => e.task === "denoise").map((e) => e.total);
  assert.deepEqual([...new Set(totals)], [4]);
  const base = await runCli([...args, "--seed", "2", "-q"], { env: ENV, stdin: made.stdout });
  const neg = await runCli([...args, "--seed", "2", "--negative", "ugly", "-q"], {
    env: ENV,
    stdin: made.stdout,
  });
  const cfg = await runCli([...args, "--seed", "2", "--cfg", "3", "-q"], {
    env: ENV,
    stdin: made.stdout,
  });
  for (const r of [base, neg, cfg]) assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await pixels(neg.stdout), await pixels(base.stdout));
  const moved = maxDiff(await pixels(cfg.stdout), await pixels(base.stdout));
  assert.ok(moved > 2, `img2img --cfg 3 vs 8.5: images differ by only ${moved}/255`);
});
