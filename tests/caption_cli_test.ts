/**
 * `denoise caption` through the real CLI, with tiny random models (a BLIP transformers folder
 * and a Florence-2 ONNX export written by lib/models/random_*.ts): output forms, folders,
 * --json, --sidecar, --write-meta (pixel bytes unchanged), stdin, bad inputs and exit codes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "./cli.ts";
import { encodeImage, type RawImage } from "../lib/image/codec.ts";
import { readJpegSegments } from "../lib/meta/jpeg.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { chunkList, idatBytes } from "../lib/meta/testing.ts";
import { createRandomBlip, TINY_BLIP_CONFIG } from "../lib/models/random_blip.ts";
import { createRandomFlorence2 } from "../lib/models/random_florence2.ts";

const root = await Deno.makeTempDir({ prefix: "denoise_caption_cli_" });
const blip = join(root, "blip");
const florence = join(root, "florence");
await createRandomBlip(TINY_BLIP_CONFIG, blip);
await createRandomFlorence2(florence);
const env = { DENOISE_HOME: join(root, "home") };

function gradient(width: number, height: number, step: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * step + (i >> 4)) & 0xff;
  return { width, height, channels: 3, data };
}

/** A folder of images: a.png, b.jpg, sub/c.webp (and a broken one when asked). */
async function imageFolder(broken = false): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: root, prefix: "images_" });
  await Deno.mkdir(join(dir, "sub"));
  await Deno.writeFile(join(dir, "a.png"), await encodeImage(gradient(40, 30, 7), "png"));
  await Deno.writeFile(join(dir, "b.jpg"), await encodeImage(gradient(30, 40, 11), "jpeg"));
  await Deno.writeFile(join(dir, "sub", "c.webp"), await encodeImage(gradient(50, 20, 3), "webp"));
  if (broken) await Deno.writeTextFile(join(dir, "broken.png"), "not an image");
  return dir;
}

function errorLines(stderr: string): string[] {
  return stderr.trim().split("\n").filter((l) => l !== "" && !l.startsWith("hint:"));
}

Deno.test("caption: one file prints the caption alone; stdin too; a folder prints file: caption", async () => {
  const dir = await imageFolder();
  const one = await runCli(["caption", join(dir, "a.png"), "-m", blip], { env });
  assert.equal(one.code, 0, one.stderr);
  const caption = one.text.trim();
  assert.ok(caption.length > 0 && !caption.includes("\n"));
  const piped = await runCli(["caption", "-m", blip], {
    env,
    stdin: await Deno.readFile(join(dir, "a.png")),
  });
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.text.trim(), caption);
  const all = await runCli(["caption", dir, "-m", blip, "--batch-size", "2"], { env });
  assert.equal(all.code, 0, all.stderr);
  const lines = all.text.trim().split("\n");
  assert.deepEqual(lines.map((l) => l.slice(0, l.indexOf(": "))), [
    join(dir, "a.png"),
    join(dir, "b.jpg"),
    join(dir, "sub", "c.webp"),
  ]);
  assert.equal(lines[0], `${join(dir, "a.png")}: ${caption}`);
});

Deno.test("caption: an unreadable image among many is named on stderr, the rest captioned, exit 7", async () => {
  const dir = await imageFolder(true);
  const r = await runCli(["caption", dir, "-m", blip, "--json"], { env });
  assert.equal(r.code, 7, r.stderr);
  const rows = r.text.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((x) => x.file), [
    join(dir, "a.png"),
    join(dir, "b.jpg"),
    join(dir, "broken.png"),
    join(dir, "sub", "c.webp"),
  ]);
  for (const [i, row] of rows.entries()) {
    if (i === 2) {
      assert.match(row.error, /Cannot decode the image/);
      assert.equal(row.caption, undefined);
    } else {
      assert.equal(typeof row.caption, "string");
      assert.equal(row.family, "blip");
      assert.equal(row.task, "caption");
    }
  }
  const errors = errorLines(r.stderr);
  assert.equal(errors.length, 2, r.stderr);
  assert.match(errors[0]!, /^denoise: .*broken\.png: Cannot decode the image/);
  assert.match(errors[1]!, /^denoise: 1 of 4 images failed/);
});

