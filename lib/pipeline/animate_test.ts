import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { assertClose, type GoldenArray, readModelReference } from "../../tests/fixtures/golden.ts";
import { animateVideo } from "./animate.ts";
import { conditionerFor } from "./conditioning.ts";
import { openMotionModule, registerMotionUnet } from "./motion_unet.ts";
import { sharedConditioning } from "./prompt_travel.ts";
import { StableDiffusion } from "./stable_diffusion.ts";

interface Reference {
  runs: Array<{ tag: string; latents: GoldenArray }>;
}

const PROMPT = {
  prompt: "a photo of a cat",
  negative: "",
  steps: 4,
  clipSkip: 1,
  promptSyntax: "a1111" as const,
  emphasis: "original" as const,
};

Deno.test({
  name:
    "animateVideo() matches Diffusers' AnimateDiffPipeline (PNDM, 8 frames): latents 1e-3, frames 1/255",
  ignore: !hasShared,
  fn: async () => {
    const ref = readModelReference<Reference>("tiny_sd_animatediff").runs.find((r) =>
      r.tag === "pndm"
    )!;
    const cacheDir = await Deno.makeTempDir({ prefix: "denoise-animate-" });
    const sd = await StableDiffusion.open(sharedPath("golden/models/tiny_sd/pipeline"), {
      cacheDir,
      threads: 2,
    });
    using motion = await openMotionModule(
      sharedPath("golden/models/tiny_sd_animatediff/motion_adapter"),
      sd.model.unet.config,
    );
    try {
      await registerMotionUnet(sd, motion);
      const conditioner = conditionerFor(PROMPT);
      const result = await animateVideo(sd, {
        steps: 4,
        cfg: 7.5,
        seed: 0n,
        rng: "cpu",
        width: 128,
        height: 128,
        frames: 8,
        motion: motion.config,
        conditioner: async (s, sch, size) => sharedConditioning(await conditioner(s, sch, size)),
      });
      assert.deepEqual(result.latents.dims, ref.latents.shape);
      assertClose(result.latents.data, ref.latents.values, 1e-3, "AnimateDiff PNDM latents");
      let worst = 0;
      for (const [k, frame] of result.frames.entries()) {
        const png = join(
          sharedPath("golden/models/tiny_sd_animatediff/frames_pndm"),
          `frame_${String(k).padStart(2, "0")}.png`,
        );
        const { data } = await sharp(await Deno.readFile(png)).removeAlpha().raw().toBuffer({
          resolveWithObject: true,
        });
        for (let i = 0; i < data.length; i++) {
          worst = Math.max(worst, Math.abs(data[i]! - frame.data[i]!));
        }
      }
      console.log(`AnimateDiff PNDM frames: maxdiff ${worst}/255`);
      assert.ok(worst <= 1, `frames maxdiff ${worst} > 1`);
    } finally {
      await sd.release();
    }
  },
});

Deno.test("animateVideo() runs every sampler on video latents (tiny random model, 3 frames)", async () => {
  const { makeTinyModel } = await import("../../tests/fixtures/random_model.ts");
  const { writeByteTokenizer } = await import("../../tests/fixtures/tokenizer.ts");
  const { createRandomMotionAdapter } = await import("../models/random_motion.ts");
  const { samplerTable } = await import("../schedulers/mod.ts");
  const dir = await makeTinyModel("sd15", {
    seed: 1,
    tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" })),
  });
  const adapter = join(await Deno.makeTempDir({ prefix: "denoise-mm-" }), "mm");
  await createRandomMotionAdapter({
    block_out_channels: [32, 32, 32, 64],
    motion_layers_per_block: 1,
    motion_max_seq_length: 8,
  }, adapter);
  const sd = await StableDiffusion.open(dir, {
    cacheDir: await Deno.makeTempDir({ prefix: "denoise-animate-" }),
    threads: 2,
  });
  using motion = await openMotionModule(adapter, sd.model.unet.config);
  try {
    await registerMotionUnet(sd, motion);
    const conditioner = conditionerFor({ ...PROMPT, prompt: "a fox", steps: 2 });
    const names = [...new Set(samplerTable().map((r) => r.sampler))];
    assert.ok(names.length >= 15, names.join());
    for (const sampler of names) {
      const result = await animateVideo(sd, {
        steps: 2,
        cfg: 3,
        sampler,
        seed: 7n,
        rng: "cpu",
        width: 32,
        height: 32,
        frames: 3,
        motion: motion.config,
        conditioner: async (s, sch, size) => sharedConditioning(await conditioner(s, sch, size)),
      });
      assert.deepEqual(result.latents.dims, [1, 4, 3, 4, 4], sampler);
      assert.ok(result.latents.data.every(Number.isFinite), `${sampler}: finite latents`);
      assert.equal(result.frames.length, 3);
    }
  } finally {
    await sd.release();
  }
});

Deno.test("animateVideo() on an SDXL-shaped model: pooled text_embeds and time_ids per clip and per frame (prompt travel)", async () => {
  const { makeTinyModel } = await import("../../tests/fixtures/random_model.ts");
  const { writeByteTokenizer } = await import("../../tests/fixtures/tokenizer.ts");
  const { createRandomMotionAdapter } = await import("../models/random_motion.ts");
  const { travelConditioning } = await import("./prompt_travel.ts");
  const dir = await makeTinyModel("sdxl", {
    seed: 2,
    tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" })),
  });
  const adapter = join(await Deno.makeTempDir({ prefix: "denoise-mm-" }), "mm_xl");
  await createRandomMotionAdapter({
    block_out_channels: [32, 64, 64],
    motion_layers_per_block: 2,
    use_motion_mid_block: false,
    motion_max_seq_length: 8,
  }, adapter);
  const sd = await StableDiffusion.open(dir, {
    cacheDir: await Deno.makeTempDir({ prefix: "denoise-animate-" }),
    threads: 2,
  });
  using motion = await openMotionModule(adapter, sd.model.unet.config);
  try {
    await registerMotionUnet(sd, motion);
    const base = { ...PROMPT, steps: 2 };
    const run = (conditioner: Parameters<typeof animateVideo>[1]["conditioner"]) =>
      animateVideo(sd, {
        steps: 2,
        cfg: 5,
        sampler: "euler",
        seed: 3n,
        rng: "cpu",
        width: 32,
        height: 32,
        frames: 4,
        motion: motion.config,
        conditioner,
      });
    const plain = conditionerFor({ ...base, prompt: "a fox" });
    const a = await run(async (s, sch, size) => sharedConditioning(await plain(s, sch, size)));
    const other = conditionerFor({ ...base, prompt: "a bird" });
    const travel = await run(async (s, sch, size) =>
      travelConditioning([0, 3], [await plain(s, sch, size), await other(s, sch, size)], 4)
    );
    assert.ok(a.latents.data.every(Number.isFinite));
    assert.ok(travel.latents.data.every(Number.isFinite));
    assert.ok(
      a.latents.data.some((v, i) => v !== travel.latents.data[i]),
      "travel changes the clip",
    );
  } finally {
    await sd.release();
  }
});
