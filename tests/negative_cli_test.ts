/**
 * "No negative prompt" and "an empty negative prompt" are different things for SDXL models with
 * force_zeros_for_empty_prompt (Diffusers zeroes only `negative_prompt=None`): kept apart through
 * flags, --dry-run, stored Jobs and their replay.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readMetadata } from "../lib/meta/read.ts";
import { runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const HOME = await Deno.makeTempDir({ prefix: "denoise-neg-home-" });
const ENV = { DENOISE_HOME: HOME };
const SDXL = await makeTinyModel("sdxl", {
  seed: 4,
  tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" })),
});
const ARGS = ["generate", "a cat", "-m", SDXL, "--steps", "2", "--seed", "1", "-q"];

Deno.test("--dry-run keeps an absent negative absent and an empty one empty", async () => {
  const absent = await runCli([...ARGS, "--dry-run"], { env: ENV });
  assert.equal(absent.code, 0, absent.stderr);
  assert.equal("negative" in JSON.parse(absent.text), false);
  const empty = await runCli([...ARGS, "--negative", "", "--dry-run"], { env: ENV });
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(JSON.parse(empty.text).negative, "");
});

Deno.test('SDXL: --negative "" encodes the empty prompt; no --negative uses zeros; replays keep each', async () => {
  const none = await runCli(ARGS, { env: ENV });
  const empty = await runCli([...ARGS, "--negative", ""], { env: ENV });
  assert.equal(none.code, 0, none.stderr);
  assert.equal(empty.code, 0, empty.stderr);
  assert.notDeepEqual(none.stdout, empty.stdout, "the two must differ for a force-zeros model");
  for (const [bytes, negative] of [[none.stdout, undefined], [empty.stdout, ""]] as const) {
    const job = readMetadata(bytes).job as Record<string, unknown>;
    assert.equal(job.negative, negative);
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(join(dir, "in.png"), bytes);
      const again = await runCli(["generate", "--job", join(dir, "in.png"), "-q"], { env: ENV });
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(again.stdout, bytes, "the replay is byte-identical");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
