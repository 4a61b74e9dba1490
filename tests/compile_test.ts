import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "./shared.ts";

const denort = Deno.env.get("DENORT_BIN");
if (!denort) {
  console.warn("note: DENORT_BIN is not set; the compiled-binary test is skipped");
}

Deno.test({
  name: "deno task compile builds a working dist/denoise (needs DENORT_BIN)",
  ignore: !denort,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const output = join(dir, "denoise");
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "scripts/compile.ts", output],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(build.code, 0, new TextDecoder().decode(build.stderr));
    const version = await new Deno.Command(output, { args: ["--version"] }).output();
    assert.equal(version.code, 0);
    assert.match(new TextDecoder().decode(version.stdout), /^denoise \d+\.\d+\.\d+/);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("compileArgs() includes linux-x64 natives and excludes other platforms", async () => {
  const { compileArgs } = await import("../scripts/compile.ts");
  const args = compileArgs("dist/denoise");
  const includes = args.filter((_, i) => args[i - 1] === "--include");
  const excludes = args.filter((_, i) => args[i - 1] === "--exclude");
  assert.ok(includes.some((p) => p.endsWith("napi-v6/linux/x64")));
  assert.ok(excludes.some((p) => p.endsWith("napi-v6/win32")));
  assert.ok(excludes.some((p) => p.endsWith("napi-v6/darwin")));
  for (const path of includes) {
    const info = await Deno.stat(join(REPO_ROOT, path)).catch(() => undefined);
    assert.ok(info, `included path ${path} does not exist (a dependency version changed?)`);
  }
  assert.equal(args.at(-1), "main.ts");
});
