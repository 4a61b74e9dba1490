import assert from "node:assert/strict";
import { join } from "node:path";
import { writeTinyUpscaler } from "../../tests/fixtures/upscaler.ts";
import { IoError, ModelNotFoundError, UsageError } from "../errors.ts";
import { parseLock } from "../hub/lock.ts";
import { srvggNetCompactConfig } from "../models/esrgan.ts";
import type { RunEnvironment } from "../pipeline/resolve.ts";
import { writeSafetensors } from "../weights/safetensors.ts";
import { resolveHiresUpscaler } from "./model_upscaler.ts";
import { lockAlias, resolveUpscaleModel, weightFileKind } from "./resolve.ts";

const ROOT = await Deno.makeTempDir({ prefix: "denoise-upscale-resolve-" });
const LOCK = parseLock(JSON.stringify({
  version: 1,
  models: {
    "realesr-general-x4v3": {
      description: "test",
      family: "esrgan",
      source: { hub: "github", repo: "xinntao/Real-ESRGAN", tag: "v0.2.5.0" },
      layout: "single-file",
      files: [{ path: "realesr-general-x4v3.pth", size: null, sha256: null }],
      verified: false,
    },
    sd15: {
      description: "test",
      family: "sd1",
      source: { hub: "huggingface", repo: "a/b", revision: "a".repeat(40) },
      layout: "diffusers",
      files: [{ path: "model_index.json", size: null, sha256: null }],
      verified: false,
    },
  },
}));
const ENV: RunEnvironment = { cacheDir: ROOT, lock: LOCK, version: "test" };

Deno.test("weightFileKind() tells an upscaler from a Stable Diffusion checkpoint by tensor names", async () => {
  const esrgan = await writeTinyUpscaler(join(ROOT, "u.safetensors"), srvggNetCompactConfig());
  assert.equal(await weightFileKind(esrgan), "esrgan");
  const sd = join(ROOT, "sd.safetensors");
  await writeSafetensors(sd, [{
    name: "model.diffusion_model.input_blocks.0.0.weight",
    dtype: "F32",
    shape: [1],
    data: Float32Array.of(0),
  }]);
  assert.equal(await weightFileKind(sd), "diffusion");
});

Deno.test("resolveUpscaleModel() resolves files, folders and aliases of either kind", async () => {
  const file = await writeTinyUpscaler(join(ROOT, "x.safetensors"), srvggNetCompactConfig(), 1);
  assert.deepEqual(await resolveUpscaleModel(file, ENV), { kind: "esrgan", path: file, name: "x" });
  assert.equal((await resolveUpscaleModel(ROOT, ENV)).kind, "diffusion");
  assert.deepEqual(await resolveUpscaleModel("sd15", ENV), {
    kind: "diffusion",
    path: "sd15",
    name: "sd15",
  });
  // An ESRGAN alias must be downloaded; its names from Real-ESRGAN and A1111 find it too.
  assert.equal(lockAlias(LOCK, "realesr_general_x4v3"), "realesr-general-x4v3");
  assert.equal(lockAlias(LOCK, "R-ESRGAN General 4xV3"), "realesr-general-x4v3");
  await assert.rejects(
    () => resolveUpscaleModel("realesr-general-x4v3", ENV),
    (e: unknown) => e instanceof ModelNotFoundError && /denoise models pull/.test(e.hint ?? ""),
  );
  const dir = join(ROOT, "models", "realesr-general-x4v3", "v0.2.5.0");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.copyFile(file, join(dir, "realesr-general-x4v3.pth"));
  assert.deepEqual(await resolveUpscaleModel("R-ESRGAN General 4xV3", ENV), {
    kind: "esrgan",
    path: join(dir, "realesr-general-x4v3.pth"),
    name: "realesr-general-x4v3",
  });
  await assert.rejects(() => resolveUpscaleModel("nothing", ENV), ModelNotFoundError);
  await assert.rejects(() => resolveUpscaleModel("gone/x.pth", ENV), IoError);
});

Deno.test("resolveHiresUpscaler() refuses unknown names and diffusion models as usage errors", async () => {
  await assert.rejects(() => resolveHiresUpscaler("bicubic", ENV), UsageError);
  await assert.rejects(() => resolveHiresUpscaler("sd15", ENV), UsageError);
  await assert.rejects(() => resolveHiresUpscaler("gone/x.pth", ENV), IoError);
});
