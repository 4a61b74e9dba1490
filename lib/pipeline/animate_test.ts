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
