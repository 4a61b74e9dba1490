/**
 * `denoise upscale --mode controlnet-tile` (book 11.2) through the real CLI on a tiny random SD 1.5
 * model and ControlNet: one tile equals `denoise controlnet --image R --control NET:R --strength
 * 0.8` on the resized image R exactly (A1111 control modes too), the Job replays, tiled runs are
 * measured for seams against one tile and against hard cuts, and bad input fails in one line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeFloatImage, decodeImage, encodeImage, type RawImage } from "../lib/image/codec.ts";
import { planTiles } from "../lib/image/tiles.ts";
import { pilResize } from "../lib/image/pil_resample.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { createRandomControlnet } from "../lib/models/random.ts";
import { tileGridMultiple } from "../lib/pipeline/upscale_img2img.ts";
import { listDir, runCli } from "./cli.ts";
import { TINY_SD15_UNET, TINY_SDXL_UNET } from "./fixtures/configs.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-cntile-home-" });
const ENV = { DENOISE_HOME: HOME };
const WORK = await Deno.makeTempDir({ prefix: "denoise-cntile-" });
const TOKENIZER = await writeByteTokenizer(join(WORK, "tok"));
const SD15 = await makeTinyModel("sd15", { seed: 3, tokenizerDir: TOKENIZER });

/** A tiny random ControlNet for a tiny UNet config (as `ControlNetModel.from_unet` shapes it). */
async function makeNet(unet: Record<string, unknown>, name: string, seed = 7): Promise<string> {
  const { sample_size: _s, up_block_types: _u, ...json } = unet;
  const dir = join(WORK, name);
  await createRandomControlnet(
    { ...json, conditioning_embedding_out_channels: [8, 16, 16, 32] },
    dir,
    { seed },
  );
  return dir;
}

const NET = await makeNet(TINY_SD15_UNET, "control_v11p_sd15_canny");
const SDXL_NET = await makeNet(TINY_SDXL_UNET, "controlnet_sdxl");

/** A smooth 8-bit RGB picture with detail. */
function picture(width: number, height: number): RawImage {
  const data = new Uint8Array(3 * width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const v = 0.5 + 0.45 * Math.sin(x / (3 + c) + y / 5) * Math.cos(y / (4 + c) - x / 9);
        data[(y * width + x) * 3 + c] = Math.round(255 * v);
      }
    }
  }
  return { width, height, channels: 3, data };
}

async function write(name: string, image: RawImage): Promise<string> {
  const path = join(WORK, name);
  await Deno.writeFile(path, await encodeImage(image, "png"));
  return path;
}

