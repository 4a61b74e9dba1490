import assert from "node:assert/strict";
import { runCli } from "./cli.ts";

Deno.test("denoise --help lists global flags and examples, exit 0", async () => {
  const r = await runCli(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  for (const flag of ["--debug", "--quiet", "--progress", "--version"]) {
    assert.ok(r.text.includes(flag), `help lacks ${flag}:\n${r.text}`);
  }
  assert.match(r.text, /Examples:/);
  assert.match(r.text, /Exit codes:/);
});

Deno.test("denoise --version prints the version from deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const r = await runCli(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.text.trim(), `denoise ${config.version}`);
});

Deno.test("an unknown flag is a usage error: exit 2, one line and a hint, no stack", async () => {
  const r = await runCli(["--no-such-flag"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^denoise: unknown option '--no-such-flag'/);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/);
  assert.equal(r.stdout.length, 0);
});

Deno.test("--progress only accepts auto, bar, json and none", async () => {
  const r = await runCli(["--progress", "loud", "--help"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Allowed choices are auto, bar, json, none/);
});

Deno.test("every subcommand's --help shows examples", async () => {
  for (
    const cmd of [
      ["generate"],
      ["img2img"],
      ["controlnet"],
      ["upscale"],
      ["preprocess"],
      ["animate"],
      ["convert-ckpt"],
      ["lora-train"],
      ["meta", "read"],
      ["meta", "write"],
      ["models"],
      ["samplers"],
    ]
  ) {
    const r = await runCli([...cmd, "--help"]);
    assert.equal(r.code, 0, `${cmd.join(" ")}: ${r.stderr}`);
    assert.match(r.text, /Examples:\n/, `${cmd.join(" ")} --help has no examples`);
    assert.match(r.text, /\$ denoise /);
  }
});

Deno.test("every subcommand takes --dry-run (prints its Job) and --job (replays it)", async () => {
  const cases: Array<[string[], string]> = [
    [["generate", "a cat", "-m", "x", "--seed", "1"], "generate"],
    [["img2img", "a cat", "-m", "x", "--seed", "1", "--image", "README.md"], "img2img"],
    [["controlnet", "a cat", "-m", "x", "--seed", "1", "--control", "n:README.md"], "controlnet"],
    [["upscale", "a.png", "-m", "x.pth", "--scale", "2"], "upscale"],
    [["animate", "a cat", "-m", "x", "--motion-module", "mm", "--seed", "1"], "animate"],
    [["meta", "read", "a.png"], "meta read"],
    [["meta", "write", "a.png", "--set", "k=v"], "meta write"],
    [["models", "list"], "models list"],
    [["models", "pull", "sd15"], "models pull"],
    [["models", "verify"], "models verify"],
    [["models", "where", "sd15"], "models where"],
    [["models", "create-random", "--config", "c.json", "-o", "out"], "models create-random"],
    [["samplers", "Euler a"], "samplers"],
    [["convert-ckpt", "x.safetensors", "-o", "out"], "convert-ckpt"],
    [["preprocess", "canny", "x.png", "--low", "50"], "preprocess"],
    [["preprocess", "openpose", "x.png", "--no-face"], "preprocess"],
    [["lora-train", "data", "-o", "x.safetensors", "-m", "x"], "lora-train"],
  ];
  for (const [args, command] of cases) {
    const r = await runCli([...args, "--dry-run"]);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    const job = JSON.parse(r.text);
    assert.equal(job.command, command);
    const again = await runCli([
      ...args.slice(0, command.split(" ").length),
      "--job",
      "-",
      "--dry-run",
    ], {
      stdin: r.text,
    });
    assert.equal(again.code, 0, `${command} --job -: ${again.stderr}`);
    assert.deepEqual(JSON.parse(again.text), job, `${command} --job - replays the job`);
  }
});

Deno.test("deno task denoise has the permissions generate needs (ORT and sharp native addons)", async () => {
  const { makeTinyModel } = await import("./fixtures/random_model.ts");
  const { writeByteTokenizer } = await import("./fixtures/tokenizer.ts");
  const { REPO_ROOT } = await import("./shared.ts");
  const dir = await Deno.makeTempDir({ prefix: "denoise-task-" });
  const model = await makeTinyModel("sd15", {
    seed: 1,
    tokenizerDir: await writeByteTokenizer(dir + "/tok"),
  });
  const out = `${dir}/out.png`;
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "-q",
      "denoise",
      "generate",
      "a cat",
      "-m",
      model,
      "--steps",
      "1",
      "-o",
      out,
      "-q",
    ],
    cwd: REPO_ROOT,
    env: { DENOISE_HOME: `${dir}/home`, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  assert.ok((await Deno.stat(out)).size > 0);
  await Deno.remove(dir, { recursive: true });
});
