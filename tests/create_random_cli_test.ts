import assert from "node:assert/strict";
import { join } from "node:path";
import { listDir, runCli } from "./cli.ts";
import { TINY_MODELS } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

Deno.test("models create-random writes a model that generate runs; same seed, same weights", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-create-random-" });
  const config = join(dir, "tiny.json");
  await Deno.writeTextFile(config, JSON.stringify(TINY_MODELS.sd15));
  const tokenizer = await writeByteTokenizer(join(dir, "tok"));
  for (const name of ["a", "b"]) {
    const r = await runCli([
      "models",
      "create-random",
      "--config",
      config,
      "-o",
      join(dir, name),
      "--seed",
      "5",
      "--tokenizer",
      tokenizer,
    ]);
    assert.equal(r.code, 0, r.stderr);
  }
  assert.deepEqual(listDir(join(dir, "a")), [
    "model_index.json",
    "scheduler",
    "text_encoder",
    "tokenizer",
    "unet",
    "vae",
  ]);
  const weights = "unet/diffusion_pytorch_model.safetensors";
  assert.deepEqual(
    await Deno.readFile(join(dir, "a", weights)),
    await Deno.readFile(join(dir, "b", weights)),
  );
  const r = await runCli(
    ["generate", "a test", "-m", join(dir, "a"), "--steps", "1", "-o", join(dir, "x.png"), "-q"],
    { env: { DENOISE_HOME: join(dir, "home") } },
  );
  assert.equal(r.code, 0, r.stderr);
  // An existing folder is refused and nothing is written.
  const again = await runCli(["models", "create-random", "--config", config, "-o", join(dir, "a")]);
  assert.equal(again.code, 2);
  const bad = join(dir, "bad.json");
  await Deno.writeTextFile(bad, JSON.stringify({ unet: { block_out_channels: [3] }, vae: {} }));
  const invalid = await runCli(["models", "create-random", "--config", bad, "-o", join(dir, "c")]);
  assert.equal(invalid.code, 3, invalid.stderr);
  assert.ok(!listDir(dir).some((n) => n.startsWith("c")), "no partial model folder");
  await Deno.remove(dir, { recursive: true });
});