async function run(args: string[]): Promise<Uint8Array> {
  const r = await runCli([...args, "-q"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

async function rgb(bytes: Uint8Array): Promise<RawImage> {
  return await decodeImage(bytes, { channels: 3 });
}

function maxDiff(a: RawImage, b: RawImage): number {
  assert.deepEqual([a.width, a.height], [b.width, b.height]);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

const SMALL = picture(32, 32);
const SMALL_PATH = await write("small.png", SMALL);
// The image the upscale resizes to: PIL's Lanczos, x2 (what the book's resize_img makes).
const RESIZED = await write("resized.png", pilResize(SMALL, 64, 64, "lanczos"));
const SD_ARGS = ["-m", SD15, "--steps", "5", "--seed", "4"];

Deno.test("controlnet-tile, one tile: exactly `controlnet --image R --control NET:R --strength 0.8`", async () => {
  for (const controlMode of ["balanced", "control"] as const) {
    const out = join(WORK, `one-tile-${controlMode}.png`);
    await run([
      "upscale",
      SMALL_PATH,
      ...SD_ARGS,
      "--controlnet",
      NET,
      "--control-mode",
      controlMode,
      "--scale",
      "2",
      "--prompt",
      "a photo of a cat",
      "--negative",
      "",
      "-o",
      out,
    ]);
    const upscaled = await Deno.readFile(out);
    const reference = await run([
      "controlnet",
      "a photo of a cat",
      ...SD_ARGS,
      "--image",
      RESIZED,
      "--control",
      `${NET}:${RESIZED}`,
      "--strength",
      "0.8",
      "--cfg",
      "7",
      "--control-mode",
      controlMode,
    ]);
    const diff = maxDiff(await rgb(upscaled), await rgb(reference));
    console.log(`${controlMode}: upscale --mode controlnet-tile vs controlnet: ${diff}/255`);
    assert.equal(diff, 0);
    const meta = readMetadata(upscaled);
    const job = meta.job as Record<string, unknown>;
    assert.equal(job.mode, "controlnet-tile", "implied by --controlnet");
    assert.equal(job.controlnet, NET);
    assert.equal(job.controlnetScale, 1);
    assert.equal(job.controlMode, controlMode);
    assert.deepEqual([job.strength, job.cfg, job.steps, job.tile], [0.8, 7, 5, 64]);
    const params = meta.a1111!.params;
    assert.equal(params["Denoising strength"], "0.8");
    assert.equal(params["SD upscale by"], "2");
    assert.match(
      params["ControlNet 0"]!,
      new RegExp(
        "^Module: none, Model: control_v11p_sd15_canny, Weight: 1\\.0, .*Control Mode: " +
          (controlMode === "balanced" ? "Balanced$" : "ControlNet is more important$"),
      ),
    );
    if (controlMode === "balanced") {
      // The Job replays; the net matters (scale 0 is the img2img mode at the same settings).
      const again = await run(["upscale", SMALL_PATH, "--job", out]);
      assert.equal(maxDiff(await rgb(again), await rgb(upscaled)), 0, "replay");
      const zero = await run([
        "upscale",
        SMALL_PATH,
        ...SD_ARGS,
        "--controlnet",
        NET,
        "--controlnet-scale",
        "0",
        "--scale",
        "2",
        "--prompt",
        "a photo of a cat",
        "--negative",
        "",
      ]);
      const plain = await run([
        "upscale",
        SMALL_PATH,
        ...SD_ARGS,
        "--mode",
        "img2img",
        "--strength",
        "0.8",
        "--cfg",
        "7",
        "--scale",
        "2",
        "--prompt",
        "a photo of a cat",
        "--negative",
        "",
      ]);
      assert.equal(maxDiff(await rgb(zero), await rgb(plain)), 0, "scale 0 = img2img mode");
      assert.ok(maxDiff(await rgb(zero), await rgb(upscaled)) > 1, "the net changes the image");
    }
  }
});

/**
 * The column profile of `a - b` (mean over rows and channels, in 8-bit levels) and its largest
 * jump between neighbouring columns at the cuts and elsewhere. With `rows`, the same across rows.
 */
function seamJumps(
  a: RawImage,
  b: RawImage,
  cuts: number[],
  rows = false,
): { atCuts: number; elsewhere: number } {
  const { width, height } = a;
  const length = rows ? height : width;
  const profile = new Float64Array(length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * width + x) * 3 + c;
        profile[rows ? y : x]! += (a.data[i]! - b.data[i]!) / (3 * (rows ? width : height));
      }
    }
  }
  let atCuts = 0;
  let elsewhere = 0;
  for (let x = 1; x < length; x++) {
    const jump = Math.abs(profile[x]! - profile[x - 1]!);
    if (cuts.includes(x)) atCuts = Math.max(atCuts, jump);
    else elsewhere = Math.max(elsewhere, jump);
  }
  return { atCuts, elsewhere };
}

/** The pixel columns where latent tiles start or end inside an image `size` pixels wide. */
function cutColumns(size: number, tile: number, overlap: number): number[] {
  const multiple = tileGridMultiple(8, tile / 8, overlap / 8);
  const grid = planTiles(size / 8, 8, {
    tile: tile / 8,
    overlap: overlap / 8,
    margin: 0,
    multiple,
  });
  return [...new Set(grid.columns.spans.flatMap((s) => [s.start, s.end]))]
    .filter((x) => x > 0 && x < size / 8).map((x) => x * 8);
}

Deno.test("controlnet-tile, tiled: the net runs per tile and no seam stands out (measured)", async () => {
  // 96x96 -> 192x192 pixels, a 24x24 latent; the tiny UNet's native size is 64 pixels.
  const input = await write("medium.png", picture(96, 96));
  const base = [
    "upscale",
    input,
    ...SD_ARGS,
    "--controlnet",
    NET,
    "--scale",
    "2",
    "--prompt",
    "a photo of a cat",
    "--json",
  ];
  const runs: Record<string, { image: RawImage; tiles: number }> = {};
  for (
    const [name, tile, overlap] of [["whole", 0, 0], ["tiled", 96, 32], ["hard", 96, 0]] as const
  ) {
    const out = join(WORK, `seams-${name}.png`);
    const r = await runCli([
      ...base,
      "--tile",
      `${tile}`,
      "--tile-overlap",
      `${overlap}`,
      "-o",
      out,
    ], {
      env: ENV,
    });
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.text);
    runs[name] = { image: await rgb(await Deno.readFile(out)), tiles: line.tiles };
  }
  const { whole, tiled, hard } = runs as Record<string, { image: RawImage; tiles: number }>;
  assert.equal(whole!.tiles, 1);
  assert.ok(hard!.tiles >= 4, `${hard!.tiles} tiles`);
  assert.ok(tiled!.tiles >= 4, `${tiled!.tiles} tiles`);
  const cuts = cutColumns(192, 96, 32);
  // With no overlap the tiles meet (or, rounded to the UNet's grid, overlap) with no ramp.
  const hardCuts = cutColumns(192, 96, 0);
  const report: string[] = [];
  for (const rows of [false, true]) {
    const soft = seamJumps(tiled!.image, whole!.image, cuts, rows);
    const cut = seamJumps(hard!.image, whole!.image, hardCuts, rows);
    report.push(
      `${rows ? "rows" : "columns"}: blended (96 px, overlap 32, ${tiled!.tiles} tiles) jump ` +
        `${soft.atCuts.toFixed(2)} levels at the cuts (${cuts}), ${soft.elsewhere.toFixed(2)} ` +
        `elsewhere; hard cuts (overlap 0, ${hard!.tiles} tiles) ${cut.atCuts.toFixed(2)} at ` +
        `${hardCuts}, ` +
        `${cut.elsewhere.toFixed(2)} elsewhere`,
    );
    // The tiny random model's output is noise; what must hold is that the cuts do not stand
    // out from the rest of the profile.
    assert.ok(soft.atCuts <= soft.elsewhere * 1.5, report.at(-1));
  }
  console.log(`controlnet-tile seams vs one tile, 192x192:\n  ${report.join("\n  ")}`);
});

