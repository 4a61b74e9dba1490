/**
 * `denoise generate --hires-*` (A1111 hires fix) through the real CLI on a tiny random model:
 * output size, metadata, replay, determinism, and bad values.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { listDir, runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { writeTinyUpscaler } from "./fixtures/upscaler.ts";
import { rrdbNetConfig } from "../lib/models/esrgan.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-hires-home-" });
const ENV = { DENOISE_HOME: HOME };
const WORK = await Deno.makeTempDir({ prefix: "denoise-hires-cli-" });
const MODEL = await makeTinyModel("sd15", {
  seed: 3,
  tokenizerDir: await writeByteTokenizer(join(WORK, "tokenizer")),
});

const BASE = [
  "generate",
  "a lighthouse",
  "-m",
  MODEL,
  "--width",
  "64",
  "--height",
  "48",
  "--steps",
  "3",
  "--seed",
  "4",
  "-q",
];

async function size(bytes: Uint8Array): Promise<[number, number]> {
  const meta = await sharp(bytes).metadata();
  return [meta.width!, meta.height!];
}

Deno.test("generate --hires-scale 2 makes a scale x base image, records A1111 Hires fields and replays", async () => {
  const out = join(WORK, "hires.png");
  let r = await runCli(
    [...BASE, "--hires-scale", "2", "--hires-steps", "2", "--hires-strength", "0.6", "-o", out],
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  const bytes = await Deno.readFile(out);
  assert.deepEqual(await size(bytes), [128, 96]);
  const meta = readMetadata(bytes);
  const job = meta.job as Record<string, unknown>;
  assert.equal(job.width, 64, "the Job keeps the base size");
  assert.equal(job.height, 48);
  assert.equal(job.hiresScale, 2);
  assert.equal(job.hiresSteps, 2);
  assert.equal(job.hiresStrength, 0.6);
  assert.equal(job.hiresUpscaler, "latent");
  const params = meta.a1111?.params ?? {};
  assert.equal(params["Hires upscale"], "2");
  assert.equal(params["Hires steps"], "2");
  assert.equal(params["Hires upscaler"], "Latent");
  assert.equal(params["Denoising strength"], "0.6");
  assert.equal(params["Size"], "64x48");
  // Replaying the stored Job remakes the same bytes.
  const again = join(WORK, "hires-again.png");
  r = await runCli(["generate", "--job", out, "-o", again, "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(again), bytes);
  // Without --hires-scale: the base size.
  r = await runCli(BASE, { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await size(r.stdout), [64, 48]);
});

Deno.test("generate --hires-upscaler lanczos works and differs from the latent upscaler", async () => {
  const latent = await runCli([...BASE, "--hires-scale", "1.5"], { env: ENV });
  assert.equal(latent.code, 0, latent.stderr);
  const lanczos = await runCli([...BASE, "--hires-scale", "1.5", "--hires-upscaler", "lanczos"], {
    env: ENV,
  });
  assert.equal(lanczos.code, 0, lanczos.stderr);
  assert.deepEqual(await size(latent.stdout), [96, 72]);
  assert.deepEqual(await size(lanczos.stdout), [96, 72]);
  assert.notDeepEqual(latent.stdout, lanczos.stdout);
  assert.match(readMetadata(lanczos.stdout).a1111?.params["Hires upscaler"] ?? "", /^Lanczos$/);
});

Deno.test("generate --hires-upscaler FILE runs an ESRGAN-family model on the first pass's pixels", async () => {
  const esrgan = await writeTinyUpscaler(
    join(WORK, "tiny_x4.safetensors"),
    rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 }),
    5,
  );
  const out = join(WORK, "hires-esrgan.png");
  const flags = ["--hires-scale", "1.5", "--hires-steps", "2"];
  let r = await runCli([...BASE, ...flags, "--hires-upscaler", esrgan, "-o", out], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const bytes = await Deno.readFile(out);
  assert.deepEqual(await size(bytes), [96, 72]);
  const meta = readMetadata(bytes);
  assert.equal((meta.job as Record<string, unknown>).hiresUpscaler, esrgan);
  assert.equal(meta.a1111?.params["Hires upscaler"], "tiny_x4");
  // Another upscaler, another image; the stored Job replays this one.
  const lanczos = await runCli([...BASE, ...flags, "--hires-upscaler", "lanczos"], { env: ENV });
  assert.equal(lanczos.code, 0, lanczos.stderr);
  assert.notDeepEqual(lanczos.stdout, bytes);
  const again = join(WORK, "hires-esrgan-again.png");
  r = await runCli(["generate", "--job", out, "-o", again, "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(again), bytes);
});

Deno.test("generate rejects bad hires values with a usage error and writes nothing", async () => {
  const dir = join(WORK, "bad");
  await Deno.mkdir(dir);
  for (
    const flags of [
      ["--hires-scale", "0.5"],
      ["--hires-scale", "2", "--hires-strength", "1.5"],
      ["--hires-scale", "2", "--hires-upscaler", "bicubic"],
      ["--hires-scale", "2", "--hires-strength", "0"],
    ]
  ) {
    const r = await runCli([...BASE, ...flags, "-o", join(dir, "x.png")], { env: ENV });
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    assert.ok(r.stderr.trim().length > 0);
  }
  assert.deepEqual(listDir(dir), []);
});
