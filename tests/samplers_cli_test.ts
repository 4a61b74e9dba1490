import assert from "node:assert/strict";
import { runCli } from "./cli.ts";

Deno.test("denoise samplers lists every sampler with its A1111 label and Diffusers class", async () => {
  const r = await runCli(["samplers", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.text) as Array<
    { sampler: string; a1111: string; diffusersClass: string }
  >;
  const names = rows.map((row) => row.sampler);
  for (
    const name
      of "ddim ddpm pndm lms euler euler-a heun dpm2 dpm2-a dpm++2m dpm++2m-sde dpm++3m-sde dpm++sde dpm++2s-a unipc deis lcm tcd"
        .split(" ")
  ) {
    assert.ok(names.includes(name), `missing ${name}`);
  }
  assert.equal(rows.find((row) => row.sampler === "euler-a")?.a1111, "Euler a");
  const table = await runCli(["samplers"]);
  assert.match(table.text, /^euler-a\s+Euler a\s+EulerAncestralDiscreteScheduler/m);
});

Deno.test("denoise samplers resolves A1111 labels, with or without a schedule type", async () => {
  let r = await runCli(["samplers", "DPM++ 2M Karras", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  let resolved = JSON.parse(r.text);
  assert.equal(resolved.sampler, "dpm++2m");
  assert.equal(resolved.schedule, "karras");
  r = await runCli(["samplers", "DPM++ 2M SDE", "--schedule-type", "Exponential", "--json"]);
  resolved = JSON.parse(r.text);
  assert.deepEqual([resolved.sampler, resolved.schedule], ["dpm++2m-sde", "exponential"]);
  r = await runCli(["samplers", "EulerDiscreteScheduler", "--json"]);
  assert.equal(JSON.parse(r.text).sampler, "euler");
  r = await runCli(["samplers", "warp drive"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^denoise: Unknown sampler "warp drive"/);
});
