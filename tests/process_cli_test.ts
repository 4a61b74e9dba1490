/**
 * What a new user hit (issue 17): paths relative to the caller's folder under `deno task`, a
 * killed `deno task` stopping its worker, unknown commands, help hints, `-o` without an
 * extension, misspelt LoRA scales, the seed in --json lines, JSON stderr under --progress json,
 * thread and pixel limits, and a missing CUDA provider.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { REPO_ROOT } from "./shared.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-proc-home-" });
const ENV = { DENOISE_HOME: HOME };
const MODEL = await makeTinyModel("sd15", {
  seed: 8,
  tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" })),
});
const GEN = ["generate", "a cat", "-m", MODEL, "--steps", "1", "--seed", "2"];

/** Runs `deno task -q --config <repo>/deno.json denoise ARGS` from `cwd`, as the README does. */
function taskCommand(args: string[], cwd: string, env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "--config", join(REPO_ROOT, "deno.json"), "denoise", ...args],
    cwd,
    // deno task keeps an INIT_CWD it inherits (as npm does), and this suite itself runs under
    // `deno task test`: set it as a user's shell would have it.
    env: { NO_COLOR: "1", ...ENV, INIT_CWD: cwd, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

Deno.test("under deno task, relative paths mean the caller's folder (input and -o)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const made = await taskCommand([...GEN, "-o", "fox.png"], dir).output();
    assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
    assert.ok(existsSync(join(dir, "fox.png")), "written in the caller's folder");
    assert.ok(!existsSync(join(REPO_ROOT, "fox.png")), "not in the checkout");
    const read = await taskCommand(["meta", "read", "fox.png"], dir).output();
    assert.equal(read.code, 0, new TextDecoder().decode(read.stderr));
    assert.equal(JSON.parse(new TextDecoder().decode(read.stdout)).format, "png");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kill -9 of the deno task process stops its worker; nothing is written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Many steps, so the worker is still busy when its parent dies.
    const child = taskCommand(
      [
        "generate",
        "a cat",
        "-m",
        MODEL,
        "--steps",
        "1000",
        "--width",
        "256",
        "--height",
        "256",
        "--seed",
        "2",
        "-o",
        "slow.png",
      ],
      dir,
    ).spawn();
    // Wait until the worker (a child of the task process) exists.
    let worker: number | undefined;
    for (let i = 0; i < 100 && worker === undefined; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const children = await Deno.readTextFile(`/proc/${child.pid}/task/${child.pid}/children`)
        .catch(() => "");
      const first = children.trim().split(/\s+/)[0];
      if (first) worker = Number(first);
    }
    assert.ok(worker !== undefined, "the task started a worker");
    await new Promise((r) => setTimeout(r, 1500));
    child.kill("SIGKILL");
    await child.output().catch(() => {});
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      await new Promise((r) => setTimeout(r, 100));
      alive = existsSync(`/proc/${worker}`) &&
        !(await Deno.readTextFile(`/proc/${worker}/stat`).catch(() => "")).includes(") Z ");
    }
    assert.equal(alive, false, "the worker stopped within 5 s of its parent");
    assert.ok(!existsSync(join(dir, "slow.png")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unknown command is a usage error, also with --help; hints name the subcommand's help", async () => {
  const r = await runCli(["upscalez", "--help"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /unknown command "upscalez"/);
  assert.equal(r.text, "");
  const bad = await runCli(["meta", "read", "--bogus"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /see "denoise meta read --help"/);
  const gen = await runCli(["generate", "--bogus"]);
  assert.match(gen.stderr, /see "denoise generate --help"/);
});

Deno.test("-o without an extension writes one image to that file; several go to a folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const one = await runCli([...GEN, "-o", join(dir, "picture"), "-q"], { env: ENV });
    assert.equal(one.code, 0, one.stderr);
    const info = await Deno.stat(join(dir, "picture"));
    assert.ok(info.isFile, "a file, not a folder");
    const bytes = await Deno.readFile(join(dir, "picture"));
    assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47], "PNG by default");
    const many = await runCli([...GEN, "--batch-count", "2", "-o", join(dir, "many"), "-q"], {
      env: ENV,
    });
    assert.equal(many.code, 0, many.stderr);
    assert.ok((await Deno.stat(join(dir, "many"))).isDirectory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--lora FILE:abc names the bad scale", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "detail.safetensors");
    await Deno.writeFile(file, new Uint8Array(16));
    const r = await runCli([...GEN, "--lora", `${file}:abc`, "--dry-run"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /scale "abc" is not a number/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--json prints the seed as the Job has it; --progress json makes every stderr line JSON", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runCli([...GEN, "-o", join(dir, "a.png"), "--json", "--progress", "json"], {
      env: ENV,
    });
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.text.trim());
    assert.equal(line.seed, 2);
    assert.equal(line.job.seed, 2);
    for (const l of r.stderr.trim().split("\n")) JSON.parse(l);
    assert.match(r.stderr, /"event":"info","message":"wrote /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--threads above the usable cores is lowered with a warning; DENOISE_THREADS is read", async () => {
  const r = await runCli([...GEN, "--threads", "1000", "-o", "-"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1000 threads asked for, but this process may use \d+ core/);
  const bad = await runCli([...GEN, "-o", "-"], { env: { ...ENV, DENOISE_THREADS: "x" } });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /DENOISE_THREADS must be a positive integer/);
});

Deno.test("outputs above the pixel budget are refused before any work; --max-pixels raises it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = join(dir, "big.png");
    const r = await runCli([...GEN, "--width", "16384", "--height", "16384", "-o", out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /268435456 pixels, above the limit of 16777216/);
    assert.ok(!existsSync(out));
    const small = await runCli([...GEN, "--max-pixels", "1000", "-o", out], { env: ENV });
    assert.equal(small.code, 2, small.stderr);
    assert.match(small.stderr, /above the limit of 1000/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const cudaInstalled = [...Deno.readDirSync(join(REPO_ROOT, "node_modules", ".deno"))].some((d) =>
  d.name.startsWith("onnxruntime-node@") &&
  existsSync(join(
    REPO_ROOT,
    "node_modules",
    ".deno",
    d.name,
    "node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so",
  ))
);

Deno.test({
  name:
    "--device cuda without onnxruntime's CUDA provider: exit 4, one line saying how to install it",
  ignore: cudaInstalled,
  async fn() {
    const r = await runCli([...GEN, "--device", "cuda", "-o", "-"], { env: ENV });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /CUDA provider is not installed/);
    assert.match(r.stderr, /--allow-scripts=npm:onnxruntime-node/);
    assert.doesNotMatch(r.stderr, /\[E:onnxruntime/);
    assert.ok(!r.stderr.includes("\u001b["), "no terminal colour codes");
  },
});