Deno.test("caption --sidecar on a folder writes name.txt beside each image (Florence-2, --task)", async () => {
  const dir = await imageFolder();
  const r = await runCli(
    ["caption", dir, "-m", florence, "--task", "detailed", "--sidecar", "--beams", "2"],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const lines = r.text.trim().split("\n");
  const captions = new Map(
    lines.map((l) => [l.slice(0, l.indexOf(": ")), l.slice(l.indexOf(": ") + 2)]),
  );
  for (const name of ["a.png", "b.jpg", join("sub", "c.webp")]) {
    const image = join(dir, name);
    const txt = image.replace(/\.[^.]+$/, ".txt");
    const text = await Deno.readTextFile(txt);
    assert.ok(text.endsWith("\n"));
    // Plain output puts a caption on one line; the sidecar keeps it as generated.
    assert.equal(text.trim().replace(/\s+/g, " "), captions.get(image)!.replace(/\s+/g, " "));
  }
});

Deno.test("caption --write-meta stores the caption and leaves pixel data byte-identical", async () => {
  const dir = await imageFolder();
  const png = await Deno.readFile(join(dir, "a.png"));
  const jpeg = await Deno.readFile(join(dir, "b.jpg"));
  const r = await runCli(
    ["caption", join(dir, "a.png"), join(dir, "b.jpg"), "-m", blip, "--write-meta", "--json"],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const rows = r.text.trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(rows.every((x) => x.meta === true));
  const outPng = await Deno.readFile(join(dir, "a.png"));
  assert.deepEqual(idatBytes(outPng), idatBytes(png));
  const others = (b: Uint8Array) => chunkList(b).filter(([t]) => t !== "iTXt");
  assert.deepEqual(others(outPng), others(png));
  const texts = readMetadata(outPng).texts;
  assert.deepEqual(texts.map((t) => [t.type, t.keyword, t.text]), [[
    "iTXt",
    "Description",
    rows[0].caption,
  ]]);
  const outJpeg = await Deno.readFile(join(dir, "b.jpg"));
  const scan = (b: Uint8Array) => b.subarray(readJpegSegments(b).scanOffset);
  assert.deepEqual(scan(outJpeg), scan(jpeg));
  assert.equal(readMetadata(outJpeg).exif?.imageDescription, rows[1].caption);
});

Deno.test("caption: bad models and flags fail in one line with documented codes", async () => {
  const sd = join(root, "sd");
  await Deno.mkdir(sd, { recursive: true });
  await Deno.writeTextFile(
    join(sd, "model_index.json"),
    '{"_class_name": "StableDiffusionPipeline"}',
  );
  const image = join(await imageFolder(), "a.png");
  const other = await runCli(["caption", image, "-m", sd], { env });
  assert.equal(other.code, 4, other.stderr);
  assert.equal(errorLines(other.stderr).length, 1);
  assert.match(other.stderr, /a Diffusers pipeline folder .*not a captioning model/);
  const task = await runCli(["caption", image, "-m", blip, "--task", "detailed"], { env });
  assert.equal(task.code, 2, task.stderr);
  assert.match(task.stderr, /--task detailed is not a task of this blip model/);
  const broken = join(root, "broken.png");
  await Deno.writeTextFile(broken, "nope");
  const single = await runCli(["caption", broken, "-m", blip], { env });
  assert.equal(single.code, 3, single.stderr);
  assert.equal(errorLines(single.stderr).length, 1);
  const alias = await runCli(["caption", image, "-m", "blip-base"], { env });
  assert.equal(alias.code, 4);
  assert.match(alias.stderr, /denoise models pull blip-base/);
  const dry = await runCli(["caption", image, "-m", blip, "--beams", "3", "--dry-run"], { env });
  assert.equal(dry.code, 0, dry.stderr);
  const job = JSON.parse(dry.text);
  assert.equal(job.command, "caption");
  assert.deepEqual(job.inputs, [image]);
  assert.equal(job.beams, 3);
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(root, { recursive: true });
  } catch {
    // already gone
  }
});
