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
    const cmd of [["generate"], ["img2img"], ["meta", "read"], ["meta", "write"], ["models"], [
      "samplers",
    ]]
  ) {
    const r = await runCli([...cmd, "--help"]);
    assert.equal(r.code, 0, `${cmd.join(" ")}: ${r.stderr}`);
    assert.match(r.text, /Examples:\n/, `${cmd.join(" ")} --help has no examples`);
    assert.match(r.text, /\$ denoise /);
  }
});
