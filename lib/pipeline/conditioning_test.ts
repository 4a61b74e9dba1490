import assert from "node:assert/strict";
import { join } from "node:path";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { createScheduler } from "../schedulers/mod.ts";
import { encodeConditioning, timeIds } from "./conditioning.ts";
import { StableDiffusion } from "./stable_diffusion.ts";

const tokenizerDir = await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" }));

function scheduler(steps: number) {
  const s = createScheduler("euler", {});
  s.setTimesteps(steps);
  return s;
}

const BASE = {
  steps: 4,
  clipSkip: 1,
  promptSyntax: "a1111" as const,
  emphasis: "original" as const,
};

Deno.test("timeIds() orders original (h, w), crop (top, left), target (h, w) as Diffusers", () => {
  assert.deepEqual(
    [...timeIds({ width: 640, height: 480 }, { top: 3, left: 7 }, { width: 1024, height: 768 })],
    [480, 640, 3, 7, 768, 1024],
  );
  assert.deepEqual(
    [...timeIds({ width: 64, height: 32 }, { top: 0, left: 0 }, { aestheticScore: 2.5 })],
    [32, 64, 0, 0, 2.5],
  );
});

Deno.test("SDXL conditioning: two encoders concatenated, pooled embeds, zeros only for no negative", async () => {
  const dir = await makeTinyModel("sdxl", { seed: 2, tokenizerDir });
  // Diffusers' StableDiffusionXLPipeline zeroes the negative by default when none is given
  // (negative_prompt is None), and encodes "" when it is given empty.
  const index = JSON.parse(await Deno.readTextFile(join(dir, "model_index.json")));
  assert.equal(index.force_zeros_for_empty_prompt, undefined);
  const cacheDir = await Deno.makeTempDir();
  const sd = await StableDiffusion.open(dir, { cacheDir, threads: 1 });
  try {
    const size = { width: 64, height: 64 };
    const at = await encodeConditioning(sd, scheduler(4), { ...BASE, prompt: "a cat" }, size);
    const step = at(0);
    const cond = step.conds[0]!.cond;
    // 32 (CLIP-L hidden) + 32 (CLIP-G hidden) channels, 77 tokens.
    assert.equal(cond.embedding.dim, 64);
    assert.equal(cond.embedding.tokens, 77);
    assert.equal(cond.added!.text_embeds!.length, 32);
    assert.deepEqual([...cond.added!.time_ids!], [64, 64, 0, 0, 64, 64]);
    assert.ok(cond.embedding.data.some((v) => v !== 0));
    assert.ok(step.uncond.embedding.data.every((v) => v === 0), "no negative: zeros");
    assert.ok(step.uncond.added!.text_embeds!.every((v) => v === 0));
    const empty = (await encodeConditioning(sd, scheduler(4), {
      ...BASE,
      prompt: "a cat",
      negative: "",
    }, size))(0);
    assert.ok(empty.uncond.embedding.data.some((v) => v !== 0), "an empty negative is encoded");
    assert.ok(empty.uncond.added!.text_embeds!.some((v) => v !== 0));
    const withNegative = await encodeConditioning(
      sd,
      scheduler(4),
      { ...BASE, prompt: "a cat", negative: "blurry", originalSize: { width: 128, height: 96 } },
      size,
    );
    const s0 = withNegative(0);
    assert.ok(s0.uncond.embedding.data.some((v) => v !== 0), "a given negative is encoded");
    assert.deepEqual([...s0.conds[0]!.cond.added!.time_ids!], [96, 128, 0, 0, 64, 64]);
    assert.deepEqual(s0.conds[0]!.cond.embedding.data, cond.embedding.data);
  } finally {
    await sd.release();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("SD 1.x conditioning: AND parts, schedules and pad-to-same-length", async () => {
  const dir = await makeTinyModel("sd15", { seed: 2, tokenizerDir });
  const cacheDir = await Deno.makeTempDir();
  const sd = await StableDiffusion.open(dir, { cacheDir, threads: 1 });
  try {
    const long = Array.from({ length: 100 }, () => "a").join(" ");
    const at = await encodeConditioning(
      sd,
      scheduler(4),
      { ...BASE, prompt: `[cat:dog:2] AND ${long} :0.5`, negative: "" },
      { width: 64, height: 64 },
    );
    const first = at(0);
    const last = at(3);
    assert.equal(first.conds.length, 2);
    assert.equal(first.conds[1]!.weight, 0.5);
    // Every conditioning is padded to the longest (2 chunks of 77).
    for (const c of [first.uncond, ...first.conds.map((p) => p.cond)]) {
      assert.equal(c.embedding.tokens, 154);
    }
    assert.notDeepEqual(first.conds[0]!.cond.embedding.data, last.conds[0]!.cond.embedding.data);
    assert.equal(first.conds[0]!.cond.added, undefined);
  } finally {
    await sd.release();
    await Deno.remove(cacheDir, { recursive: true });
  }
});
