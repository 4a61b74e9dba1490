/**
 * `denoise controlnet` through the real CLI and real pipes: the Diffusers golden run, replaying a
 * Job (and refusing a changed control image), stdin control images, the img2img and inpaint
 * tasks, SD 2.x and SDXL nets, and every bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { encodeImage } from "../lib/image/codec.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { createRandomControlnet } from "../lib/models/random.ts";
import { listDir, runCli, runPipeline } from "./cli.ts";
import { TINY_SD15_UNET, TINY_SD2_UNET, TINY_SDXL_UNET } from "./fixtures/configs.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { hasShared, sharedPath } from "./shared.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-cn-home-" });
const ENV = { DENOISE_HOME: HOME };
const SET = sharedPath("golden/models/tiny_sd_controlnet");
const GOLDEN_MODEL = sharedPath("golden/models/tiny_sd/pipeline");

const TOKENIZER = await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" }));
const WORK = await Deno.makeTempDir({ prefix: "denoise-cn-" });

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

const SD15 = await makeTinyModel("sd15", { seed: 3, tokenizerDir: TOKENIZER });
const SD15_NET = await makeNet(TINY_SD15_UNET, "net15");
const SDXL_NET = await makeNet(TINY_SDXL_UNET, "netxl");

/** A 64x64 line drawing (white lines on black), as a PNG file. */
async function controlImage(path: string, shift = 0): Promise<string> {
  const data = new Uint8Array(64 * 64 * 3);
  for (let y = 0; y < 64; y++) {
    for (let x = 0; x < 64; x++) {
      if ((x + shift) % 16 === 0 || (y * 2 + x) % 23 === 0) {
        data.fill(255, (y * 64 + x) * 3, (y * 64 + x) * 3 + 3);
      }
    }
  }
  await Deno.writeFile(
    path,
    await encodeImage({ width: 64, height: 64, channels: 3, data }, "png"),
  );
  return path;
}

const EDGES = await controlImage(join(WORK, "edges.png"));
const EDGES_B = await controlImage(join(WORK, "edges-b.png"), 5);

