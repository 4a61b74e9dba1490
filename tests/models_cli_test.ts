import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { runCli } from "./cli.ts";

const PAYLOAD = new TextEncoder().encode("weights ".repeat(5000));
const SHA = createHash("sha256").update(PAYLOAD).digest("hex");
const REVISION = "0123456789abcdef0123456789abcdef01234567";

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "denoise-models-" });
  const lock = join(dir, "lock.json");
  await Deno.writeTextFile(
    lock,
    JSON.stringify({
      version: 1,
      models: {
        tiny: {
          description: "a tiny test model",
          family: "sd1",
          source: { hub: "huggingface", repo: "owner/tiny", revision: REVISION },
          layout: "diffusers",
          files: [{ path: "unet/config.json", size: PAYLOAD.length, sha256: SHA }],
          verified: true,
        },
      },
    }),
  );
  const paths: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    paths.push(new URL(req.url).pathname);
    return new Response(PAYLOAD);
  });
  const env = {
    DENOISE_HOME: join(dir, "home"),
    DENOISE_MODELS_LOCK: lock,
    HF_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
  };
  return { dir, env, server, paths };
}

Deno.test("models list/pull/where/verify work against a local hub", async () => {
  const { dir, env, server, paths } = await setup();
  try {
    let r = await runCli(["models", "list", "--json"], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.text)[0].downloaded, false);

    r = await runCli(["models", "where", "tiny"], { env });
    assert.equal(r.code, 4, "where exits 4 before the pull");
    assert.match(r.stderr, /denoise models pull tiny/);

    r = await runCli(["--progress", "json", "models", "pull", "tiny"], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(paths, [`/owner/tiny/resolve/${REVISION}/unet/config.json`]);
    // Under --progress json every stderr line is JSON; the progress events are these.
    const progress = r.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .filter((e) => e.event === "progress");
    assert.ok(progress.length > 0 && progress.at(-1).step === PAYLOAD.length, r.stderr);

    r = await runCli(["models", "where", "tiny"], { env });
    assert.equal(r.code, 0, r.stderr);
    const folder = r.text.trim();
    assert.equal(folder, join(env.DENOISE_HOME, "models", "tiny", REVISION));
    assert.deepEqual(await Deno.readFile(join(folder, "unet", "config.json")), PAYLOAD);

    r = await runCli(["models", "verify", "tiny"], { env });
    assert.equal(r.code, 0, r.stderr);
    await Deno.writeTextFile(join(folder, "unet", "config.json"), "x".repeat(PAYLOAD.length));
    r = await runCli(["models", "verify", "tiny"], { env });
    assert.equal(r.code, 3);
    assert.match(r.text, /BAD {2}tiny\/unet\/config\.json/);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("models pull: unknown alias exits 4; DENOISE_OFFLINE=1 never downloads", async () => {
  const { dir, env, server, paths } = await setup();
  try {
    let r = await runCli(["models", "pull", "nope"], { env });
    assert.equal(r.code, 4);
    assert.match(r.stderr, /^denoise: Unknown model alias "nope"\nhint: known aliases: tiny/);
    r = await runCli(["models", "pull", "tiny"], { env: { ...env, DENOISE_OFFLINE: "1" } });
    assert.equal(r.code, 4);
    assert.match(r.stderr, /DENOISE_OFFLINE/);
    assert.deepEqual(paths, []);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the built-in models.lock.json is valid", async () => {
  const r = await runCli(["models", "list", "--json"], { env: { DENOISE_HOME: "/nonexistent" } });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Array.isArray(JSON.parse(r.text)));
});
