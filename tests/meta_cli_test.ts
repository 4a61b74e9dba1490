/**
 * `denoise meta read` / `meta write` through the real CLI and real pipes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli, runPipeline } from "./cli.ts";
import { hasShared, sharedPath } from "./shared.ts";
import { encodeChunk } from "../lib/meta/png.ts";
import { chunkList, idatBytes, makePng, textData } from "../lib/meta/testing.ts";
import { concatBytes, encodeLatin1 } from "../lib/meta/text.ts";
import { deflateZlib } from "../lib/meta/zlib.ts";

function metaTest(name: string, fn: () => Promise<void>, needsShared = false): void {
  Deno.test({ name, ignore: needsShared && !hasShared, fn });
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "denoise_meta_" });
}

function oneLineError(stderr: string): void {
  const lines = stderr.trim().split("\n").filter((l) => !l.startsWith("hint:"));
  assert.equal(lines.length, 1, `expected one error line, got:\n${stderr}`);
  assert.match(lines[0]!, /^denoise: /);
}

const SAMPLE = makePng([
  ["pHYs", Uint8Array.of(0, 0, 11, 19, 0, 0, 11, 19, 1)],
  ["tEXt", textData("parameters", "a fox\nNegative prompt: blur\nSteps: 20, Seed: 7, Size: 4x3")],
  [
    "zTXt",
    concatBytes([
      encodeLatin1("Comment"),
      Uint8Array.of(0, 0),
      deflateZlib(encodeLatin1("zipped")),
    ]),
  ],
], { idatParts: 3 });

metaTest("meta write | meta read keeps every chunk through real pipes", async () => {
  const dir = await tempDir();
  const input = join(dir, "a.png");
  await Deno.writeFile(input, SAMPLE);
  const piped = await runPipeline(
    `cat "${input}" | denoise meta write --set k=v --set "title=狐の絵" | tee "${dir}/b.png" | denoise meta read`,
  );
  assert.equal(piped.code, 0, piped.stderr);
  const meta = JSON.parse(piped.text);
  assert.deepEqual(
    meta.texts.map((
      t: { type: string; keyword: string; text: string },
    ) => [t.type, t.keyword, t.text]),
    [
      ["tEXt", "parameters", "a fox\nNegative prompt: blur\nSteps: 20, Seed: 7, Size: 4x3"],
      ["zTXt", "Comment", "zipped"],
      ["tEXt", "k", "v"],
      ["iTXt", "title", "狐の絵"],
    ],
  );
  assert.equal(meta.a1111.summary.seed, 7);
  const out = await Deno.readFile(join(dir, "b.png"));
  const before = chunkList(SAMPLE);
  const after = chunkList(out).filter(([t, d]) =>
    !(t === "tEXt" && d.startsWith("6b00")) && t !== "iTXt"
  );
  assert.deepEqual(after, before, "every original chunk survives, in order, byte for byte");
  assert.deepEqual(idatBytes(out), idatBytes(SAMPLE));
  await Deno.remove(dir, { recursive: true });
});

metaTest(
  "meta write -o: --set-json, --delete, --compress, --strip, --dry-run and --job",
  async () => {
    const dir = await tempDir();
    const input = join(dir, "a.png");
    await Deno.writeFile(input, SAMPLE);
    await Deno.writeTextFile(join(dir, "s.json"), JSON.stringify({ note: "from json", k: "x" }));
    const r = await runCli([
      "meta",
      "write",
      input,
      "--set-json",
      join(dir, "s.json"),
      "--set",
      "k=flag wins",
      "--delete",
      "Comment",
      "--compress",
      "-o",
      join(dir, "b.png"),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, 0);
    const read = await runCli(["meta", "read", join(dir, "b.png")]);
    const texts = JSON.parse(read.text).texts.map((
      t: { type: string; keyword: string; text: string },
    ) => [t.type, t.keyword, t.text]);
    assert.deepEqual(texts, [
      ["tEXt", "parameters", "a fox\nNegative prompt: blur\nSteps: 20, Seed: 7, Size: 4x3"],
      ["zTXt", "note", "from json"],
      ["zTXt", "k", "flag wins"],
    ]);
    const dry = await runCli(["meta", "write", input, "--strip", "--set", "a=b", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    const job = JSON.parse(dry.text);
    assert.deepEqual(job, {
      command: "meta write",
      version: 1,
      input,
      set: { a: "b" },
      delete: [],
      strip: true,
      compress: false,
    });
    await Deno.writeTextFile(
      join(dir, "job.json"),
      JSON.stringify({ ...job, output: join(dir, "c.png") }),
    );
    const replay = await runCli(["meta", "write", "--job", join(dir, "job.json")]);
    assert.equal(replay.code, 0, replay.stderr);
    const c = JSON.parse((await runCli(["meta", "read", join(dir, "c.png")])).text);
    assert.deepEqual(c.texts.map((t: { keyword: string }) => t.keyword), ["a"]);
    await Deno.remove(dir, { recursive: true });
  },
);

metaTest("meta read prints A1111 EXIF from JPEG/WebP and ComfyUI EXIF from WebP", async () => {
  const jpg = await runCli([
    "meta",
    "read",
    sharedPath("fixtures/real/a1111/a1111_v1.10.1_usercomment.jpg"),
  ]);
  assert.equal(jpg.code, 0, jpg.stderr);
  assert.equal(JSON.parse(jpg.text).a1111.summary.seed, 3623174757);
  const named = await runPipeline(
    `cat "${
      sharedPath("fixtures/real/other_tools/jpeg_named_png_le_tiff_be_usercomment.png")
    }" | denoise meta read -`,
  );
  assert.equal(named.code, 0, named.stderr);
  assert.match(JSON.parse(named.text).exif.userComment, /^Positive prompt:\nTahiti/);
  const webp = await runCli([
    "meta",
    "read",
    sharedPath("fixtures/real/comfyui/comfyui_flux_kontext_exif.webp"),
  ]);
  assert.equal(JSON.parse(webp.text).comfyui.workflow.last_node_id, 171);
  const stealth = await runCli([
    "meta",
    "read",
    sharedPath("fixtures/real/a1111/sdparsers_a1111_stealth_pnginfo.png"),
  ]);
  assert.equal(JSON.parse(stealth.text).a1111.summary.seed, 2015833630);
}, true);

metaTest("meta write on JPEG stores A1111 parameters that meta read finds", async () => {
  const dir = await tempDir();
  const src = sharedPath("fixtures/real/a1111/sdparsers_a1111_cropped_1x1.jpg");
  const r = await runPipeline(
    `denoise meta write "${src}" --set "parameters=a cat, テスト
Steps: 3, Seed: 42, Size: 1x1" | denoise meta read`,
  );
  assert.equal(r.code, 0, r.stderr);
  const m = JSON.parse(r.text);
  assert.equal(m.a1111.prompt, "a cat, テスト");
  assert.equal(m.a1111.summary.seed, 42);
  const bad = await runCli(["meta", "write", src, "--set", "note=x", "-o", join(dir, "x.jpg")]);
  assert.equal(bad.code, 2);
  oneLineError(bad.stderr);
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir, { recursive: true });
}, true);

metaTest("bad inputs give one line, a nonzero exit and no output file", async () => {
  const dir = await tempDir();
  const out = join(dir, "out.png");
  const badCrc = SAMPLE.slice();
  badCrc[41] = badCrc[41]! ^ 1;
  const longChunk = SAMPLE.slice();
  new DataView(longChunk.buffer).setUint32(33, 0x10000000);
  const cases: Array<[string, Uint8Array, number, RegExp]> = [
    ["empty stdin", new Uint8Array(), 3, /is empty/],
    ["non-image bytes", encodeLatin1("hello, world\n"), 3, /not a PNG, JPEG/],
    ["truncated PNG", SAMPLE.subarray(0, SAMPLE.length - 20), 3, /truncated/],
    ["bad CRC", badCrc, 3, /fails its CRC check/],
    ["chunk length > file", longChunk, 3, /claims 268435456 bytes/],
  ];
  for (const [what, bytes, code, pattern] of cases) {
    for (const args of [["meta", "read"], ["meta", "write", "--set", "k=v", "-o", out]]) {
      const r = await runCli(args, { stdin: bytes });
      assert.equal(r.code, code, `${what} (${args[1]}): ${r.stderr}`);
      oneLineError(r.stderr);
      assert.match(r.stderr, pattern, what);
      assert.equal(r.stdout.length, 0, `${what}: no partial output`);
      assert.deepEqual([...Deno.readDirSync(dir)], [], `${what}: no file left behind`);
    }
  }
  const lenient = await runCli(["meta", "read", "--lenient"], { stdin: badCrc });
  assert.equal(lenient.code, 0, lenient.stderr);
  const meta = JSON.parse(lenient.text);
  assert.equal(meta.width, 4);
  assert.match(meta.warnings[0], /fails its CRC check/);
  assert.match(lenient.stderr, /^warning: stdin: PNG chunk "pHYs" at byte 33 fails its CRC check/);
  await Deno.remove(dir, { recursive: true });
});

metaTest("hostile PNGs give bounded results: zTXt bomb, 100k tiny chunks", async () => {
  const bomb = makePng([
    [
      "zTXt",
      concatBytes([
        encodeLatin1("bomb"),
        Uint8Array.of(0, 0),
        deflateZlib(new Uint8Array(20 << 20)),
      ]),
    ],
  ]);
  const r = await runCli(["meta", "read"], { stdin: bomb });
  assert.equal(r.code, 0, r.stderr);
  const meta = JSON.parse(r.text);
  assert.deepEqual(meta.texts, []);
  assert.match(meta.warnings[0], /more than 16777216 bytes/);
  const one = encodeChunk("tEXt", textData("k", "v"));
  const many = new Uint8Array(one.length * 100_000);
  for (let i = 0; i < 100_000; i++) many.set(one, i * one.length);
  const png = makePng();
  const big = concatBytes([png.subarray(0, png.length - 12), many, png.subarray(png.length - 12)]);
  const read = await runCli(["meta", "read"], { stdin: big });
  assert.equal(read.code, 0, read.stderr);
  assert.ok(read.stdout.length < 400_000, `output is ${read.stdout.length} bytes`);
  assert.equal(JSON.parse(read.text).texts.length, 1024);
  const write = await runCli(["meta", "write", "--delete", "k"], { stdin: big });
  assert.equal(write.code, 0, write.stderr);
  assert.deepEqual(chunkList(write.stdout).map(([t]) => t), ["IHDR", "IDAT", "IEND"]);
});

metaTest("meta --help lists read and write with examples", async () => {
  const r = await runCli(["meta", "write", "--help"]);
  assert.equal(r.code, 0);
  for (
    const flag of [
      "--set <key=value>",
      "--set-json <file>",
      "--delete <key>",
      "--strip",
      "--compress",
      "-o, --output <file>",
      "--job <file>",
      "--dry-run",
    ]
  ) {
    assert.ok(r.text.includes(flag), `help mentions ${flag}`);
  }
  assert.match(r.text, /Examples:\n/);
  const read = await runCli(["meta", "read", "--help"]);
  assert.match(read.text, /--lenient/);
});
