/**
 * `denoise animate` through the real CLI: the Diffusers AnimateDiffPipeline golden frames, context
 * windows, prompt travel, motion LoRAs, every output format (opened with sharp, ffprobe for MP4
 * when installed), replay from metadata, and bad inputs (one line, exit code, nothing written).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { readPngChunks } from "../lib/meta/png.ts";
import { encodeChunk, PNG_SIGNATURE } from "../lib/meta/png.ts";
import { concatBytes } from "../lib/meta/text.ts";
import { createRandomMotionAdapter } from "../lib/models/random_motion.ts";
import { listDir, runCli, runPipeline } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { hasShared, sharedPath } from "./shared.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-animate-home-" });
const ENV = { DENOISE_HOME: HOME };
const OUT = await Deno.makeTempDir({ prefix: "denoise-animate-out-" });

/** A tiny random SD 1.x model and motion modules for it: runs without ../shared. */
const MODEL = await makeTinyModel("sd15", {
  seed: 3,
  tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" })),
});
const MOTION_DIR = await Deno.makeTempDir({ prefix: "denoise-motion-" });
/** 16 frame positions, one motion layer per block (the tiny UNet has one resnet per block). */
const MOTION = join(MOTION_DIR, "mm16");
await createRandomMotionAdapter(
  {
    block_out_channels: [32, 32, 32, 64],
    motion_layers_per_block: 1,
    motion_max_seq_length: 16,
  },
  MOTION,
  { seed: 1 },
);
/** A module for a three-block (SDXL-shaped) UNet: does not fit the tiny SD 1.x model. */
const OTHER_BASE = join(MOTION_DIR, "mm_xl");
await createRandomMotionAdapter(
  {
    block_out_channels: [32, 64, 64],
    motion_layers_per_block: 1,
    motion_max_seq_length: 16,
  },
  OTHER_BASE,
  { seed: 2 },
);

const BASE = ["animate", "a red fox", "-m", MODEL, "--motion-module", MOTION, "--steps", "2"];

