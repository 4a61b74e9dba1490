/**
 * generate and img2img through the real CLI and real pipes: the Diffusers golden images, batch
 * naming, resume, shards, metadata replay and every bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { listDir, runCli, runPipeline } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { hasShared, sharedPath } from "./shared.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-gen-home-" });
const ENV = { DENOISE_HOME: HOME };
const TINY = sharedPath("golden/models/tiny_dummy");
const GOLDEN_MODEL = join(TINY, "pipeline");

/** A tiny random SD 1.x model with a byte-level tokenizer: runs without ../shared. */
const RANDOM_MODEL = await makeTinyModel("sd15", {
  seed: 3,
  tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" })),
});

async function pixels(
  bytes: Uint8Array,
): Promise<{ data: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({
    resolveWithObject: true,
  });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
}

async function maxPixelDiff(a: Uint8Array, b: Uint8Array): Promise<number> {
  const [pa, pb] = [await pixels(a), await pixels(b)];
  assert.deepEqual([pa.width, pa.height], [pb.width, pb.height], "image sizes differ");
  let max = 0;
  for (let i = 0; i < pa.data.length; i++) max = Math.max(max, Math.abs(pa.data[i]! - pb.data[i]!));
  return max;
}

for (
  const [sampler, png] of [
    [undefined, "txt2img_DDIMScheduler.png"],
    ["euler", "txt2img_EulerDiscreteScheduler.png"],
    ["EulerDiscreteScheduler", "txt2img_EulerDiscreteScheduler.png"],
    ["dpm++2m", "txt2img_DPMSolverMultistepScheduler.png"],
  ] as const
) {
  Deno.test({
    name: `generate matches the Diffusers golden image (${
      sampler ?? "model scheduler"
    }) within 1/255`,
    ignore: !hasShared,
    fn: async () => {
      const args = [
        "generate",
        "a photo of a cat",
        "-m",
        GOLDEN_MODEL,
        "--steps",
        "4",
        "--cfg",
        "7.5",
        "--seed",
        "0",
        "-q",
      ];
      if (sampler) args.push("--sampler", sampler);
      const r = await runCli(args, { env: ENV });
      assert.equal(r.code, 0, r.stderr);
      const diff = await maxPixelDiff(r.stdout, await Deno.readFile(join(TINY, png)));
      assert.ok(diff <= 1, `maxdiff ${diff} > 1`);
    },
  });
}

Deno.test({
  name: "img2img matches the Diffusers golden image (strength 0.6) within 1/255",
  ignore: !hasShared,
  fn: async () => {
    const r = await runCli([
      "img2img",
      "a photo of a cat",
      "-m",
      GOLDEN_MODEL,
      "--steps",
      "4",
      "--seed",
      "0",
      "--strength",
      "0.6",
      "-q",
    ], { env: ENV, stdin: await Deno.readFile(join(TINY, "img2img_input.png")) });
    assert.equal(r.code, 0, r.stderr);
    const diff = await maxPixelDiff(
      r.stdout,
      await Deno.readFile(join(TINY, "img2img_output.png")),
    );
    assert.ok(diff <= 1, `maxdiff ${diff} > 1`);
  },
});

