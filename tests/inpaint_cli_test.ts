/**
 * `denoise img2img --mask` through the real CLI: 4- and 9-channel tiny random models, the A1111
 * overlay with --mask-blur, metadata replay, and bad masks.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { readMetadata } from "../lib/meta/read.ts";
import { listDir, runCli } from "./cli.ts";
import { TINY_SD15_UNET } from "./fixtures/configs.ts";
import { createRandomModel, makeTinyModel, TINY_MODELS } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-inpaint-home-" });
const ENV = { DENOISE_HOME: HOME };
const WORK = await Deno.makeTempDir({ prefix: "denoise-inpaint-cli-" });
const tokenizerDir = await writeByteTokenizer(join(WORK, "tokenizer"));
const MODEL = await makeTinyModel("sd15", { seed: 3, tokenizerDir });
const INPAINT_MODEL = join(WORK, "sd15-inpainting");
await createRandomModel(
  { ...TINY_MODELS.sd15, unet: { ...TINY_SD15_UNET, in_channels: 9 } },
  INPAINT_MODEL,
  { seed: 4, tokenizerDir },
);

const SIZE = 64;

async function png(
  width: number,
  height: number,
  channels: 1 | 3,
  fill: (x: number, y: number, c: number) => number,
): Promise<Uint8Array> {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) data[(y * width + x) * channels + c] = fill(x, y, c);
    }
  }
  return new Uint8Array(await sharp(data, { raw: { width, height, channels } }).png().toBuffer());
}

const INPUT = join(WORK, "input.png");
await Deno.writeFile(INPUT, await png(SIZE, SIZE, 3, (x, y, c) => (x * 4 + y * 2 + c * 60) % 256));
/** Repaints the left half. */
const MASK = join(WORK, "mask.png");
await Deno.writeFile(MASK, await png(SIZE, SIZE, 1, (x) => (x < 32 ? 255 : 0)));

async function pixels(
  bytes: Uint8Array,
): Promise<{ data: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({
    resolveWithObject: true,
  });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
}

function inpaintArgs(model: string, ...extra: string[]): string[] {
  return [
    "img2img",
    "a red fox",
    "-m",
    model,
    "--image",
    INPUT,
    "--mask",
    MASK,
    "--steps",
    "3",
    "--seed",
    "7",
    "-q",
    ...extra,
  ];
}

Deno.test("img2img --mask --mask-blur keeps the original pixels away from the mask and records the job", async () => {
  const out = join(WORK, "blur.png");
  const r = await runCli(inpaintArgs(MODEL, "--mask-blur", "4", "--strength", "0.8", "-o", out), {
    env: ENV,
  });
  assert.equal(r.code, 0, r.stderr);
  const bytes = await Deno.readFile(out);
  const [made, input] = [await pixels(bytes), await pixels(await Deno.readFile(INPUT))];
  assert.deepEqual([made.width, made.height], [SIZE, SIZE]);
  // Blur 4 has kernel radius int(2.5 * 4 + 0.5) = 10, so the blurred mask (and the overlay
  // mask clip(2 * blurred)) is 0 from x = 42 on: the input pixels exactly.
  let outside = 0;
  let inside = 0;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * SIZE + x) * 3 + c;
        const d = Math.abs(made.data[i]! - input.data[i]!);
        if (x >= 44) outside = Math.max(outside, d);
        if (x < 24) inside = Math.max(inside, d);
      }
    }
  }
  assert.equal(outside, 0, `pixels far from the mask changed by up to ${outside}`);
  assert.ok(inside > 10, `the masked area was not repainted (max change ${inside})`);
  const meta = readMetadata(bytes);
  const job = meta.job as Record<string, unknown>;
  assert.equal(job.mask, MASK);
  assert.equal(job.maskBlur, 4);
  assert.equal(job.strength, 0.8);
  assert.equal(meta.a1111?.params["Mask blur"], "4");
  assert.equal(meta.a1111?.params["Denoising strength"], "0.8");
});