async function animate(args: string[]) {
  const r = await runCli([...args, "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  return r;
}

async function rgb(bytes: Uint8Array): Promise<Uint8Array> {
  const { data } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

/** The decoded frames of a `-o DIR/` run, in name order. */
async function framePixels(dir: string): Promise<Uint8Array[]> {
  const names = listDir(dir).filter((n) => n.endsWith(".png")).sort();
  return await Promise.all(names.map(async (n) => rgb(await Deno.readFile(join(dir, n)))));
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

Deno.test({
  name: "animate matches Diffusers' AnimateDiffPipeline (PNDM, 8 frames): every frame within 1/255",
  ignore: !hasShared,
  fn: async () => {
    const dir = join(OUT, "golden_pndm");
    await animate([
      "animate",
      "a photo of a cat",
      "-m",
      sharedPath("golden/models/tiny_sd/pipeline"),
      "--motion-module",
      sharedPath("golden/models/tiny_sd_animatediff/motion_adapter"),
      "--frames",
      "8",
      "--steps",
      "4",
      "--cfg",
      "7.5",
      "--seed",
      "0",
      "--width",
      "128",
      "--height",
      "128",
      "-o",
      `${dir}/`,
    ]);
    const frames = await framePixels(dir);
    assert.equal(frames.length, 8);
    let worst = 0;
    for (const [k, frame] of frames.entries()) {
      const golden = await rgb(
        await Deno.readFile(
          sharedPath(
            `golden/models/tiny_sd_animatediff/frames_pndm/frame_${String(k).padStart(2, "0")}.png`,
          ),
        ),
      );
      worst = Math.max(worst, maxDiff(frame, golden));
    }
    console.log(`animate PNDM frames vs Diffusers: maxdiff ${worst}/255`);
    assert.ok(worst <= 1, `maxdiff ${worst} > 1`);
  },
});

/** PSNR of `a` against `b` (8-bit samples), in dB. */
function psnr(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255 * a.length) / se);
}

/**
 * Minimum PSNR of an int8 frame against Diffusers' float32 frame (which the fp32 run matches
 * within 1/255) on tiny_sd with its random motion adapter; measured 40.0-42.3 dB.
 */
const INT8_MIN_PSNR_DB = 35;

Deno.test({
  name: `animate --precision int8 (UNet and motion modules quantised) stays within ` +
    `${INT8_MIN_PSNR_DB} dB PSNR of the float32 frames`,
  ignore: !hasShared,
  fn: async () => {
    const dir = join(OUT, "int8_pndm");
    await animate([
      "animate",
      "a photo of a cat",
      "-m",
      sharedPath("golden/models/tiny_sd/pipeline"),
      "--motion-module",
      sharedPath("golden/models/tiny_sd_animatediff/motion_adapter"),
      "--frames",
      "8",
      "--steps",
      "4",
      "--cfg",
      "7.5",
      "--seed",
      "0",
      "--width",
      "128",
      "--height",
      "128",
      "--precision",
      "int8",
      "-o",
      `${dir}/`,
    ]);
    const frames = await framePixels(dir);
    assert.equal(frames.length, 8);
    let worst = Infinity;
    for (const [k, frame] of frames.entries()) {
      const fp32 = await rgb(
        await Deno.readFile(
          sharedPath(
            `golden/models/tiny_sd_animatediff/frames_pndm/frame_${String(k).padStart(2, "0")}.png`,
          ),
        ),
      );
      worst = Math.min(worst, psnr(frame, fp32));
    }
    console.log(`animate int8 frames vs float32: worst PSNR ${worst.toFixed(2)} dB`);
    // The motion modules' linears were quantised too (their int8 weights are in the graph).
    const graphs = join(HOME, "graphs");
    const quantised = listDir(graphs).filter((d) => d.startsWith("unet_motion-")).some((d) =>
      new TextDecoder("latin1").decode(Deno.readFileSync(join(graphs, d, "model.onnx")))
        .includes("down_blocks.0.motion_modules.0.proj_in.weight.int8")
    );
    assert.ok(quantised, "no unet_motion graph holds int8 motion-module weights");
    assert.ok(worst >= INT8_MIN_PSNR_DB, `PSNR ${worst.toFixed(2)} dB < ${INT8_MIN_PSNR_DB} dB`);
  },
});

Deno.test("animate: one context window covering every frame equals the plain run exactly", async () => {
  const plain = join(OUT, "plain8");
  const windowed = join(OUT, "window8");
  await animate([...BASE, "--frames", "8", "--seed", "4", "-o", `${plain}/`]);
  await animate([
    ...BASE,
    "--frames",
    "8",
    "--seed",
    "4",
    "--context-length",
    "8",
    "--context-overlap",
    "2",
    "-o",
    `${windowed}/`,
  ]);
  const [a, b] = [await framePixels(plain), await framePixels(windowed)];
  assert.equal(a.length, 8);
  a.forEach((frame, k) => assert.equal(maxDiff(frame, b[k]!), 0, `frame ${k}`));
});

Deno.test("animate: a 24-frame clip runs with a 16-frame module in context windows, not without", async () => {
  const dir = join(OUT, "long24");
  const refused = await runCli([...BASE, "--frames", "24", "-o", `${dir}/`, "-q"], { env: ENV });
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /--context-length 16/);
  assert.ok(!existsSync(dir), "nothing written");
  await animate([
    ...BASE,
    "--frames",
    "24",
    "--seed",
    "1",
    "--context-length",
    "16",
    "-o",
    `${dir}/`,
  ]);
  const frames = await framePixels(dir);
  assert.equal(frames.length, 24);
  assert.ok(frames.some((f, k) => k > 0 && maxDiff(f, frames[0]!) > 0), "frames differ");
  // Both windows of each step in one UNet call (two clips): the same clip.
  const batched = join(OUT, "long24_batched");
  await animate([
    ...BASE,
    "--frames",
    "24",
    "--seed",
    "1",
    "--context-length",
    "16",
    "--context-batch",
    "2",
    "-o",
    `${batched}/`,
  ]);
  const again = await framePixels(batched);
  const worst = Math.max(...frames.map((f, k) => maxDiff(f, again[k]!)));
  console.log(`--context-batch 2 vs 1: maxdiff ${worst}/255`);
  assert.ok(worst <= 1, `maxdiff ${worst}`);
});

Deno.test("animate: animated WebP and GIF open in sharp with the frame count, frame rate and Job", async () => {
  for (const [ext, fps, delay] of [["webp", 8, 125], ["gif", 10, 100], ["webp", 12, 83]] as const) {
    const path = join(OUT, `clip_${fps}.${ext}`);
    await animate([...BASE, "--frames", "6", "--seed", "2", "--fps", String(fps), "-o", path]);
    const bytes = await Deno.readFile(path);
    const meta = await sharp(bytes, { animated: true }).metadata();
    assert.equal(meta.format, ext);
    assert.equal(meta.pages, 6, `${ext} pages`);
    assert.deepEqual(meta.delay, new Array(6).fill(delay), `${ext} delays`);
    const job = readMetadata(bytes).job as { command: string; frames: number; fps: number };
    assert.equal(job.command, "animate");
    assert.equal(job.frames, 6);
    assert.equal(job.fps, fps);
  }
});

/** The frames of an APNG as standalone PNGs (IHDR + that frame's data), with acTL/fcTL facts. */
function splitApng(bytes: Uint8Array) {
  const chunks = readPngChunks(bytes).chunks;
  const ihdr = chunks.find((c) => c.type === "IHDR")!.data;
  const actl = new DataView(chunks.find((c) => c.type === "acTL")!.data.slice().buffer);
  const frames: Uint8Array[][] = [];
  const delays: Array<[number, number]> = [];
  const sequence: number[] = [];
  for (const c of chunks) {
    const v = new DataView(c.data.slice().buffer);
    if (c.type === "fcTL") {
      sequence.push(v.getUint32(0));
      delays.push([v.getUint16(20), v.getUint16(22)]);
      frames.push([]);
    } else if (c.type === "IDAT") {
      frames.at(-1)!.push(c.data);
    } else if (c.type === "fdAT") {
      sequence.push(v.getUint32(0));
      frames.at(-1)!.push(c.data.subarray(4));
    }
  }
  const pngs = frames.map((parts) =>
    concatBytes([
      PNG_SIGNATURE,
      encodeChunk("IHDR", ihdr),
      ...parts.map((p) => encodeChunk("IDAT", p)),
      encodeChunk("IEND", new Uint8Array()),
    ])
  );
  return { count: actl.getUint32(0), plays: actl.getUint32(4), pngs, delays, sequence };
}

Deno.test("animate: -o x.png writes an APNG whose frames are the -o DIR/ frames", async () => {
  const path = join(OUT, "clip.png");
  const dir = join(OUT, "clip_frames");
  await animate([...BASE, "--frames", "5", "--seed", "6", "--fps", "8", "-o", path]);
  await animate([...BASE, "--frames", "5", "--seed", "6", "--fps", "8", "-o", `${dir}/`]);
  const bytes = await Deno.readFile(path);
  const apng = splitApng(bytes);
  assert.equal(apng.count, 5);
  assert.equal(apng.plays, 0);
  assert.deepEqual(apng.delays, new Array(5).fill([1, 8]));
  assert.deepEqual(apng.sequence, apng.sequence.map((_, i) => i), "fcTL/fdAT sequence 0, 1, 2...");
  // sharp (libvips) shows an APNG's default image: frame 0.
  const frames = await framePixels(dir);
  assert.equal(maxDiff(await rgb(bytes), frames[0]!), 0);
  for (const [k, png] of apng.pngs.entries()) {
    assert.equal(maxDiff(await rgb(png), frames[k]!), 0, `APNG frame ${k}`);
  }
  assert.equal(
    listDir(dir).join(),
    "frame_000.png,frame_001.png,frame_002.png,frame_003.png,frame_004.png",
  );
  const job = readMetadata(bytes).job as { command: string; seed: number };
  assert.equal(job.command, "animate");
  assert.equal(job.seed, 6);
  assert.equal(
    (readMetadata(await Deno.readFile(join(dir, "frame_003.png"))).job as { frames: number })
      .frames,
    5,
  );
});

/** True when `program -version` runs. */
async function runs(program: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(program, {
      args: ["-version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

const hasFfmpeg = await runs("ffmpeg") && await runs("ffprobe");
if (!hasFfmpeg) {
  console.warn(
    "note: ffmpeg/ffprobe are not on PATH; the MP4 test checks only the missing-program error",
  );
}

Deno.test("animate: -o x.mp4 writes H.264 with the frame count, frame rate and Job (ffprobe)", async () => {
  const path = join(OUT, "clip.mp4");
  const args = [...BASE, "--frames", "6", "--seed", "2", "--fps", "12", "-o", path, "-q"];
  if (!hasFfmpeg) {
    const r = await runCli(args, { env: { ...ENV, PATH: "/nonexistent" } });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /"ffmpeg" is not on PATH/);
    assert.equal(r.stderr.trim().split("\n").filter((l) => l.startsWith("denoise:")).length, 1);
    assert.ok(!existsSync(path));
    return;
  }
  await animate(args.slice(0, -1));
  const probe = await new Deno.Command("ffprobe", {
    args: [
      "-v",
      "error",
      "-count_frames",
      "-select_streams",
      "v:0",
      "-show_entries",
      "stream=codec_name,nb_read_frames,r_frame_rate:format_tags=comment",
      "-of",
      "json",
      path,
    ],
    stdout: "piped",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(probe.stdout));
  assert.equal(info.streams[0].codec_name, "h264");
  assert.equal(Number(info.streams[0].nb_read_frames), 6);
  assert.equal(info.streams[0].r_frame_rate, "12/1");
  assert.equal(JSON.parse(info.format.tags.comment).command, "animate");
});

Deno.test("animate: stdout gets an animated WebP; the Job in it replays the same clip", async () => {
  const r = await runPipeline(
    `denoise animate "a red fox" -m "${MODEL}" --motion-module "${MOTION}" --steps 2 --frames 4 ` +
      `--seed 9 -q | tee "${OUT}/piped.webp" | denoise meta read | denoise animate --job - -q`,
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  const first = await Deno.readFile(join(OUT, "piped.webp"));
  assert.equal((await sharp(first, { animated: true }).metadata()).pages, 4);
  assert.deepEqual(r.stdout, first, "the replayed clip is byte-identical");
});

Deno.test("animate: prompt travel with one keyframe at 0 equals the plain prompt; two keyframes differ", async () => {
  const plain = join(OUT, "travel_plain");
  const one = join(OUT, "travel_one");
  const two = join(OUT, "travel_two");
  const common = [
    "animate",
    "-m",
    MODEL,
    "--motion-module",
    MOTION,
    "--steps",
    "2",
    "--frames",
    "6",
    "--seed",
    "3",
  ];
  await animate([...common, "a red fox", "-o", `${plain}/`]);
  await animate([...common, "--prompt-map", '{"0": "a red fox"}', "-o", `${one}/`]);
  await animate([
    ...common,
    "--prompt-map",
    '{"0": "a red fox", "5": "a blue bird"}',
    "-o",
    `${two}/`,
  ]);
  const [a, b, c] = [await framePixels(plain), await framePixels(one), await framePixels(two)];
  a.forEach((frame, k) => assert.equal(maxDiff(frame, b[k]!), 0, `frame ${k}`));
  assert.ok(c.some((frame, k) => maxDiff(frame, a[k]!) > 0), "travelling changes the clip");
});

Deno.test({
  name:
    "animate: a motion LoRA at scale 0 changes nothing, at scale 1 it does; an image LoRA applies",
  ignore: !hasShared,
  fn: async () => {
    const lora = sharedPath(
      "golden/models/tiny_sd_animatediff/motion_lora/diffusion_pytorch_model.safetensors",
    );
    const common = [
      "animate",
      "a photo of a cat",
      "-m",
      sharedPath("golden/models/tiny_sd/pipeline"),
      "--motion-module",
      sharedPath("golden/models/tiny_sd_animatediff/motion_adapter"),
      "--frames",
      "4",
      "--steps",
      "2",
      "--seed",
      "0",
      "--width",
      "64",
      "--height",
      "64",
    ];
    const dirs = ["lora_none", "lora_0", "lora_1", "lora_image"].map((d) => join(OUT, d));
    await animate([...common, "-o", `${dirs[0]}/`]);
    await animate([...common, "--motion-lora", `${lora}:0`, "-o", `${dirs[1]}/`]);
    await animate([...common, "--motion-lora", lora, "-o", `${dirs[2]}/`]);
    // An image LoRA (kohya) on the model's spatial layers, as generate applies it.
    const image = sharedPath("golden/models/tiny_sd/lora_kohya.safetensors");
    await animate([...common, "--lora", image, "-o", `${dirs[3]}/`]);
    const [none, zero, one, withImage] = await Promise.all(dirs.map(framePixels));
    none!.forEach((f, k) => assert.equal(maxDiff(f, zero![k]!), 0, `frame ${k}`));
    assert.ok(one!.some((f, k) => maxDiff(f, none![k]!) > 0));
    assert.ok(withImage!.some((f, k) => maxDiff(f, none![k]!) > 0), "the image LoRA applies");
    const job = readMetadata(await Deno.readFile(join(dirs[2]!, "frame_000.png"))).job as {
      motionLora: Array<{ path: string; scale: number }>;
    };
    assert.deepEqual(job.motionLora, [{ path: lora, scale: 1 }]);
  },
});

Deno.test("animate: two runs write byte-identical files; --job clip.gif remakes it", async () => {
  const a = join(OUT, "same_a.gif");
  const b = join(OUT, "same_b.gif");
  const c = join(OUT, "same_c.gif");
  await animate([...BASE, "--frames", "4", "--seed", "11", "-o", a]);
  await animate([...BASE, "--frames", "4", "--seed", "11", "-o", b]);
  assert.deepEqual(await Deno.readFile(a), await Deno.readFile(b));
  await animate(["animate", "--job", a, "-o", c]);
  assert.deepEqual(await Deno.readFile(c), await Deno.readFile(a));
});

for (
  const [what, args, code, pattern] of [
    [
      "a motion module for another base model",
      ["animate", "a fox", "-m", MODEL, "--motion-module", OTHER_BASE, "--frames", "4"],
      3,
      /Cannot use this motion module with this model/,
    ],
    ["--frames 0", [...BASE, "--frames", "0"], 2, /"--frames" must be a positive integer/],
    [
      "a prompt map with a frame beyond --frames",
      [...BASE, "--frames", "8", "--prompt-map", '{"0": "a", "8": "b"}'],
      2,
      /prompt for frame 8, but the clip has 8 frames/,
    ],
    [
      "an unknown output extension",
      [...BASE, "--frames", "4"],
      2,
      /Cannot tell the animation format/,
    ],
  ] as const
) {
  Deno.test(`animate refuses ${what}: one line, exit ${code}, nothing written`, async () => {
    const path = join(OUT, `bad_${what.replace(/\W+/g, "_")}.avi`);
    const target = what === "an unknown output extension" ? path : path.replace(/\.avi$/, ".webp");
    const r = await runCli([...args, "-o", target, "-q"], { env: ENV });
    assert.equal(r.code, code, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.filter((l) => l.startsWith("denoise:")).length, 1, r.stderr);
    assert.match(lines[0]!, pattern);
    assert.ok(lines.every((l) => l.startsWith("denoise:") || l.startsWith("hint:")), r.stderr);
    assert.ok(!existsSync(target), "nothing written");
  });
}
