/**
 * `denoise upscale` through the real CLI: ESRGAN-family files (tiny random networks written as
 * .safetensors), Lanczos, img2img super-resolution on a tiny random SD model; image layouts (16-bit,
 * grey, alpha), pipes and metadata chaining, replay, and bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { zipSync } from "fflate";
import { decodeFloatImage, encodeFloatImage, type FloatImage } from "../lib/image/codec.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { rrdbNetConfig, srvggNetCompactConfig } from "../lib/models/esrgan.ts";
import { writeSafetensors } from "../lib/weights/safetensors.ts";
import { listDir, runCli, runPipeline } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { writeTinyUpscaler } from "./fixtures/upscaler.ts";
import { hasShared, sharedPath } from "./shared.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-upscale-home-" });
const ENV = { DENOISE_HOME: HOME };
const WORK = await Deno.makeTempDir({ prefix: "denoise-upscale-cli-" });
const RRDB = await writeTinyUpscaler(
  join(WORK, "tiny_rrdb_x4.safetensors"),
  rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 }),
  1,
);
const COMPACT = await writeTinyUpscaler(
  join(WORK, "tiny_compact_x2.safetensors"),
  srvggNetCompactConfig({ features: 8, convs: 2, scale: 2 }),
  2,
);

/** A smooth picture with detail, `channels` planes in [0, 1]. */
function picture(
  width: number,
  height: number,
  channels: FloatImage["channels"],
  bitDepth: 8 | 16 = 8,
): FloatImage {
  const data = new Float32Array(channels * width * height);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        data[(c * height + y) * width + x] = 0.5 +
          0.45 * Math.sin(x / (3 + c) + y / 5) * Math.cos(y / (4 + c) - x / 9);
      }
    }
  }
  return { width, height, channels, bitDepth, data };
}

async function writePicture(name: string, image: FloatImage): Promise<string> {
  const path = join(WORK, name);
  await Deno.writeFile(path, await encodeFloatImage(image, "png"));
  return path;
}

const RGB = await writePicture("rgb.png", picture(40, 30, 3));

function maxLevels(a: FloatImage, b: FloatImage): number {
  assert.equal(a.data.length, b.data.length);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m * 255;
}

function oneLineError(stderr: string): void {
  const lines = stderr.trim().split("\n");
  assert.match(lines[0]!, /^denoise: /, stderr);
  assert.ok(lines.length <= 2 && (lines.length === 1 || lines[1]!.startsWith("hint: ")), stderr);
}

