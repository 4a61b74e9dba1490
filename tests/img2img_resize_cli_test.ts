/**
 * img2img --width/--height with A1111's resize modes: the output has the asked size, each mode
 * treats the input as A1111 does (pixels resized byte for byte like A1111, see
 * lib/image/resize_mode_test.ts), latent-upscale resizes the encoded latents, and --dry-run /
 * the stored Job keep the mode.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-resize-home-" });
const ENV = { DENOISE_HOME: HOME };
const MODEL = await makeTinyModel("sd15", {
  seed: 6,
  tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" })),
});
const DIR = await Deno.makeTempDir({ prefix: "denoise-resize-" });
const INPUT = join(DIR, "wide.png");
await sharp({ create: { width: 96, height: 64, channels: 3, background: "#3080c0" } })
  .composite([{
    input: { create: { width: 40, height: 64, channels: 3, background: "#f0d020" } },
    left: 0,
    top: 0,
  }])
  .png().toFile(INPUT);

async function size(bytes: Uint8Array): Promise<[number, number]> {
  const m = await sharp(bytes).metadata();
  return [m.width!, m.height!];
}

const BASE = ["img2img", "a cat", "--image", INPUT, "-m", MODEL, "--steps", "2", "--seed", "3"];

Deno.test("img2img --width/--height: every resize mode gives the asked size; the modes differ", async () => {
  const outs = new Map<string, Uint8Array>();
  for (const mode of ["just-resize", "crop-and-resize", "resize-and-fill", "latent-upscale"]) {
    const r = await runCli([
      ...BASE,
      "--width",
      "64",
      "--height",
      "64",
      "--resize-mode",
      mode,
      "-q",
    ], {
      env: ENV,
    });
    assert.equal(r.code, 0, `${mode}: ${r.stderr}`);
    assert.deepEqual(await size(r.stdout), [64, 64], mode);
    const job = readMetadata(r.stdout).job as Record<string, unknown>;
    assert.equal(job.resizeMode, mode);
    outs.set(mode, r.stdout);
  }
  const distinct = new Set([...outs.values()].map((b) => b.join(",")));
  assert.equal(distinct.size, 4, "each mode makes a different image");
});

Deno.test("img2img without --width/--height keeps the input size; latent-upscale refuses --mask", async () => {
  const r = await runCli([...BASE, "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await size(r.stdout), [96, 64]);
  const mask = join(DIR, "mask.png");
  await sharp({ create: { width: 96, height: 64, channels: 3, background: "#ffffff" } }).png()
    .toFile(mask);
  const bad = await runCli([
    ...BASE,
    "--mask",
    mask,
    "--width",
    "64",
    "--height",
    "64",
    "--resize-mode",
    "latent-upscale",
    "-o",
    join(DIR, "bad.png"),
  ], { env: ENV });
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /latent-upscale/);
  // A pixel mode works with a mask: the mask is resized with the image.
  const ok = await runCli([
    ...BASE,
    "--mask",
    mask,
    "--width",
    "64",
    "--height",
    "64",
    "--resize-mode",
    "resize-and-fill",
    "-q",
  ], { env: ENV });
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(await size(ok.stdout), [64, 64]);
});