Deno.test("generate | img2img | meta read: metadata survives the pipe and records both jobs", async () => {
  const r = await runPipeline(
    `denoise generate "a red fox" -m "${RANDOM_MODEL}" --steps 2 --seed 5 -q ` +
      `| denoise img2img "a red fox at night" -m "${RANDOM_MODEL}" --steps 2 --strength 0.5 --seed 9 -q ` +
      `| denoise meta read`,
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(r.text);
  assert.equal(meta.format, "png");
  assert.equal(meta.job.command, "img2img");
  assert.equal(meta.job.prompt, "a red fox at night");
  assert.equal(meta.job.seed, 9);
  assert.equal(meta.job.strength, 0.5);
  assert.equal(meta.a1111.prompt, "a red fox at night");
  assert.equal(meta.a1111.params["Seed"], "9");
  assert.equal(meta.a1111.params["Denoising strength"], "0.5");
  assert.equal(meta.a1111.params["Steps"], "2");
});

Deno.test("generate --job replays an image from its own metadata, byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  const first = join(dir, "a.png");
  let r = await runCli(
    [
      "generate",
      "(a castle:1.3), [sunny:rainy:0.5]",
      "-m",
      RANDOM_MODEL,
      "--steps",
      "3",
      "--sampler",
      "euler-a",
      "-o",
      first,
      "-q",
    ],
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  const job = readMetadata(await Deno.readFile(first)).job as Record<string, unknown>;
  assert.equal(typeof job.seed, "number", "a random seed is recorded");
  r = await runPipeline(
    `denoise meta read "${first}" | denoise generate --job - -o "${join(dir, "b.png")}" -q`,
    {
      env: ENV,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(join(dir, "b.png")), await Deno.readFile(first));
  r = await runCli(["generate", "--job", first, "--dry-run"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.text), job);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("batch images get deterministic names, one JSON line each, and a rerun skips them", async () => {
  const dir = await Deno.makeTempDir();
  const args = [
    "generate",
    "a cat",
    "-m",
    RANDOM_MODEL,
    "--steps",
    "2",
    "--seed",
    "100",
    "--batch-count",
    "3",
    "-o",
    dir,
    "--json",
    "-q",
  ];
  let r = await runCli(args, { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.text.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.seed), [100, 101, 102]);
  const names = listDir(dir);
  assert.equal(names.length, 3);
  assert.deepEqual(lines.map((l) => l.path.split("/").pop()).sort(), names);
  for (const name of names) assert.match(name, /^a-cat-10[0-2]-[0-9a-f]{10}\.png$/);
  const before = names.map((n) => Deno.statSync(join(dir, n)).mtime!.getTime());
  r = await runCli(args, { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.text, "", "nothing was made again");
  assert.deepEqual(names.map((n) => Deno.statSync(join(dir, n)).mtime!.getTime()), before);
  // The image of seed 101 is the image that seed makes alone.
  r = await runCli(
    ["generate", "a cat", "-m", RANDOM_MODEL, "--steps", "2", "--seed", "101", "-q"],
    { env: ENV },
  );
  const alone = await pixels(r.stdout);
  const inBatch = await pixels(await Deno.readFile(lines[1].path));
  assert.deepEqual(alone.data, inBatch.data);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--batch-size images equal the images their seeds make alone", async () => {
  const dir = await Deno.makeTempDir();
  let r = await runCli(
    [
      "generate",
      "a dog",
      "-m",
      RANDOM_MODEL,
      "--steps",
      "2",
      "--sampler",
      "euler-a",
      "--seed",
      "7",
      "--batch-size",
      "2",
      "-o",
      dir,
      "--json",
      "-q",
    ],
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  const second = JSON.parse(r.text.trim().split("\n")[1]!);
  r = await runCli([
    "generate",
    "a dog",
    "-m",
    RANDOM_MODEL,
    "--steps",
    "2",
    "--sampler",
    "euler-a",
    "--seed",
    "8",
    "-q",
  ], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    (await pixels(r.stdout)).data,
    (await pixels(await Deno.readFile(second.path))).data,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--jobs with --shard: n shards together make every image exactly once", async () => {
  const dir = await Deno.makeTempDir();
  const jobs = join(dir, "jobs.jsonl");
  await Deno.writeTextFile(
    jobs,
    [
      JSON.stringify({ prompt: "a cat", seed: 1, steps: 2, batchCount: 2 }),
      "# comment lines are skipped",
      JSON.stringify({ prompt: "a dog", seed: 2, steps: 2, batchCount: 3 }),
    ].join("\n"),
  );
  const out = join(dir, "out");
  const seen: string[] = [];
  for (const shard of ["1/3", "2/3", "3/3"]) {
    const r = await runCli([
      "generate",
      "--jobs",
      jobs,
      "-m",
      RANDOM_MODEL,
      "--shard",
      shard,
      "-o",
      out,
      "--json",
    ], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /image\(s\) made/);
    for (const line of r.text.trim().split("\n").filter(Boolean)) seen.push(JSON.parse(line).path);
  }
  assert.equal(seen.length, 5);
  assert.equal(new Set(seen).size, 5);
  assert.equal(listDir(out).length, 5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("bad inputs: one line, a documented exit code, and no partial file", async (t) => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "out.png");
  const cases: Array<[string, string[], number, RegExp, Uint8Array?]> = [
    [
      "missing model",
      ["generate", "x", "-m", join(dir, "nope")],
      4,
      /neither a folder nor a known alias/,
    ],
    ["no model", ["generate", "x"], 2, /No model given/],
    [
      "unknown sampler",
      ["generate", "x", "-m", RANDOM_MODEL, "--sampler", "warp-drive"],
      2,
      /warp-drive/,
    ],
    [
      "size not a multiple of 8",
      ["generate", "x", "-m", RANDOM_MODEL, "--width", "60"],
      2,
      /multiple of 8/,
    ],
    ["bad seed", ["generate", "x", "-m", RANDOM_MODEL, "--seed", "-1"], 2, /--seed/],
    [
      "img2img image not a multiple of 8",
      ["img2img", "x", "-m", RANDOM_MODEL],
      2,
      /multiple of 8/,
      await sharp({
        create: { width: 30, height: 20, channels: 3, background: "#808080" },
      }).png().toBuffer().then((b) => new Uint8Array(b)),
    ],
    [
      "img2img with non-image bytes",
      ["img2img", "x", "-m", RANDOM_MODEL],
      3,
      /Cannot decode/,
      new TextEncoder().encode("hello"),
    ],
    [
      "img2img with empty stdin",
      ["img2img", "x", "-m", RANDOM_MODEL],
      3,
      /empty/,
      new Uint8Array(),
    ],
    [
      "bad job JSON",
      ["generate", "--job", "-"],
      3,
      /not valid JSON/,
      new TextEncoder().encode("{nope"),
    ],
    [
      "several images to one file",
      ["generate", "x", "-m", RANDOM_MODEL, "--batch-count", "2"],
      2,
      /-o DIR/,
    ],
  ];
  for (const [name, args, code, message, stdin] of cases) {
    await t.step(name, async () => {
      const r = await runCli([...args, "-o", out], { env: ENV, ...(stdin ? { stdin } : {}) });
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr.split("\n")[0]!, /^denoise: /);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
      assert.deepEqual(listDir(dir), [], "no output file");
    });
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("NaN in the weights is a one-line error naming the tensor", async () => {
  const { SafetensorsFile, writeSafetensors } = await import("../lib/weights/safetensors.ts");
  const model = await makeTinyModel("sd15", {
    seed: 4,
    tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir()),
  });
  const path = join(model, "unet", "diffusion_pytorch_model.safetensors");
  const file = await SafetensorsFile.open(path);
  const tensors = [];
  for (const [name, info] of file.tensors) {
    const data = await file.readFloat32(name);
    if (name === "conv_in.weight") data[3] = NaN;
    tensors.push({ name, dtype: info.dtype, shape: info.shape, data });
  }
  file.close();
  await writeSafetensors(path, tensors);
  const dir = await Deno.makeTempDir();
  const r = await runCli(["generate", "x", "-m", model, "--steps", "1", "-o", join(dir, "x.png")], {
    env: { DENOISE_HOME: dir },
  });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /NaN or infinite values in "conv_in\.weight"/);
  assert.ok(!listDir(dir).includes("x.png"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SDXL: a tiny SDXL model generates at its default size with micro-conditioning flags", async () => {
  const model = await makeTinyModel("sdxl", {
    seed: 5,
    tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir()),
  });
  const dir = await Deno.makeTempDir();
  const out = join(dir, "xl.png");
  const r = await runCli([
    "generate",
    "a lighthouse",
    "-m",
    model,
    "--steps",
    "2",
    "--seed",
    "3",
    "--original-size",
    "128x96",
    "--crops-coords-top-left",
    "0,8",
    "-o",
    out,
    "-q",
  ], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const meta = readMetadata(await Deno.readFile(out));
  assert.deepEqual([meta.width, meta.height], [64, 64]);
  const job = meta.job as Record<string, unknown>;
  assert.deepEqual(job.originalSize, { width: 128, height: 96 });
  assert.deepEqual(job.cropsCoordsTopLeft, { top: 0, left: 8 });
  assert.equal(job.cfg, 5, "SDXL's default guidance");
  // Different micro-conditioning, different image.
  const plain = await runCli([
    "generate",
    "a lighthouse",
    "-m",
    model,
    "--steps",
    "2",
    "--seed",
    "3",
    "-q",
  ], {
    env: ENV,
  });
  assert.equal(plain.code, 0, plain.stderr);
  assert.notDeepEqual(
    (await pixels(plain.stdout)).data,
    (await pixels(await Deno.readFile(out))).data,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SDXL refiner: the base hands its latents over at --refiner-switch", async () => {
  const tokenizerDir = await writeByteTokenizer(await Deno.makeTempDir());
  const base = await makeTinyModel("sdxl", { seed: 5, tokenizerDir });
  // A refiner: only the second text encoder, aesthetic-score time ids (5 of them).
  const refinerDir = join(await Deno.makeTempDir(), "refiner");
  const { createRandomModel, TINY_MODELS } = await import("./fixtures/random_model.ts");
  const xl = TINY_MODELS.sdxl;
  await createRandomModel(
    {
      unet: {
        ...(xl.unet as Record<string, unknown>),
        cross_attention_dim: 32,
        projection_class_embeddings_input_dim: 32 + 5 * 8,
      },
      vae: xl.vae,
      textEncoder2: xl.textEncoder2,
      scheduler: xl.scheduler,
    },
    refinerDir,
    { seed: 9, tokenizerDir },
  );
  const indexPath = join(refinerDir, "model_index.json");
  const index = JSON.parse(await Deno.readTextFile(indexPath));
  await Deno.writeTextFile(
    indexPath,
    JSON.stringify({
      ...index,
      _class_name: "StableDiffusionXLImg2ImgPipeline",
      requires_aesthetics_score: true,
    }),
  );
  const args = [
    "generate",
    "a lighthouse",
    "-m",
    base,
    "--steps",
    "5",
    "--seed",
    "3",
    "--progress",
    "json",
  ];
  const refined = await runCli([...args, "--refiner", refinerDir, "--refiner-switch", "0.6"], {
    env: ENV,
  });
  assert.equal(refined.code, 0, refined.stderr);
  // 5 leading timesteps 801..1 (offset 1): 3 are >= the cutoff 400 (base), 2 below (refiner).
  const totals = refined.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l)
  )
    .filter((e) => e.task === "denoise").map((e) => e.total);
  assert.deepEqual([...new Set(totals)], [3, 2]);
  const plain = await runCli(args.slice(0, -2).concat("-q"), { env: ENV });
  assert.notDeepEqual((await pixels(refined.stdout)).data, (await pixels(plain.stdout)).data);
  const meta = readMetadata(refined.stdout);
  assert.equal((meta.job as Record<string, unknown>).refinerSwitch, 0.6);
  const bad = await runCli([...args, "--refiner", refinerDir, "--refiner-switch", "1.5"], {
    env: ENV,
  });
  assert.equal(bad.code, 2);
});

Deno.test({
  name: "an fp16 Diffusers folder generates the fp32 folder's image (fp16-exact weights)",
  ignore: !hasShared,
  fn: async () => {
    // tiny_sd's weights are fp16-exact, so an fp16 copy upcasts to the very same fp32 graph.
    const { SafetensorsFile, writeSafetensors } = await import("../lib/weights/safetensors.ts");
    const source = sharedPath("golden/models/tiny_sd/pipeline");
    const dir = join(await Deno.makeTempDir(), "fp16");
    await Deno.mkdir(dir);
    for await (const entry of Deno.readDir(source)) {
      if (!entry.isDirectory) {
        await Deno.copyFile(join(source, entry.name), join(dir, entry.name));
        continue;
      }
      await Deno.mkdir(join(dir, entry.name), { recursive: true });
      for await (const f of Deno.readDir(join(source, entry.name))) {
        const from = join(source, entry.name, f.name);
        if (!f.name.endsWith(".safetensors")) {
          await Deno.copyFile(from, join(dir, entry.name, f.name));
          continue;
        }
        using file = await SafetensorsFile.open(from);
        const tensors = [];
        for (const [name, info] of file.tensors) {
          const float = info.dtype === "F32";
          tensors.push({
            name,
            dtype: float ? "F16" as const : info.dtype,
            shape: info.shape,
            data: float ? await file.readFloat32(name) : await file.read(name),
          });
        }
        await writeSafetensors(
          join(dir, entry.name, f.name.replace(".safetensors", ".fp16.safetensors")),
          tensors,
        );
      }
    }
    const args = ["generate", "a photo of a cat", "--steps", "3", "--seed", "4", "-q"];
    const fp16 = await runCli([...args, "-m", dir], { env: ENV });
    assert.equal(fp16.code, 0, fp16.stderr);
    const fp32 = await runCli([...args, "-m", source], { env: ENV });
    assert.equal(fp32.code, 0, fp32.stderr);
    assert.deepEqual((await pixels(fp16.stdout)).data, (await pixels(fp32.stdout)).data);
  },
});

Deno.test("--cfg 0 and --cfg 1 both skip the unconditional pass (Diffusers: guidance only above 1)", async () => {
  const args = ["generate", "a cat", "-m", RANDOM_MODEL, "--steps", "2", "--seed", "11", "-q"];
  const zero = await runCli([...args, "--cfg", "0", "--negative", "blurry"], { env: ENV });
  const one = await runCli([...args, "--cfg", "1"], { env: ENV });
  const guided = await runCli([...args, "--cfg", "1.5", "--negative", "blurry"], { env: ENV });
  for (const r of [zero, one, guided]) assert.equal(r.code, 0, r.stderr);
  // Without guidance the negative prompt plays no part, so the images agree exactly.
  assert.deepEqual((await pixels(zero.stdout)).data, (await pixels(one.stdout)).data);
  assert.notDeepEqual((await pixels(guided.stdout)).data, (await pixels(one.stdout)).data);
});

Deno.test({
  name: "--job replays A1111 images: PNG text, and meta read output of a JPEG",
  ignore: !hasShared,
  fn: async () => {
    const png = sharedPath("fixtures/real/a1111/a1111_v1.10.1_hires_fix.png");
    let r = await runCli(["generate", "--job", png, "--dry-run"], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    let job = JSON.parse(r.text);
    assert.deepEqual([job.seed, job.sampler, job.schedule, job.hiresScale], [
      3888671826,
      "DPM++ 2M",
      "karras",
      1.5,
    ]);
    const jpg = sharedPath("fixtures/real/a1111/a1111_v1.10.1_usercomment.jpg");
    r = await runPipeline(
      `denoise meta read "${jpg}" | denoise generate --job - --steps 4 --dry-run`,
      { env: ENV },
    );
    assert.equal(r.code, 0, r.stderr);
    job = JSON.parse(r.text);
    assert.equal(job.cfg, 5.5);
    assert.equal(job.steps, 4, "flags override the replayed job");
  },
});
