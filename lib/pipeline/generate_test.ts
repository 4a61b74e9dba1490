import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { decodeImage, imageToTensor } from "../image/codec.ts";
import { conditionerFor } from "./conditioning.ts";
import { img2img, txt2img } from "./generate.ts";
import { StableDiffusion } from "./stable_diffusion.ts";

interface Run {
  scheduler: string;
  latents: { shape: number[]; values: number[] };
}
interface Reference {
  txt2img: Run[];
  img2img: Run;
}

const PROMPT = {
  prompt: "a photo of a cat",
  negative: "",
  steps: 4,
  clipSkip: 1,
  promptSyntax: "a1111" as const,
  emphasis: "original" as const,
};

function maxDiff(a: Float32Array, b: number[]): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// Golden: ../shared/golden/models/tiny_dummy/reference.json, Diffusers 0.27 pipeline runs.
// Suggested tolerance for 4-step pipeline latents: about 1e-3 absolute.
Deno.test({
  name: "txt2img() and img2img() final latents match Diffusers within 1e-3 (tiny_dummy)",
  ignore: !hasShared,
  fn: async () => {
    const ref = readSharedJson<Reference>("golden/models/tiny_dummy/reference.json");
    const cacheDir = await Deno.makeTempDir();
    const sd = await StableDiffusion.open(sharedPath("golden/models/tiny_dummy/pipeline"), {
      cacheDir,
      threads: 1,
    });
    try {
      const samplers: Record<string, string | undefined> = {
        DDIMScheduler: undefined,
        EulerDiscreteScheduler: "EulerDiscreteScheduler",
        DPMSolverMultistepScheduler: "DPMSolverMultistepScheduler",
      };
      for (const run of ref.txt2img) {
        const result = await txt2img(sd, {
          steps: 4,
          cfg: 7.5,
          sampler: samplers[run.scheduler],
          seeds: [0n],
          rng: "cpu",
          width: 64,
          height: 64,
          conditioner: conditionerFor(PROMPT),
        });
        assert.deepEqual(result.latents.dims, run.latents.shape);
        const diff = maxDiff(result.latents.data, run.latents.values);
        assert.ok(diff < 1e-3, `${run.scheduler}: maxdiff ${diff}`);
      }
      const png = await Deno.readFile(
        join(sharedPath("golden/models/tiny_dummy"), "img2img_input.png"),
      );
      const raw = await decodeImage(png);
      const result = await img2img(sd, {
        steps: 4,
        cfg: 7.5,
        seeds: [0n],
        rng: "cpu",
        strength: 0.6,
        image: { data: imageToTensor(raw), dims: [1, 3, raw.height, raw.width] },
        conditioner: conditionerFor(PROMPT),
      });
      const diff = maxDiff(result.latents.data, ref.img2img.latents.values);
      assert.ok(diff < 1e-3, `img2img: maxdiff ${diff}`);
    } finally {
      await sd.release();
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "txt2img() frees the text encoder after conditioning when asked (its last use)",
  ignore: !hasShared,
  fn: async () => {
    const cacheDir = await Deno.makeTempDir();
    const sd = await StableDiffusion.open(sharedPath("golden/models/tiny_dummy/pipeline"), {
      cacheDir,
      threads: 1,
    });
    try {
      const params = {
        steps: 2,
        cfg: 7.5,
        seeds: [0n],
        rng: "cpu" as const,
        width: 64,
        height: 64,
        conditioner: conditionerFor(PROMPT),
      };
      await txt2img(sd, params);
      assert.ok(sd.openSessions().includes("text_encoder"), "kept by default");
      await txt2img(sd, { ...params, releaseTextEncoders: true });
      assert.ok(!sd.openSessions().includes("text_encoder"), "released after its last use");
      assert.ok(sd.openSessions().includes("unet"));
    } finally {
      await sd.release();
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
});
