/**
 * `--precision fp16` through the real CLI: float16 UNet and text encoder graphs, the VAE kept in
 * float32 by its config's force_upcast, the golden image within a stated tolerance, and the
 * precision recorded in the Job.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { runCli } from "./cli.ts";
import { hasShared, sharedPath } from "./shared.ts";

const TINY = sharedPath("golden/models/tiny_dummy");
const GOLDEN_MODEL = join(TINY, "pipeline");

/**
 * Max pixel difference allowed against the Diffusers (fp32) golden image. Measured: 1/255 on
 * tiny_dummy (DDIM, 4 steps, ORT 1.30 CPU); float16 rounding grows with the steps, hence 4/255.
 */
const FP16_MAX_PIXEL_DIFF = 4;

async function maxPixelDiff(a: Uint8Array, b: Uint8Array): Promise<number> {
  const raw = async (bytes: Uint8Array) => {
    const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({
      resolveWithObject: true,
    });
    return { data: new Uint8Array(data), size: [info.width, info.height] };
  };
  const [pa, pb] = [await raw(a), await raw(b)];
  assert.deepEqual(pa.size, pb.size, "image sizes differ");
  let max = 0;
  for (let i = 0; i < pa.data.length; i++) max = Math.max(max, Math.abs(pa.data[i]! - pb.data[i]!));
  return max;
}

/** Built graphs in the cache by component kind (folders are named `<kind>-<key>`). */
async function graphsByKind(home: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for await (const entry of Deno.readDir(join(home, "graphs"))) {
    if (!entry.isDirectory) continue;
    const kind = entry.name.replace(/-[^-]+$/, "");
    counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

Deno.test({
  name: `generate --precision fp16 stays within ${FP16_MAX_PIXEL_DIFF}/255 of the golden image ` +
    `and records the precision`,
  ignore: !hasShared,
  fn: async () => {
    const home = await Deno.makeTempDir({ prefix: "denoise-fp16-home-" });
    const dir = await Deno.makeTempDir({ prefix: "denoise-fp16-" });
    try {
      const env = { DENOISE_HOME: home };
      const args = ["generate", "a photo of a cat", "-m", GOLDEN_MODEL, "--steps", "4"];
      args.push("--cfg", "7.5", "--seed", "0", "-q");
      let r = await runCli([...args, "-o", join(dir, "fp32.png")], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await graphsByKind(home), { text_encoder: 1, unet: 1, vae_decoder: 1 });
      const out = join(dir, "fp16.png");
      r = await runCli([...args, "--precision", "fp16", "-o", out], { env });
      assert.equal(r.code, 0, r.stderr);
      // New float16 UNet and text encoder graphs; the VAE (force_upcast: true) is the float32 one.
      assert.deepEqual(await graphsByKind(home), { text_encoder: 2, unet: 2, vae_decoder: 1 });
      const bytes = await Deno.readFile(out);
      const diff = await maxPixelDiff(
        bytes,
        await Deno.readFile(join(TINY, "txt2img_DDIMScheduler.png")),
      );
      console.log(`fp16 vs golden fp32 image: max pixel diff ${diff}/255`);
      assert.ok(diff <= FP16_MAX_PIXEL_DIFF, `maxdiff ${diff} > ${FP16_MAX_PIXEL_DIFF}`);
      const job = readMetadata(bytes).job as Record<string, unknown>;
      assert.equal(job.precision, "fp16");
      const plain = readMetadata(await Deno.readFile(join(dir, "fp32.png"))).job as Record<
        string,
        unknown
      >;
      assert.equal(
        plain.precision,
        "fp32",
        "no --precision: the device default (cpu: fp32) is recorded",
      );
      // A replay of the fp16 image asks for fp16 again.
      r = await runCli(["generate", "--job", out, "--dry-run"], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.text).precision, "fp16");
    } finally {
      await Deno.remove(home, { recursive: true });
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--precision takes fp32, fp16 or int8 only", async () => {
  const r = await runCli(["generate", "x", "-m", "nowhere", "--precision", "fp8", "--dry-run"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /fp32, fp16, int8/);
});

/** PSNR of two 8-bit images in dB. */
async function psnr(a: Uint8Array, b: Uint8Array): Promise<number> {
  const raw = async (bytes: Uint8Array) =>
    new Uint8Array(await sharp(bytes).removeAlpha().raw().toBuffer());
  const [pa, pb] = [await raw(a), await raw(b)];
  assert.equal(pa.length, pb.length, "image sizes differ");
  let se = 0;
  for (let i = 0; i < pa.length; i++) se += (pa[i]! - pb[i]!) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / pa.length));
}

/**
 * Minimum PSNR of the int8 image against the fp32 image on tiny_sd (random weights, 32-64
 * channels, 128x128, 4 PNDM steps, seed 0). Measured: 43.0 dB (max pixel difference 10/255).
 */
const INT8_MIN_PSNR_DB = 35;

Deno.test({
  name: `generate --precision int8 stays within ${INT8_MIN_PSNR_DB} dB PSNR of fp32 on tiny_sd ` +
    `and records the precision`,
  ignore: !hasShared,
  fn: async () => {
    const home = await Deno.makeTempDir({ prefix: "denoise-int8-home-" });
    const dir = await Deno.makeTempDir({ prefix: "denoise-int8-" });
    try {
      const env = { DENOISE_HOME: home };
      const model = sharedPath("golden/models/tiny_sd/pipeline");
      const args = ["generate", "a photo of a cat", "-m", model, "--steps", "4", "--seed", "0"];
      args.push("-q");
      let r = await runCli([...args, "-o", join(dir, "fp32.png")], { env });
      assert.equal(r.code, 0, r.stderr);
      const out = join(dir, "int8.png");
      r = await runCli([...args, "--precision", "int8", "-o", out], { env });
      assert.equal(r.code, 0, r.stderr);
      // New int8 UNet and text encoder graphs; the VAE is the float32 one.
      assert.deepEqual(await graphsByKind(home), { text_encoder: 2, unet: 2, vae_decoder: 1 });
      const bytes = await Deno.readFile(out);
      const db = await psnr(bytes, await Deno.readFile(join(dir, "fp32.png")));
      console.log(`int8 vs fp32 image on tiny_sd: PSNR ${db.toFixed(2)} dB`);
      assert.ok(db >= INT8_MIN_PSNR_DB, `PSNR ${db} dB < ${INT8_MIN_PSNR_DB} dB`);
      assert.equal((readMetadata(bytes).job as Record<string, unknown>).precision, "int8");
    } finally {
      await Deno.remove(home, { recursive: true });
      await Deno.remove(dir, { recursive: true });
    }
  },
});