async function pixels(bytes: Uint8Array): Promise<Uint8Array> {
  const { data } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

async function maxPixelDiff(a: Uint8Array, b: Uint8Array): Promise<number> {
  const [pa, pb] = [await pixels(a), await pixels(b)];
  assert.equal(pa.length, pb.length, "image sizes differ");
  let max = 0;
  for (let i = 0; i < pa.length; i++) max = Math.max(max, Math.abs(pa[i]! - pb[i]!));
  return max;
}

async function run(args: string[], stdin?: Uint8Array): Promise<Uint8Array> {
  const r = await runCli([...args, "-q"], { env: ENV, ...(stdin ? { stdin } : {}) });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

const BASE = ["a photo of a cat", "-m", SD15, "--steps", "3", "--seed", "4"];

Deno.test({
  name: "controlnet matches StableDiffusionControlNetPipeline's golden PNG within 1/255",
  ignore: !hasShared,
  fn: async () => {
    const out = await run([
      "controlnet",
      "a photo of a cat",
      "-m",
      GOLDEN_MODEL,
      "--control",
      `${SET}/controlnet:${SET}/control_edges.png`,
      "--steps",
      "4",
      "--cfg",
      "7.5",
      "--seed",
      "0",
    ]);
    const diff = await maxPixelDiff(out, await Deno.readFile(join(SET, "controlnet_scale1.0.png")));
    console.log(`PNG maxdiff ${diff}/255 (tolerance 1)`);
    assert.ok(diff <= 1, `maxdiff ${diff} > 1`);
    const meta = readMetadata(out);
    const params = (meta.a1111 as { params: Record<string, string> }).params;
    assert.equal(
      params["ControlNet 0"],
      "Module: none, Model: controlnet, Weight: 1.0, Resize Mode: Just Resize, " +
        "Guidance Start: 0.0, Guidance End: 1.0, Control Mode: Balanced",
    );
  },
});

Deno.test({
  name:
    "a single-file .pth net (read by the safe unpickler, config from shapes) gives the golden PNG",
  ignore: !hasShared,
  fn: async () => {
    const { readAllTensors, writeTorchCheckpoint } = await import("../lib/convert/testing.ts");
    const pth = join(WORK, "tiny_controlnet.pth");
    await writeTorchCheckpoint(
      pth,
      await readAllTensors(join(SET, "controlnet/diffusion_pytorch_model.safetensors")),
    );
    const r = await runCli([
      "controlnet",
      "a photo of a cat",
      "-m",
      GOLDEN_MODEL,
      "--control",
      `${pth}:${SET}/control_edges.png`,
      "--steps",
      "4",
      "--cfg",
      "7.5",
      "--seed",
      "0",
    ], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    const diff = await maxPixelDiff(
      r.stdout,
      await Deno.readFile(join(SET, "controlnet_scale1.0.png")),
    );
    console.log(`PNG maxdiff ${diff}/255 (tolerance 1)`);
    assert.ok(diff <= 1, `maxdiff ${diff} > 1`);
    const params = (readMetadata(r.stdout).a1111 as { params: Record<string, string> }).params;
    assert.match(params["ControlNet 0"]!, /Model: tiny_controlnet,/);
  },
});

Deno.test("meta read | controlnet --job - remakes the image; a changed control image is refused", async () => {
  const dir = await Deno.makeTempDir({ dir: WORK });
  const edges = join(dir, "edges.png");
  await Deno.copyFile(EDGES, edges);
  const first = join(dir, "first.png");
  await run(["controlnet", ...BASE, "--control", `${SD15_NET}:${edges}:0.8:0:0.7`, "-o", first]);
  const job = readMetadata(await Deno.readFile(first)).job as Record<string, unknown>;
  const controls = job.controls as Array<Record<string, unknown>>;
  assert.equal(controls.length, 1);
  assert.equal(controls[0]!.image, edges);
  assert.equal(controls[0]!.scale, 0.8);
  assert.equal(controls[0]!.end, 0.7);
  assert.match(String(controls[0]!.sha256), /^[0-9a-f]{64}$/);
  const again = join(dir, "again.png");
  const r = await runPipeline(
    `denoise meta read "${first}" | denoise controlnet --job - -o "${again}" -q`,
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await Deno.readFile(again), await Deno.readFile(first), "byte for byte");
  // Another picture under the recorded path: one line, exit 3, nothing written.
  await Deno.copyFile(EDGES_B, edges);
  const refused = await runCli(["controlnet", "--job", first, "-o", join(dir, "no.png")], {
    env: ENV,
  });
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(
    refused.stderr,
    /^denoise: Control image 1 .* is not the image the job was made with/,
  );
  assert.ok(!listDir(dir).includes("no.png"));
});

Deno.test("a control image from stdin gives the same pixels as from a file", async () => {
  const fromFile = await run(["controlnet", ...BASE, "--control", `${SD15_NET}:${EDGES}`]);
  const r = await runPipeline(
    `cat "${EDGES}" | denoise controlnet "a photo of a cat" -m "${SD15}" --steps 3 --seed 4 ` +
      `--control "${SD15_NET}:-" -q | denoise meta read`,
    { env: ENV },
  );
  assert.equal(r.code, 0, r.stderr);
  const job = JSON.parse(r.text).job;
  assert.equal(job.controls[0].image, undefined, "stdin has no path");
  const piped = await runPipeline(
    `cat "${EDGES}" | denoise controlnet "a photo of a cat" -m "${SD15}" --steps 3 --seed 4 ` +
      `--control "${SD15_NET}:-" -q`,
    { env: ENV },
  );
  assert.equal(await maxPixelDiff(piped.stdout, fromFile), 0);
});

Deno.test("a net at scale 0, or outside its window, leaves generate's image; a net changes it", async () => {
  const plain = await run(["generate", ...BASE]);
  const zero = await run(["controlnet", ...BASE, "--control", `${SD15_NET}:${EDGES}:0`]);
  const never = await run(["controlnet", ...BASE, "--control", `${SD15_NET}:${EDGES}:1:0:0`]);
  const zeroDiff = await maxPixelDiff(zero, plain);
  const neverDiff = await maxPixelDiff(never, plain);
  console.log(`scale 0 vs generate: ${zeroDiff}/255; window [0, 0]: ${neverDiff}/255`);
  assert.ok(zeroDiff <= 1 && neverDiff <= 1);
  const on = await run(["controlnet", ...BASE, "--control", `${SD15_NET}:${EDGES}`]);
  assert.ok(await maxPixelDiff(on, plain) > 1, "the net changes the image");
  // Two nets: the same net twice at 0.5 each is one net at 1.0 (residuals add).
  const halves = await run([
    "controlnet",
    ...BASE,
    "--control",
    `${SD15_NET}:${EDGES}:0.5`,
    "--control",
    `${SD15_NET}:${EDGES}:0.5`,
  ]);
  const halvesDiff = await maxPixelDiff(halves, on);
  console.log(`two nets at 0.5 vs one at 1.0: ${halvesDiff}/255`);
  assert.ok(halvesDiff <= 1);
});

Deno.test("img2img and inpaint with a ControlNet run the img2img tasks (scale 0 = img2img)", async () => {
  const init = join(WORK, "init.png");
  await Deno.writeFile(
    init,
    await run(["generate", "a house", "-m", SD15, "--steps", "2", "--seed", "9"]),
  );
  const mask = join(WORK, "mask.png");
  const m = new Uint8Array(64 * 64 * 3);
  for (let i = 0; i < 64 * 32; i++) m.fill(255, i * 3, i * 3 + 3);
  await Deno.writeFile(
    mask,
    await encodeImage({ width: 64, height: 64, channels: 3, data: m }, "png"),
  );
  const i2i = [
    "a photo of a cat",
    "-m",
    SD15,
    "--steps",
    "4",
    "--seed",
    "4",
    "--image",
    init,
    "--strength",
    "0.6",
  ];
  const plain = await run(["img2img", ...i2i]);
  const zero = await run(["controlnet", ...i2i, "--control", `${SD15_NET}:${EDGES}:0`]);
  assert.ok(await maxPixelDiff(zero, plain) <= 1, "img2img draw order");
  const on = await run(["controlnet", ...i2i, "--control", `${SD15_NET}:${EDGES}`]);
  assert.ok(await maxPixelDiff(on, plain) > 1);
  const job = readMetadata(on).job as Record<string, unknown>;
  assert.equal(job.strength, 0.6);
  assert.equal(job.image, init);

  const plainInpaint = await run(["img2img", ...i2i, "--mask", mask]);
  const zeroInpaint = await run([
    "controlnet",
    ...i2i,
    "--mask",
    mask,
    "--control",
    `${SD15_NET}:@inpaint:0`,
  ]);
  assert.ok(await maxPixelDiff(zeroInpaint, plainInpaint) <= 1, "inpaint draw order");
  const inpaint = await run([
    "controlnet",
    ...i2i,
    "--mask",
    mask,
    "--control",
    `${SD15_NET}:@inpaint`,
  ]);
  assert.ok(await maxPixelDiff(inpaint, plainInpaint) > 1);
  const params = (readMetadata(inpaint).a1111 as { params: Record<string, string> }).params;
  assert.match(params["ControlNet 0"]!, /^Module: inpaint_global_harmonious, /);
});

Deno.test("SD 2.x and SDXL nets run on their models; hires fix resizes the control image", async () => {
  for (const [family, unet] of [["sd2", TINY_SD2_UNET], ["sdxl", TINY_SDXL_UNET]] as const) {
    const model = await makeTinyModel(family, { seed: 5, tokenizerDir: TOKENIZER });
    const net = await makeNet(unet, `net-${family}`, 11);
    const args = ["a lighthouse", "-m", model, "--steps", "2", "--seed", "3"];
    const plain = await run(["generate", ...args]);
    const zero = await run(["controlnet", ...args, "--control", `${net}:${EDGES}:0`]);
    assert.ok(await maxPixelDiff(zero, plain) <= 1, `${family}: scale 0 = generate`);
    const on = await run(["controlnet", ...args, "--guess-mode", "--control", `${net}:${EDGES}`]);
    assert.ok(await maxPixelDiff(on, plain) > 1, `${family}: the net changes the image`);
  }
  const hires = await run([
    "controlnet",
    ...BASE,
    "--steps",
    "2",
    "--hires-scale",
    "2",
    "--hires-steps",
    "1",
    "--control",
    `${SD15_NET}:${EDGES}`,
  ]);
  const meta = readMetadata(hires);
  assert.deepEqual([meta.width, meta.height], [128, 128]);
});

Deno.test("a net named by an alias of models.lock.json (pulled into the cache) runs; an unpulled one is exit 4", async () => {
  const home = await Deno.makeTempDir({ dir: WORK });
  const revision = "0123456789abcdef0123456789abcdef01234567";
  const files = ["config.json", "diffusion_pytorch_model.safetensors"];
  const lock = {
    version: 1,
    models: {
      "tiny-canny": {
        description: "a tiny random ControlNet (test)",
        family: "sd1",
        source: { hub: "huggingface", repo: "test/tiny-canny", revision },
        layout: "diffusers",
        files: files.map((path) => ({ path, size: null, sha256: null })),
        verified: false,
      },
    },
  };
  const lockPath = join(home, "models.lock.json");
  await Deno.writeTextFile(lockPath, JSON.stringify(lock));
  const env = { DENOISE_HOME: home, DENOISE_MODELS_LOCK: lockPath };
  const args = ["controlnet", ...BASE, "--steps", "1", "--control", `tiny-canny:${EDGES}`, "-q"];
  const missing = await runCli(args, { env });
  assert.equal(missing.code, 4, missing.stderr);
  assert.match(missing.stderr, /^denoise: ControlNet "tiny-canny" is not downloaded/);
  const dir = join(home, "models", "tiny-canny", revision);
  await Deno.mkdir(dir, { recursive: true });
  for (const f of files) await Deno.copyFile(join(SD15_NET, f), join(dir, f));
  const r = await runCli(args, { env });
  assert.equal(r.code, 0, r.stderr);
  const byPath = await run([
    "controlnet",
    ...BASE,
    "--steps",
    "1",
    "--control",
    `${SD15_NET}:${EDGES}`,
  ]);
  assert.equal(await maxPixelDiff(r.stdout, byPath), 0);
});

Deno.test("--control parsing: paths with ':', stdin, @inpaint, SCALE:START:END (--dry-run)", async () => {
  const dir = await Deno.makeTempDir({ dir: WORK });
  const net = join(dir, "nets:v1");
  await Deno.mkdir(net);
  const image = join(dir, "a:b.png");
  await Deno.copyFile(EDGES, image);
  const r = await runCli([
    "controlnet",
    "x",
    "-m",
    SD15,
    "--seed",
    "1",
    "--control",
    `${net}:${image}:0.5:0.1:0.9`,
    "--control",
    `${SD15_NET}:${EDGES}`,
    "--dry-run",
  ], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  const job = JSON.parse(r.text);
  assert.equal(job.command, "controlnet");
  assert.deepEqual(
    job.controls.map((c: Record<string, unknown>) => [c.net, c.image, c.scale, c.start, c.end]),
    [[net, image, 0.5, 0.1, 0.9], [SD15_NET, EDGES, 1, 0, 1]],
  );
  assert.equal(job.controls[0].sha256, job.controls[1].sha256, "same picture, same hash");
});

Deno.test("bad input: one line on stderr, a documented exit code, no output file", async (t) => {
  const dir = await Deno.makeTempDir({ dir: WORK });
  const out = join(dir, "x.png");
  const notImage = join(WORK, "not-an-image.png");
  await Deno.writeTextFile(notImage, "this is not a PNG");
  const cases: Array<[string, string[], number, RegExp]> = [
    ["undecodable control image", ["--control", `${SD15_NET}:${notImage}`], 3, /Cannot decode/],
    [
      "missing net",
      ["--control", `${join(WORK, "no-such-net")}:${EDGES}`],
      4,
      /Cannot find the ControlNet/,
    ],
    [
      "START after END",
      ["--control", `${SD15_NET}:${EDGES}:1:0.8:0.2`],
      2,
      /START 0.8 is after END 0.2/,
    ],
    [
      "scale not a number",
      ["--control", `${SD15_NET}:${EDGES}:strong`],
      2,
      /SCALE must be a number/,
    ],
    [
      "SDXL net on an SD 1.5 model",
      ["--control", `${SDXL_NET}:${EDGES}`],
      3,
      /net is for SDXL and the model is SD 1\.x/,
    ],
    ["no --control", [], 2, /needs at least one --control/],
    [
      "guess mode with an A1111 control mode",
      ["--control", `${SD15_NET}:${EDGES}`, "--guess-mode", "--control-mode", "prompt"],
      2,
      /--guess-mode cannot be combined with --control-mode prompt/,
    ],
    [
      "two stdin inputs",
      ["--control", `${SD15_NET}:-`, "--image", "-"],
      2,
      /cannot both come from stdin/,
    ],
    [
      "@inpaint without a mask",
      ["--control", `${SD15_NET}:@inpaint`],
      2,
      /needs --image and --mask/,
    ],
  ];
  for (const [name, args, code, message] of cases) {
    await t.step(name, async () => {
      const r = await runCli(["controlnet", "x", "-m", SD15, "--steps", "1", ...args, "-o", out], {
        env: ENV,
      });
      assert.equal(r.code, code, r.stderr);
      const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("hint:"));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^denoise: /);
      assert.match(lines[0]!, message);
      assert.deepEqual(listDir(dir), [], "no output file");
    });
  }
});
