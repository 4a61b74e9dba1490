/**
 * Issue 17 item 7: output that cannot be written is an I/O error (exit 5) told in one plain
 * line, never Deno's permission wording or "report it as a bug". Runs the CLI with the
 * permissions of `deno task denoise` (not --allow-all: Deno's sandbox is part of the case).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import denoConfig from "../deno.json" with { type: "json" };
import { makePng } from "../lib/meta/testing.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { REPO_ROOT } from "./shared.ts";

/** `deno run` and its permission flags, as the `denoise` task has them. */
const TASK_FLAGS = denoConfig.tasks.denoise.split(/\s+/).filter((a) => a.startsWith("--allow-"));

const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Runs `denoise ARGS` through bash so stdout can be redirected, e.g. `> /dev/full`. */
async function denoise(
  args: string[],
  options: { env?: Record<string, string>; redirect?: string },
) {
  const command = [Deno.execPath(), "run", ...TASK_FLAGS, "--no-lock", join(REPO_ROOT, "main.ts")]
    .concat(args).map(shellQuote).join(" ") + (options.redirect ?? "");
  const out = await new Deno.Command("bash", {
    args: ["-c", command],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

function assertPlainIoError(result: { code: number; stderr: string }, message: RegExp) {
  assert.equal(result.code, 5, result.stderr);
  const lines = result.stderr.trimEnd().split("\n");
  assert.match(lines[0]!, message);
  assert.ok(lines.length <= 2 && (lines[1] ?? "hint: ").startsWith("hint: "), result.stderr);
  assert.doesNotMatch(result.stderr, /bug|--allow-all|os error|Requires/);
}

Deno.test("writing to /proc, /dev/full or a full stdout exits 5 with one plain line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-out-" });
  try {
    const png = join(dir, "in.png");
    await Deno.writeFile(png, makePng());
    const write = ["meta", "write", "--set", "note=x", png];
    assertPlainIoError(
      await denoise([...write, "-o", "/proc/x.png"], {}),
      /^denoise: Cannot write "\/proc\/x\.png": denoise does not read or write system paths/,
    );
    assertPlainIoError(
      await denoise([...write, "-o", "/dev/full"], {}),
      /^denoise: Cannot write "\/dev\/full": /,
    );
    assertPlainIoError(
      await denoise(write, { redirect: " > /dev/full" }),
      /^denoise: Cannot write to stdout: no space left on device$/,
    );
    assertPlainIoError(
      await denoise(["meta", "read", png], { redirect: " > /dev/full" }),
      /^denoise: Cannot write to stdout: no space left on device$/,
    );
    if (Deno.statSync("/dev/null").isCharDevice) {
      // Allowed by Deno's sandbox, and written in place (never replaced by a renamed file).
      const ok = await denoise([...write, "-o", "/dev/null"], {});
      assert.equal(ok.code, 0, ok.stderr);
      assert.ok(Deno.statSync("/dev/null").isCharDevice);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["in.png"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DENOISE_HOME=/proc/x exits 5 with one plain line for pull and generate", async () => {
  const env = { DENOISE_HOME: "/proc/x", DENOISE_OFFLINE: "" };
  // The folder is refused before any download starts.
  assertPlainIoError(
    await denoise(["models", "pull", "sd15"], { env }),
    /^denoise: Cannot create the model folder "\/proc\/x\/models\/sd15\/[0-9a-f]+": /,
  );
  const tokenizer = await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" }));
  const model = await makeTinyModel("sd15", { seed: 1, tokenizerDir: tokenizer });
  const out = join(model, "..", "out.png");
  try {
    assertPlainIoError(
      await denoise(["generate", "a cat", "-m", model, "--steps", "1", "-o", out], { env }),
      /^denoise: Cannot write the cache folder "\/proc\/x\/graphs": /,
    );
  } finally {
    await Deno.remove(join(model, ".."), { recursive: true });
    await Deno.remove(tokenizer, { recursive: true });
  }
});
