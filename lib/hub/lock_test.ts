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

Deno.test("the built-in lock's ControlNet 1.1 entries: one pinned revision, the .pth then its yaml", () => {
  const lock = parseLock(JSON.stringify(builtin));
  const nets = Object.entries(lock.models).filter(([, m]) =>
    m.family === "controlnet" && m.layout === "single-file"
  );
  assert.deepEqual(nets.map(([alias]) => alias).sort(), [
    "control_v11e_sd15_shuffle",
    "control_v11f1e_sd15_tile",
    "control_v11f1p_sd15_depth",
    "control_v11p_sd15_canny",
    "control_v11p_sd15_inpaint",
    "control_v11p_sd15_lineart",
    "control_v11p_sd15_openpose",
    "control_v11p_sd15_scribble",
    "control_v11p_sd15_softedge",
  ]);
  for (const [alias, model] of nets) {
    assert.deepEqual(model.source, {
      hub: "huggingface",
      repo: "lllyasviel/ControlNet-v1-1",
      revision: "69fc48b9cbd98661f6d0288dc59b59a5ccb32a6b",
    });
    assert.deepEqual(model.files.map((f) => f.path), [`${alias}.pth`, `${alias}.yaml`]);
    // A value no source gave stays null, and then the entry is not verified.
    const complete = model.files.every((f) => f.size !== null && f.sha256 !== null);
    assert.ok(!model.verified || complete, alias);
  }
  // The values several unrelated projects pin (docs/models-lock.md).
  const canny = lock.models["control_v11p_sd15_canny"]!.files[0]!;
  assert.deepEqual([canny.size, canny.sha256?.slice(0, 8)], [1445234681, "f99cfe4c"]);
  assert.equal(
    fileUrl("https://huggingface.co", lock.models["control_v11f1e_sd15_tile"]!, "x.yaml"),
    "https://huggingface.co/lllyasviel/ControlNet-v1-1/resolve/" +
      "69fc48b9cbd98661f6d0288dc59b59a5ccb32a6b/x.yaml",
  );
});