Deno.test("upscale -m FILE runs an ESRGAN-family model, records its Job and replays it", async () => {
  const out = join(WORK, "x4.png");
  const r = await runCli(["upscale", RGB, "-m", RRDB, "-o", out, "--json", "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const line = JSON.parse(r.text);
  assert.equal(line.mode, "esrgan");
  assert.deepEqual([line.width, line.height, line.input.width], [160, 120, 40]);
  assert.ok(line.tiles >= 1 && line.seconds.total > 0);
  const bytes = await Deno.readFile(out);
  const meta = readMetadata(bytes);
  const job = meta.job as Record<string, unknown>;
  assert.equal(job.command, "upscale");
  assert.equal(job.mode, "esrgan");
  assert.equal(job.scale, 4);
  assert.equal(job.input, RGB);
  assert.equal(typeof job.tile, "number");
  assert.equal(job.source, undefined, "a plain PNG has no Job to keep");
  assert.equal(meta.a1111?.params["Postprocess upscaler"], "tiny_rrdb_x4");
  assert.equal(meta.a1111?.params["Postprocess upscale by"], "4");
  // Replay: the stored Job names the input file and every choice, so the bytes come back.
  const again = join(WORK, "x4-again.png");
  const replay = await runCli(["upscale", "--job", out, "-o", again, "-q"], { env: ENV });
  assert.equal(replay.code, 0, replay.stderr);
  assert.deepEqual(await Deno.readFile(again), bytes);
  // Any other scale: the model's x2, then Lanczos (an SRVGGNetCompact x2 to 1.5x).
  const r15 = await runCli(["upscale", RGB, "-m", COMPACT, "--scale", "1.5", "-q"], { env: ENV });
  assert.equal(r15.code, 0, r15.stderr);
  const m15 = await sharp(r15.stdout).metadata();
  assert.deepEqual([m15.width, m15.height], [60, 45]);
});

Deno.test("upscale: tiled against untiled output (measured difference)", async () => {
  const input = await writePicture("big.png", picture(96, 64, 3));
  const run = async (tile: string[]) => {
    const r = await runCli(["upscale", input, "-m", RRDB, ...tile, "-q"], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    return await decodeFloatImage(r.stdout);
  };
  const whole = await run(["--tile", "0"]);
  const tiled = await run(["--tile", "40", "--tile-overlap", "16"]);
  const diff = Math.round(maxLevels(whole, tiled));
  const count = whole.data.filter((v, i) => Math.round(Math.abs(v - tiled.data[i]!) * 255) > 0)
    .length;
  console.log(
    `RRDBNet x4 96x64 -> 384x256, tiles of 40 (overlap 16) vs whole: maxdiff ${diff} level(s), ` +
      `${count} of ${whole.data.length} samples differ`,
  );
  assert.ok(diff <= 1, `tiled output differs by ${diff} levels`);
});

Deno.test("upscale writes 16-bit, grey and alpha inputs back in their layout", async () => {
  // Every layout through every mode is checked in lib/upscale/run_test.ts; here the CLI's
  // decoding and encoding, one run each.
  const cases: Array<[string, FloatImage, string[]]> = [
    ["rgb16.png", picture(24, 20, 3, 16), ["-m", RRDB]],
    ["grey.png", picture(24, 20, 1), ["-m", RRDB]],
    ["rgba16.png", picture(24, 20, 4, 16), ["--scale", "2"]],
  ];
  for (const [name, image, flags] of cases) {
    const input = await writePicture(name, image);
    const r = await runCli(["upscale", input, ...flags, "-q"], { env: ENV });
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    const out = await decodeFloatImage(r.stdout);
    const meta = await sharp(r.stdout).metadata();
    const scale = flags[0] === "-m" ? 4 : 2;
    assert.deepEqual(
      [out.width, out.height, out.channels, out.bitDepth],
      [24 * scale, 20 * scale, image.channels, image.bitDepth],
      name,
    );
    assert.equal(meta.depth, image.bitDepth === 16 ? "ushort" : "uchar", name);
    assert.equal(meta.channels, image.channels === 1 ? 1 : image.channels, name);
    if (image.bitDepth === 16) {
      // 16-bit precision survives: most samples fall between 8-bit levels.
      const off = out.data.filter((v) => Math.abs(v * 255 - Math.round(v * 255)) > 0.01).length;
      assert.ok(off > out.data.length / 4, `${name}: ${off} of ${out.data.length} off the grid`);
    }
  }
});

Deno.test("upscale in pipes: generate | upscale | upscale | meta read shows the whole chain", async () => {
  const tok = await writeByteTokenizer(join(WORK, "tok"));
  const model = await makeTinyModel("sd15", { seed: 2, tokenizerDir: tok });
  const r = await runPipeline(
    `denoise generate "a lighthouse" -m "${model}" --width 64 --height 48 --steps 2 --seed 3 -q` +
      ` | denoise upscale -m "${COMPACT}" -q | denoise upscale - --scale 1.5 -q` +
      ` | denoise meta read`,
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(r.text);
  assert.deepEqual([meta.width, meta.height], [192, 144]);
  assert.equal(meta.job.command, "upscale");
  assert.equal(meta.job.mode, "lanczos");
  assert.equal(meta.job.source.command, "upscale");
  assert.equal(meta.job.source.mode, "esrgan");
  assert.equal(meta.job.source.source.command, "generate");
  assert.equal(meta.job.source.source.prompt, "a lighthouse");
  assert.equal(meta.job.source.source.seed, 3);
  // The generate infotext is kept, with each upscale's Extras fields added.
  assert.equal(meta.a1111.prompt, "a lighthouse");
  assert.equal(meta.a1111.params["Seed"], "3");
  assert.equal(meta.a1111.params["Postprocess upscaler"], "Lanczos");
  assert.equal(meta.a1111.params["Postprocess upscale to"], "192x144");

  // img2img super-resolution with the same tiny model; the prompt comes from the input.
  const out = join(WORK, "sr.png");
  const sr = await runPipeline(
    `denoise generate "a lighthouse" -m "${model}" --width 64 --height 48 --steps 2 --seed 3 -q` +
      ` | denoise upscale -m "${model}" --scale 2 --steps 4 --strength 0.5 --seed 9 -o "${out}" -q`,
    { env: ENV },
  );
  assert.equal(sr.code, 0, sr.stderr);
  const bytes = await Deno.readFile(out);
  const srMeta = readMetadata(bytes);
  const job = srMeta.job as Record<string, unknown>;
  assert.equal(job.mode, "img2img");
  assert.equal(job.prompt, "a lighthouse");
  assert.equal(job.strength, 0.5);
  assert.equal(job.cfg, 8);
  assert.equal(job.seed, 9);
  assert.equal((job.source as Record<string, unknown>).command, "generate");
  assert.deepEqual([srMeta.width, srMeta.height], [128, 96]);
  assert.equal(srMeta.a1111?.params["Denoising strength"], "0.5");
  assert.equal(srMeta.a1111?.params["SD upscale by"], "2");
  assert.equal(srMeta.a1111?.params["Size"], "128x96");
  // Replay with the same input (a file this time) remakes it.
  const input = join(WORK, "gen.png");
  const gen = await runCli([
    "generate",
    "a lighthouse",
    "-m",
    model,
    "--width",
    "64",
    "--height",
    "48",
    "--steps",
    "2",
    "--seed",
    "3",
    "-o",
    input,
    "-q",
  ], { env: ENV });
  assert.equal(gen.code, 0, gen.stderr);
  const again = await runCli(["upscale", input, "--job", out, "-q"], { env: ENV });
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(
    (await decodeFloatImage(again.stdout)).data,
    (await decodeFloatImage(bytes)).data,
  );
  const { input: recorded, ...replayed } = readMetadata(again.stdout).job as Record<
    string,
    unknown
  >;
  assert.equal(recorded, input);
  assert.deepEqual(replayed, job);
  await Deno.remove(model, { recursive: true });
});

Deno.test("upscale refuses bad input with one line, a documented exit code, and writes nothing", async () => {
  const dir = join(WORK, "bad");
  await Deno.mkdir(dir);
  const out = join(dir, "out.png");
  // A weight file that is not an upscaler (LoRA-like tensors).
  const lora = join(WORK, "lora.safetensors");
  await writeSafetensors(lora, [
    { name: "lora_unet_down.alpha", dtype: "F32", shape: [], data: Float32Array.of(4) },
    {
      name: "lora_unet_down.lora_up.weight",
      dtype: "F32",
      shape: [4, 2],
      data: new Float32Array(8),
    },
  ]);
  // A .pth whose pickle asks for os.system.
  const enc = new TextEncoder();
  const cmd = enc.encode("echo hi");
  const pickle = Uint8Array.from([
    0x80,
    2,
    ...enc.encode("cos\nsystem\n"),
    0x58,
    cmd.length,
    0,
    0,
    0,
    ...cmd,
    0x85,
    0x52,
    0x2e,
  ]);
  const evil = join(WORK, "evil.pth");
  await Deno.writeFile(
    evil,
    zipSync({ "archive/data.pkl": pickle, "archive/version": enc.encode("3\n") }, { level: 0 }),
  );
  // 2100 x 2100 by 4 is 8400 x 8400, over the default limit of 8192 x 8192.
  const large = join(WORK, "large.png");
  await sharp({
    create: { width: 2100, height: 2100, channels: 3, background: { r: 9, g: 99, b: 199 } },
  }).png().toFile(large);
  const cases: Array<[string[], number, RegExp]> = [
    [[RGB, "-m", lora], 3, /not an ESRGAN-family upscaler/],
    [[RGB, "-m", evil], 3, /os\.system/],
    [[large, "-m", RRDB], 3, /8400x8400 = 70560000 pixels, over the limit of 67108864/],
    [[RGB, "--scale", "4", "--max-pixels", "1000"], 3, /over the limit of 1000/],
    [[RGB, "--scale", "0"], 2, /"--scale" must be a number > 0, got "0"/],
    [[RGB, "--scale", "-2"], 2, /"--scale" must be a number > 0/],
    [[RGB, "--mode", "esrgan"], 2, /--mode esrgan cannot run with no model/],
    [[RGB, "--mode", "lanczos", "-m", RRDB], 2, /--mode lanczos cannot run with an ESRGAN/],
    [[RGB, "-m", "no-such-alias"], 4, /neither a file, a folder nor a known alias/],
    [[RGB, "-m", join(WORK, "missing.pth")], 5, /no such file/],
    [[join(WORK, "missing.png"), "-m", RRDB], 5, /no such file/],
  ];
  for (const [args, code, message] of cases) {
    const r = await runCli(["upscale", ...args, "-o", out], { env: ENV });
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    oneLineError(r.stderr);
  }
  // Not an image on stdin.
  const r = await runCli(["upscale", "-", "-o", out], { env: ENV, stdin: "not an image" });
  assert.equal(r.code, 3, r.stderr);
  oneLineError(r.stderr);
  assert.deepEqual(listDir(dir), []);
});

Deno.test({
  name: "upscale refuses a real .pth that is not an upscaler (shared fixture: TAESD encoder)",
  ignore: !hasShared,
  fn: async () => {
    const out = join(WORK, "taesd.png");
    const r = await runCli(
      ["upscale", RGB, "-m", sharedPath("fixtures/real/pickles/taesana_encoder.pth"), "-o", out],
      { env: ENV },
    );
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /not an ESRGAN-family upscaler/);
    oneLineError(r.stderr);
    assert.deepEqual(listDir(WORK).filter((n) => n.startsWith("taesd")), []);
  },
});

Deno.test({
  name: "upscale runs the golden tiny RRDBNet x4 .pth within 1/255 of the PyTorch PNG",
  ignore: !hasShared,
  fn: async () => {
    const r = await runCli([
      "upscale",
      sharedPath("golden/upscalers/gradient_32x32.png"),
      "-m",
      sharedPath("golden/upscalers/RRDBNet_x4_tiny.pth"),
      "--tile",
      "0",
      "-q",
    ], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    const ours = await decodeFloatImage(r.stdout);
    const ref = await decodeFloatImage(
      await Deno.readFile(sharedPath("golden/upscalers/RRDBNet_x4_tiny__gradient_32x32.png")),
    );
    const diff = maxLevels(ours, ref);
    console.log(`golden RRDBNet x4 tiny through the CLI: maxdiff ${diff} levels`);
    assert.ok(diff <= 1, `maxdiff ${diff}`);
  },
});
