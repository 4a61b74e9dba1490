/**
 * `denoise preprocess KIND [IMAGE|-]` through the real CLI and real pipes: control images with
 * their Job in metadata, replays, model kinds with tiny models of the exports' signatures, and
 * bad input (one line, a documented exit code, no file).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { decodeImage, encodeImage } from "../lib/image/codec.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { cannyControl } from "../lib/preprocess/canny.ts";
import { lineartPreprocessor } from "../lib/preprocess/lineart.ts";
import { softedgePreprocessor } from "../lib/preprocess/softedge.ts";
import { runCli, runPipeline } from "./cli.ts";
import {
  writeTinyDepthModel,
  writeTinyDwposeModels,
  writeTinyHed,
  writeTinyLineart,
  writeTinyPidinet,
} from "./fixtures/preprocess_models.ts";
import { hasShared, sharedPath } from "./shared.ts";

function oneLineError(stderr: string): string {
  const lines = stderr.trim().split("\n").filter((l) => !l.startsWith("hint:"));
  assert.equal(lines.length, 1, `expected one error line, got:\n${stderr}`);
  assert.match(lines[0]!, /^denoise: /);
  return lines[0]!;
}

/** A 64x48 test picture: blocks and a gradient, so Canny finds edges. */
function picture() {
  const width = 64;
  const height = 48;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const block = ((x >> 4) + (y >> 4)) % 2 ? 220 : 30;
      data.set([block, (x * 4) % 256, (y * 5) % 256], i);
    }
  }
  return { width, height, channels: 3 as const, data };
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denoise_preprocess_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("preprocess canny writes the edges with their Job; meta read | --job - remakes them", async () => {
  await withTemp(async (dir) => {
    const input = join(dir, "photo.png");
    await Deno.writeFile(input, await encodeImage(picture(), "png"));
    const out = join(dir, "edges.png");
    const r = await runCli([
      "preprocess",
      "canny",
      input,
      "--low",
      "50",
      "--l2",
      "-o",
      out,
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.text);
    assert.equal(line.path, out);
    assert.deepEqual([line.width, line.height], [64, 48]);
    // Pixels: the library's Canny on the decoded input.
    const bytes = await Deno.readFile(out);
    const decoded = await decodeImage(bytes, { channels: 3 });
    const expected = cannyControl(picture(), { low: 50, l2: true });
    assert.deepEqual(decoded.data, expected.data);
    // Metadata: the Job with every option, the input's name and hash.
    const meta = readMetadata(bytes);
    const job = meta.job as Record<string, unknown>;
    assert.equal(job.command, "preprocess");
    assert.equal(job.kind, "canny");
    assert.deepEqual(job.options, { low: 50, high: 200, l2: true, gray: false });
    assert.equal(job.image, input);
    assert.match(String(job.imageSha256), /^[0-9a-f]{64}$/);
    assert.match(String(meta.a1111?.params?.Module), /canny/);
    // Replays: from meta read through a pipe, and from the image itself.
    const replay = await runPipeline(
      `denoise meta read "${out}" | denoise preprocess --job - "${input}" -o "${dir}/again.png" && ` +
        `denoise preprocess --job "${out}" -o "${dir}/again2.png"`,
    );
    assert.equal(replay.code, 0, replay.stderr);
    assert.deepEqual(await Deno.readFile(join(dir, "again.png")), bytes);
    assert.deepEqual(await Deno.readFile(join(dir, "again2.png")), bytes);
    // stdin in, stdout out, through a pipe; the Job has no input name then.
    const piped = await runPipeline(
      `cat "${input}" | denoise preprocess invert - | denoise meta read`,
    );
    assert.equal(piped.code, 0, piped.stderr);
    const read = JSON.parse(piped.text);
    assert.equal(read.job.kind, "invert");
    assert.equal(read.job.image, undefined);
    assert.equal(read.width, 64);
    // --dry-run prints the resolved Job and reads nothing.
    const dry = await runCli(["preprocess", "shuffle", "missing.png", "--seed", "3", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.text).options, { seed: 3, f: 256 });
  });
});

Deno.test({
  name: "preprocess canny --gray equals OpenCV's edge map pixel for pixel (shared golden)",
  ignore: !hasShared,
  fn: async () => {
    await withTemp(async (dir) => {
      const out = join(dir, "gray.png");
      const input = sharedPath("golden/canny/synthetic_photo.png");
      const r = await runCli(["preprocess", "canny", input, "--gray", "-o", out]);
      assert.equal(r.code, 0, r.stderr);
      const ours = await decodeImage(await Deno.readFile(out), { channels: 3 });
      const golden = await decodeImage(
        await Deno.readFile(sharedPath("golden/canny/synthetic_photo_canny_gray_100_200.png")),
        { channels: 3 },
      );
      let differ = 0;
      for (let i = 0; i < golden.data.length; i += 3) {
        differ += ours.data[i] !== golden.data[i] ? 1 : 0;
      }
      console.log(`canny --gray vs cv2.Canny: ${differ} pixels differ`);
      assert.equal(differ, 0);
    });
  },
});

Deno.test("preprocess --detect-resolution and --image-resolution size the work and the result", async () => {
  await withTemp(async (dir) => {
    const input = join(dir, "photo.png");
    await Deno.writeFile(input, await encodeImage(picture(), "png"));
    const r = await runPipeline(
      `denoise preprocess canny "${input}" --detect-resolution 128 -o "${dir}/a.png" && ` +
        `denoise preprocess canny "${input}" --detect-resolution 128 --image-resolution 64 -o "${dir}/b.webp"`,
    );
    assert.equal(r.code, 0, r.stderr);
    const a = await decodeImage(await Deno.readFile(join(dir, "a.png")));
    assert.deepEqual([a.width, a.height], [64, 48]); // back to the input's size
    const b = await decodeImage(await Deno.readFile(join(dir, "b.webp")));
    // From the detected 192x128 map, as controlnet_aux: 96 / 64 = 1.5 rounds to 2 (128), 64.
    assert.deepEqual([b.width, b.height], [128, 64]);
  });
});

Deno.test("preprocess depth and openpose run models with the exports' signatures from a folder", async () => {
  await withTemp(async (dir) => {
    const input = join(dir, "photo.png");
    await Deno.writeFile(input, await encodeImage(picture(), "png"));
    await Deno.mkdir(join(dir, "depth", "onnx"), { recursive: true });
    await writeTinyDepthModel(join(dir, "depth", "onnx", "model.onnx"));
    await Deno.mkdir(join(dir, "pose"));
    const keypoints = new Array(133).fill(undefined);
    keypoints[0] = { binX: 288, binY: 384 };
    await writeTinyDwposeModels(
      join(dir, "pose"),
      [{ cx: 320, cy: 240, w: 300, h: 400 }],
      keypoints,
    );
    const r = await runPipeline(
      `denoise preprocess depth "${input}" -m "${dir}/depth" -o "${dir}/d.png" && ` +
        `denoise preprocess openpose "${input}" -m "${dir}/pose" --no-face -o "${dir}/p.png"`,
    );
    assert.equal(r.code, 0, r.stderr);
    const d = await Deno.readFile(join(dir, "d.png"));
    const depth = await decodeImage(d);
    assert.deepEqual([depth.width, depth.height], [64, 48]);
    const values = new Set(depth.data);
    assert.ok(values.has(0) && values.has(255));
    const job = readMetadata(d).job as Record<string, unknown>;
    assert.equal(job.model, join(dir, "depth"));
    assert.deepEqual(job.options, { size: 518 });
    const pose = await decodeImage(await Deno.readFile(join(dir, "p.png")));
    // The nose at the crop centre (the detected box's centre: 100 / ... = image (32, 24)).
    const at = (
      x: number,
      y: number,
    ) => [...pose.data.subarray((y * 64 + x) * 3, (y * 64 + x) * 3 + 3)];
    assert.deepEqual(at(32, 24), [255, 0, 0]);
    assert.deepEqual(at(5, 5), [0, 0, 0]);
  });
});

Deno.test("preprocess softedge and lineart build their networks from .pth weights (a file, a folder) and replay", async () => {
  await withTemp(async (dir) => {
    const input = join(dir, "photo.png");
    await Deno.writeFile(input, await encodeImage(picture(), "png"));
    const hed = await writeTinyHed(join(dir, "ControlNetHED.pth"));
    await Deno.mkdir(join(dir, "pidi"));
    await writeTinyPidinet(join(dir, "pidi", "table5_pidinet.pth"));
    await Deno.mkdir(join(dir, "annotators"));
    await writeTinyLineart(join(dir, "annotators", "sk_model.pth"));
    await writeTinyLineart(join(dir, "annotators", "sk_model2.pth"), { coarse: true });
    const env = { DENOISE_HOME: join(dir, "home") };
    const r = await runPipeline(
      `denoise preprocess softedge "${input}" -m "${hed}" --safe -o "${dir}/hed.png" && ` +
        `denoise preprocess softedge "${input}" -m "${dir}/pidi" --scribble -o "${dir}/pidi.png" && ` +
        `denoise preprocess lineart "${input}" -m "${dir}/annotators" --coarse -o "${dir}/coarse.png" && ` +
        `denoise preprocess lineart "${input}" -m "${dir}/annotators" | denoise meta read - > "${dir}/meta.json" && ` +
        // stdin in, stdout out: the same pixels as the file written with -o.
        `cat "${input}" | denoise preprocess softedge - -m "${hed}" --safe | cat > "${dir}/hed_piped.png" && ` +
        `cat "${input}" | denoise preprocess lineart - -m "${dir}/annotators" --coarse > "${dir}/coarse_piped.png"`,
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    // The pixels: the library's preprocessors on the decoded input.
    const work = join(dir, "lib-cache");
    const expect = {
      hed: await softedgePreprocessor.run(picture(), { safe: true }, {
        models: { softedge: hed },
        cacheDir: work,
      }),
      pidi: await softedgePreprocessor.run(picture(), { scribble: true }, {
        models: { softedge: join(dir, "pidi", "table5_pidinet.pth") },
        cacheDir: work,
      }),
      coarse: await lineartPreprocessor.run(picture(), { coarse: true }, {
        models: { coarse: join(dir, "annotators", "sk_model2.pth") },
        cacheDir: work,
      }),
    };
    for (const [name, control] of Object.entries(expect)) {
      const image = await decodeImage(await Deno.readFile(join(dir, `${name}.png`)), {
        channels: 3,
      });
      assert.deepEqual([image.width, image.height], [64, 48]);
      assert.deepEqual(image.data, control.data, name);
    }
    for (const name of ["hed", "coarse"] as const) {
      const piped = await decodeImage(await Deno.readFile(join(dir, `${name}_piped.png`)), {
        channels: 3,
      });
      assert.deepEqual(piped.data, expect[name].data, `${name} through a pipe`);
    }
    // Graphs were built once per network into DENOISE_HOME's cache.
    const graphs = [...Deno.readDirSync(join(dir, "home", "graphs"))].map((e) => e.name).sort();
    assert.deepEqual(graphs.map((n) => n.split("-")[0]), ["hed", "lineart", "lineart", "pidinet"]);
    // The Job records the kind, its options and the model as given.
    const bytes = await Deno.readFile(join(dir, "hed.png"));
    const job = readMetadata(bytes).job as Record<string, unknown>;
    assert.equal(job.kind, "softedge");
    assert.deepEqual(job.options, { safe: true, scribble: false });
    assert.equal(job.model, hed);
    const meta = JSON.parse(await Deno.readTextFile(join(dir, "meta.json")));
    assert.deepEqual(meta.job.options, { coarse: false });
    assert.equal(meta.job.model, join(dir, "annotators"));
    // Replayed from its own metadata: the same image.
    const again = await runCli([
      "preprocess",
      "--job",
      join(dir, "hed.png"),
      "-o",
      join(dir, "again.png"),
    ], {
      env,
    });
    assert.equal(again.code, 0, again.stderr);
    const a = await decodeImage(await Deno.readFile(join(dir, "again.png")), { channels: 3 });
    assert.deepEqual(a.data, expect.hed.data);
    // Wrong, broken or missing files: one line, exit 3 or 4, no output.
    const out = join(dir, "out.png");
    await Deno.writeTextFile(join(dir, "junk.pth"), "not a checkpoint\n");
    await Deno.writeFile(join(dir, "cut.pth"), (await Deno.readFile(hed)).subarray(0, 20000));
    const cases: Array<[string[], number, RegExp]> = [
      [
        ["preprocess", "softedge", input, "-m", join(dir, "annotators", "sk_model.pth"), "-o", out],
        3,
        /softedge: ".*sk_model.pth" holds the line-art Generator \(sk_model\), not ControlNetHED/,
      ],
      [
        ["preprocess", "lineart", input, "--coarse", "-m", join(dir, "pidi"), "-o", out],
        4,
        /holds no sk_model2.pth \(the lineart coarse model\)/,
      ],
      [["preprocess", "softedge", input, "-o", out], 4, /softedge model "hed" is not downloaded/],
      [
        ["preprocess", "lineart", input, "-m", join(dir, "junk.pth"), "-o", out],
        3,
        /"[^"]*junk.pth" is neither safetensors nor a torch.save checkpoint/,
      ],
      [
        ["preprocess", "softedge", input, "-m", join(dir, "cut.pth"), "-o", out],
        3,
        /Invalid ZIP archive "[^"]*cut.pth"/,
      ],
      [
        ["preprocess", "softedge", input, "-m", join(dir, "nothere.pth"), "-o", out],
        4,
        /softedge model "[^"]*nothere.pth" is neither a file, a folder nor a known alias/,
      ],
      [["preprocess", "canny", input, "--safe", "-o", out], 2, /--safe is an option of softedge/],
    ];
    for (const [args, code, message] of cases) {
      const bad = await runCli(args, { env });
      assert.equal(bad.code, code, `${args.join(" ")}: ${bad.stderr}`);
      assert.match(oneLineError(bad.stderr), message);
      assert.ok(!existsSync(out), `${args.join(" ")} left ${out}`);
    }
  });
});

