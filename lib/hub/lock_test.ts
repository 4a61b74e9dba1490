import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import builtin from "../../models.lock.json" with { type: "json" };
import { modelDir } from "./cache.ts";
import { parseLock, sourceRevision } from "./lock.ts";
import { fileUrl, GITHUB_ENDPOINT, pullModel } from "./pull.ts";

const PAYLOAD = new TextEncoder().encode("weights of a release asset");
const SHA = createHash("sha256").update(PAYLOAD).digest("hex");

function githubLock() {
  return parseLock(JSON.stringify({
    version: 1,
    models: {
      "tiny-esrgan": {
        description: "test",
        family: "esrgan",
        source: { hub: "github", repo: "owner/Tiny-ESRGAN", tag: "v0.2.5.0" },
        layout: "single-file",
        files: [{ path: "tiny_x4.pth", size: PAYLOAD.length, sha256: SHA }],
        verified: true,
      },
    },
  }));
}

Deno.test("parseLock() reads GitHub release sources: tag, URL, cache folder", () => {
  const model = githubLock().models["tiny-esrgan"]!;
  assert.equal(sourceRevision(model), "v0.2.5.0");
  assert.equal(
    fileUrl("https://hf.example", model, "tiny_x4.pth"),
    "https://github.com/owner/Tiny-ESRGAN/releases/download/v0.2.5.0/tiny_x4.pth",
  );
  assert.equal(
    modelDir("/c", "tiny-esrgan", model),
    join("/c", "models", "tiny-esrgan", "v0.2.5.0"),
  );
  // A release source has a tag, not a revision; a hub source a revision, not a tag.
  const bad = JSON.parse(JSON.stringify(githubLock()));
  bad.models["tiny-esrgan"].source.revision = "a".repeat(40);
  assert.throws(() => parseLock(JSON.stringify(bad)), /invalid/);
  bad.models["tiny-esrgan"].source = { hub: "huggingface", repo: "a/b", tag: "v1" };
  assert.throws(() => parseLock(JSON.stringify(bad)), /invalid/);
});

Deno.test("pullModel() fetches a GitHub release asset without the hub token", async () => {
  const root = await Deno.makeTempDir({ prefix: "denoise-lock-" });
  const model = githubLock().models["tiny-esrgan"]!;
  const seen: Array<{ url: string; auth: string | null }> = [];
  const fakeFetch: typeof fetch = (input, init) => {
    seen.push({ url: String(input), auth: new Headers(init?.headers).get("authorization") });
    return Promise.resolve(new Response(PAYLOAD, { status: 200 }));
  };
  try {
    const dir = await pullModel("tiny-esrgan", model, {
      root,
      endpoint: "https://hf.example",
      token: "secret",
      fetch: fakeFetch,
    });
    assert.deepEqual(seen, [{
      url: `${GITHUB_ENDPOINT}/owner/Tiny-ESRGAN/releases/download/v0.2.5.0/tiny_x4.pth`,
      auth: null,
    }]);
    assert.deepEqual(await Deno.readFile(join(dir, "tiny_x4.pth")), PAYLOAD);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the built-in lock's ESRGAN-family entries are pinned by size and SHA-256", () => {
  const lock = parseLock(JSON.stringify(builtin));
  const esrgan = Object.entries(lock.models).filter(([, m]) => m.family === "esrgan");
  assert.deepEqual(esrgan.map(([alias]) => alias).sort(), [
    "4x-ultrasharp",
    "realesr-animevideov3",
    "realesr-general-x4v3",
    "realesrgan-x2plus",
    "realesrgan-x4plus",
    "realesrgan-x4plus-anime-6b",
  ]);
  for (const [alias, model] of esrgan) {
    assert.equal(model.layout, "single-file", alias);
    assert.equal(model.files.length, 1, alias);
    assert.match(model.files[0]!.path, /\.pth$/, alias);
    assert.ok(model.files[0]!.size! > 1_000_000, alias);
    assert.match(model.files[0]!.sha256 ?? "", /^[0-9a-f]{64}$/, alias);
    assert.ok(model.verified, alias);
  }
  assert.equal(
    fileUrl("https://huggingface.co", lock.models["realesrgan-x4plus"]!, "RealESRGAN_x4plus.pth"),
    "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
  );
});
