/**
 * `--vae-tiling` through the real CLI on a tiny random model whose VAE tile (sample_size) is
 * 64 px: a 160x128 image decodes in 4x3 overlapping tiles (the tile count and exact stitching of
 * `tiledDecode` are checked in lib/models/vae_test.ts). Tiling changes the result, because each
 * tile's GroupNorm statistics and mid-block attention see only that tile, as in Diffusers'
 * `tiled_decode`; with random weights the change is large, so the bound here is loose.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-tiling-home-" });
const ENV = { DENOISE_HOME: HOME };
const MODEL = await makeTinyModel("sd15", {
  seed: 3,
  tokenizerDir: await writeByteTokenizer(join(HOME, "tokenizer")),
});

const ARGS = [
  "generate",
  "a harbour",
  "-m",
  MODEL,
  "--width",
  "160",
  "--height",
  "128",
  "--steps",
  "2",
  "--seed",
  "1",
  "-q",
];

async function raw(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await sharp(bytes).removeAlpha().raw().toBuffer());
}

Deno.test("generate --vae-tiling decodes a larger-than-tile image close to the untiled one", async () => {
  const plain = await runCli(ARGS, { env: ENV });
  assert.equal(plain.code, 0, plain.stderr);
  const tiled = await runCli([...ARGS, "--vae-tiling"], { env: ENV });
  assert.equal(tiled.code, 0, tiled.stderr);
  const meta = await sharp(tiled.stdout).metadata();
  assert.deepEqual([meta.width, meta.height], [160, 128]);
  assert.equal((readMetadata(tiled.stdout).job as Record<string, unknown>).vaeTiling, true);
  const [a, b] = [await raw(plain.stdout), await raw(tiled.stdout)];
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  const mean = sum / a.length;
  // Tiling happened (an untiled decode is deterministic, so any difference comes from tiles)...
  assert.ok(max > 0, "the tiled image equals the untiled one: no tiling happened");
  // ...and stays close: measured mean 12.4/255 on this random VAE.
  assert.ok(mean <= 20, `mean abs diff ${mean.toFixed(2)}/255 > 20/255 (max ${max})`);
  const again = await runCli(ARGS, { env: ENV });
  assert.deepEqual(again.stdout, plain.stdout, "the untiled decode is deterministic");
});