Deno.test("preprocess refuses bad input with one line, a documented exit code and no file", async () => {
  await withTemp(async (dir) => {
    const input = join(dir, "photo.png");
    await Deno.writeFile(input, await encodeImage(picture(), "png"));
    await Deno.writeTextFile(join(dir, "bad.png"), "not an image");
    const out = join(dir, "out.png");
    const env = { DENOISE_HOME: join(dir, "home") };
    const cases: Array<[string[], number, RegExp]> = [
      [["preprocess", "canny", join(dir, "bad.png"), "-o", out], 3, /Cannot decode the image/],
      [
        ["preprocess", "sobel", input, "-o", out],
        2,
        /Unknown preprocessor "sobel": use one of canny, tile, shuffle, scribble_xdog, lineart_standard, invert, depth, openpose, softedge, lineart/,
      ],
      [
        ["preprocess", "canny", input, "--low", "-1", "-o", out],
        2,
        /canny option low is -1, out of range/,
      ],
      [["preprocess", "canny", input, "--high", "lots", "-o", out], 2, /"--high" must be a number/],
      [["preprocess", "shuffle", input, "--seed", "1.5", "-o", out], 2, /whole number/],
      [
        ["preprocess", "tile", input, "--low", "5", "-o", out],
        2,
        /--low is an option of canny, not of tile/,
      ],
      [
        ["preprocess", "depth", input, "-o", out],
        4,
        /depth model "depth-anything-v2-small" is not downloaded/,
      ],
      [["preprocess", "openpose", input, "-m", dir, "-o", out], 4, /holds no yolox_l.onnx/],
      [["preprocess", "canny", input, "-m", dir, "-o", out], 2, /runs no model/],
      [["preprocess", "canny", input, "--json"], 2, /--json .* needs -o FILE/],
      [["preprocess", "canny", input, "-o", join(dir, "x.gif")], 2, /Cannot tell the image format/],
      [["preprocess", "canny", join(dir, "none.png"), "-o", out], 5, /no such file/],
    ];
    for (const [args, code, message] of cases) {
      const r = await runCli(args, { env });
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert.match(oneLineError(r.stderr), message);
      assert.ok(!existsSync(out), `${args.join(" ")} left ${out}`);
    }
    // The help lists every kind with its options.
    const help = await runCli(["preprocess", "--help"]);
    for (
      const text of ["canny", "--low <x>", "openpose", "--no-hands", "depth-anything-v2-small"]
    ) {
      assert.ok(help.text.includes(text), text);
    }
  });
});