Deno.test("controlnet-tile refuses bad input with one line and a documented exit code", async () => {
  const dir = join(WORK, "bad");
  await Deno.mkdir(dir);
  const out = join(dir, "out.png");
  const cases: Array<[string[], number, RegExp]> = [
    [["-m", SD15, "--controlnet", SDXL_NET], 3, /net is for SDXL and the model is SD 1\.x/],
    [["-m", SD15, "--controlnet", join(WORK, "no-such-net")], 4, /Cannot find the ControlNet/],
    [["-m", SD15, "--mode", "controlnet-tile", "--controlnet", "nope"], 4, /Cannot find the/],
    [["--mode", "controlnet-tile"], 2, /--mode controlnet-tile cannot run with no model/],
    [
      ["-m", SD15, "--mode", "controlnet-tile"],
      4,
      /ControlNet "control_v11f1e_sd15_tile" is not downloaded/,
    ],
    [["-m", "control_v11f1e_sd15_tile"], 2, /is a ControlNet, not an upscaler/],
    [["-m", SD15, "--mode", "img2img", "--controlnet", NET], 2, /--controlnet does not apply/],
    [["-m", SD15, "--controlnet", NET, "--control-mode", "strong"], 2, /control-mode/],
  ];
  for (const [args, code, message] of cases) {
    const r = await runCli(["upscale", SMALL_PATH, "--steps", "1", ...args, "-o", out], {
      env: ENV,
    });
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    const lines = r.stderr.trim().split("\n");
    assert.match(lines[0]!, /^denoise: |^error: /, r.stderr);
    assert.match(lines[0]!, message);
    assert.ok(
      lines.length === 1 || (lines.length === 2 && lines[1]!.startsWith("hint: ")),
      r.stderr,
    );
  }
  assert.deepEqual(listDir(dir), []);
  // The input file decoded as floats is untouched (sanity: the fixture is a real image).
  assert.equal((await decodeFloatImage(await Deno.readFile(SMALL_PATH))).width, 32);
});