Deno.test("img2img --mask replays from its own metadata byte for byte (the mask is read again)", async () => {
  const first = join(WORK, "replay-a.png");
  let r = await runCli(inpaintArgs(MODEL, "--sampler", "euler-a", "-o", first), { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const second = join(WORK, "replay-b.png");
  r = await runCli(["img2img", "--job", first, "--image", INPUT, "-o", second, "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(second), await Deno.readFile(first));
  // Without the mask the same job is plain img2img: a different image.
  r = await runCli([
    "img2img",
    "a red fox",
    "-m",
    MODEL,
    "--image",
    INPUT,
    "--steps",
    "3",
    "--seed",
    "7",
    "--sampler",
    "euler-a",
    "-q",
  ], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.notDeepEqual(r.stdout, await Deno.readFile(first));
});

Deno.test("img2img --mask runs a 9-channel inpainting model end to end", async () => {
  const r = await runCli(inpaintArgs(INPAINT_MODEL, "--strength", "1"), { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const made = await pixels(r.stdout);
  assert.deepEqual([made.width, made.height], [SIZE, SIZE]);
  const job = readMetadata(r.stdout).job as Record<string, unknown>;
  assert.equal(job.command, "img2img");
  assert.equal(job.mask, MASK);
});

Deno.test("img2img --mask rejects a mask of another size and a mask that is not an image, writing nothing", async () => {
  const dir = join(WORK, "bad");
  await Deno.mkdir(dir);
  const small = join(WORK, "small-mask.png");
  await Deno.writeFile(small, await png(32, 32, 1, () => 255));
  let r = await runCli(
    [
      "img2img",
      "x",
      "-m",
      MODEL,
      "--image",
      INPUT,
      "--mask",
      small,
      "--steps",
      "2",
      "-o",
      join(dir, "a.png"),
    ],
    { env: ENV },
  );
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /mask .*small-mask\.png is 32x32 but the image is 64x64/);
  assert.equal(
    r.stderr.trim().split("\n").filter((l) => !l.startsWith("hint")).length <= 2,
    true,
    r.stderr,
  );
  const text = join(WORK, "mask.txt");
  await Deno.writeTextFile(text, "not an image");
  r = await runCli(
    [
      "img2img",
      "x",
      "-m",
      MODEL,
      "--image",
      INPUT,
      "--mask",
      text,
      "--steps",
      "2",
      "-o",
      join(dir, "b.png"),
    ],
    { env: ENV },
  );
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /Cannot decode the image from .*mask\.txt/);
  r = await runCli(
    [
      "img2img",
      "x",
      "-m",
      MODEL,
      "--image",
      INPUT,
      "--mask",
      join(WORK, "missing.png"),
      "-o",
      join(dir, "c.png"),
    ],
    { env: ENV },
  );
  assert.notEqual(r.code, 0);
  assert.deepEqual(listDir(dir), []);
});

/** Repaints the 8x8 square x 40..47, y 8..15. */
const SQUARE_MASK = join(WORK, "square-mask.png");
await Deno.writeFile(
  SQUARE_MASK,
  await png(SIZE, SIZE, 1, (x, y) => (x >= 40 && x < 48 && y >= 8 && y < 16 ? 255 : 0)),
);

/** The largest change per pixel inside and outside a region `[x1, x2) x [y1, y2)`. */
function changes(
  made: Uint8Array,
  input: Uint8Array,
  inRegion: (x: number, y: number) => boolean,
): { inside: number; outside: number } {
  let inside = 0;
  let outside = 0;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * SIZE + x) * 3 + c;
        const d = Math.abs(made[i]! - input[i]!);
        if (inRegion(x, y)) inside = Math.max(inside, d);
        else outside = Math.max(outside, d);
      }
    }
  }
  return { inside, outside };
}

Deno.test("img2img --inpaint-full-res repaints only the crop around the mask, records it and replays", async () => {
  const input = await pixels(await Deno.readFile(INPUT));
  const first = join(WORK, "full-res-a.png");
  const args = [
    "img2img",
    "a red fox",
    "-m",
    MODEL,
    "--image",
    INPUT,
    "--mask",
    SQUARE_MASK,
    "--mask-blur",
    "2",
    "--inpaint-full-res",
    "--inpaint-full-res-padding",
    "8",
    "--steps",
    "3",
    "--seed",
    "7",
    "--sampler",
    "euler-a",
    "-q",
  ];
  let r = await runCli([...args, "-o", first], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const bytes = await Deno.readFile(first);
  const made = await pixels(bytes);
  assert.deepEqual([made.width, made.height], [SIZE, SIZE]);
  // Blur 2 (kernel radius int(2.5 * 2 + 0.5) = 5) spreads the square to x 35..52, y 3..20;
  // padding 8 gives (27, 0, 61, 29), 34x29, grown to the 64x64 ratio: height 34, diff 5,
  // y -2..32, shifted down to 0..34. The crop region is (27, 0, 61, 34).
  const crop = changes(made.data, input.data, (x, y) => x >= 27 && x < 61 && y < 34);
  assert.equal(crop.outside, 0, `pixels outside the crop region changed by up to ${crop.outside}`);
  const square = changes(made.data, input.data, (x, y) => x >= 40 && x < 48 && y >= 8 && y < 16);
  assert.ok(square.inside > 10, `the mask was not repainted (max change ${square.inside})`);
  // The blurred seam reaches past the square but not past the blur radius.
  const seam = changes(made.data, input.data, (x, y) => x >= 35 && x < 53 && y >= 3 && y < 21);
  assert.equal(seam.outside, 0, `pixels past the blurred mask changed by up to ${seam.outside}`);
  const meta = readMetadata(bytes);
  const job = meta.job as Record<string, unknown>;
  assert.equal(job.inpaintFullRes, true);
  assert.equal(job.inpaintFullResPadding, 8);
  assert.equal(meta.a1111?.params["Inpaint area"], "Only masked");
  assert.equal(meta.a1111?.params["Masked area padding"], "8");
  assert.equal(meta.a1111?.params["Mask blur"], "2");

  const second = join(WORK, "full-res-b.png");
  r = await runCli(["img2img", "--job", first, "--image", INPUT, "-o", second, "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(second), bytes);
  // Whole-image inpainting of the same job is another image.
  const whole = join(WORK, "full-res-off.png");
  r = await runCli([...args.filter((a) => a !== "--inpaint-full-res"), "-o", whole], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.notDeepEqual((await pixels(await Deno.readFile(whole))).data, made.data);
});
