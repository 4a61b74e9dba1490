import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { parseInfotext, summarizeInfotext } from "../meta/a1111.ts";
import { GenerateJob, Img2ImgJob } from "./diffusion.ts";
import {
  hiresUpscalerFromLabel,
  hiresUpscalerLabel,
  infotextFor,
  jobFromInfotext,
} from "./infotext.ts";
import { jobFromImage } from "./load.ts";

const CTX = {
  width: 512,
  height: 768,
  cfg: 6.5,
  schedulerClass: "PNDMScheduler",
  schedulerConfig: {},
  modelName: "sd15",
  version: "denoise 0.0.0",
};

function roundTrip(text: string) {
  const info = parseInfotext(text);
  return jobFromInfotext({ ...info, summary: summarizeInfotext(info.params) });
}

Deno.test("jobFromInfotext() inverts infotextFor() for generate, hires and img2img jobs", () => {
  const generate = GenerateJob.parse({
    command: "generate",
    prompt: "a fox, (snow:1.2)",
    negative: "blurry, lowres",
    steps: 25,
    sampler: "dpm++2m",
    schedule: "karras",
    seed: 1234,
    clipSkip: 2,
    rng: "nv",
    hiresScale: 2,
    hiresSteps: 10,
    hiresStrength: 0.45,
  });
  const back = GenerateJob.parse(roundTrip(infotextFor(generate, CTX)));
  assert.equal(back.prompt, generate.prompt);
  assert.equal(back.negative, generate.negative);
  assert.equal(back.steps, 25);
  assert.equal(back.cfg, 6.5);
  assert.equal(back.seed, 1234);
  assert.equal(back.clipSkip, 2);
  assert.equal(back.rng, "nv");
  assert.equal(back.sampler, "DPM++ 2M");
  assert.equal(back.schedule, "karras");
  assert.deepEqual([back.width, back.height], [512, 768]);
  assert.deepEqual([back.hiresScale, back.hiresSteps, back.hiresStrength], [2, 10, 0.45]);
  assert.equal(back.hiresUpscaler, "latent");

  const img2img = Img2ImgJob.parse({
    command: "img2img",
    prompt: "night",
    steps: 8,
    seed: 7,
    strength: 0.6,
    sampler: "euler-a",
  });
  const again = Img2ImgJob.parse(roundTrip(infotextFor({ ...img2img, strength: 0.6 }, CTX)));
  assert.equal(again.command, "img2img");
  assert.equal(again.strength, 0.6);
  const masked = Img2ImgJob.parse(
    roundTrip(infotextFor({ ...img2img, strength: 0.6, mask: "m.png", maskBlur: 6 }, CTX)),
  );
  assert.equal(masked.maskBlur, 6, "A1111's Mask blur comes back");
  assert.equal(again.sampler, "Euler a");
  // A1111's Size is img2img's output size too ("Resize to"): the input is brought to it.
  assert.deepEqual([again.width, again.height], [CTX.width, CTX.height]);
});

Deno.test("infotextFor() writes A1111's Only masked fields and jobFromInfotext() reads them", () => {
  const job = Img2ImgJob.parse({
    command: "img2img",
    prompt: "a hat",
    strength: 0.9,
    mask: "hat.png",
    maskBlur: 4,
    inpaintFullRes: true,
    inpaintFullResPadding: 48,
  });
  const text = infotextFor({ ...job, strength: 0.9 }, CTX);
  assert.match(text, /Mask blur: 4, Inpaint area: Only masked, Masked area padding: 48,/);
  const back = Img2ImgJob.parse(roundTrip(text));
  assert.deepEqual([back.inpaintFullRes, back.inpaintFullResPadding], [true, 48]);
  // Whole-image inpainting and plain img2img write neither field.
  const whole = infotextFor({ ...job, inpaintFullRes: false, strength: 0.9 }, CTX);
  assert.doesNotMatch(whole, /Inpaint area|Masked area padding/);
  assert.equal(Img2ImgJob.parse(roundTrip(whole)).inpaintFullRes, false);
});

Deno.test({
  name: "jobFromImage() rebuilds A1111 jobs from PNG text and JPEG EXIF (real A1111 files)",
  ignore: !hasShared,
  fn: async () => {
    const png = jobFromImage(
      await Deno.readFile(sharedPath("fixtures/real/a1111/a1111_v1.10.1_hires_fix.png")),
    )!;
    const job = GenerateJob.parse(png);
    assert.equal(job.seed, 3888671826);
    assert.equal(job.sampler, "DPM++ 2M");
    assert.equal(job.schedule, "karras");
    assert.equal(job.hiresScale, 1.5);
    const jpg = jobFromImage(
      await Deno.readFile(sharedPath("fixtures/real/a1111/a1111_v1.10.1_usercomment.jpg")),
    )!;
    assert.equal(GenerateJob.parse(jpg).cfg, 5.5);
    const i2i = jobFromImage(
      await Deno.readFile(sharedPath("fixtures/real/a1111/a1111_v1.6.0_lora_hashes_img2img.png")),
    )!;
    assert.equal(Img2ImgJob.parse(i2i).strength, 0.75);
    assert.equal(jobFromImage(new Uint8Array([1, 2, 3])), undefined);
  },
});

Deno.test("Hires upscaler: Latent, Lanczos, or an ESRGAN-family model's name, and back", () => {
  assert.equal(hiresUpscalerLabel("latent"), "Latent");
  assert.equal(hiresUpscalerLabel("lanczos"), "Lanczos");
  assert.equal(hiresUpscalerLabel("/models/4x-UltraSharp.pth"), "4x-UltraSharp");
  assert.equal(hiresUpscalerLabel("realesrgan-x4plus"), "realesrgan-x4plus");
  for (
    const [label, value] of [
      ["Latent", "latent"],
      ["Latent (nearest-exact)", "latent"],
      ["Lanczos", "lanczos"],
      ["None", "lanczos"],
      ["R-ESRGAN 4x+", "realesrgan-x4plus"],
      ["R-ESRGAN 4x+ Anime6B", "realesrgan-x4plus-anime-6b"],
      ["4x-UltraSharp", "4x-UltraSharp"],
    ]
  ) {
    assert.equal(hiresUpscalerFromLabel(label!), value, label);
  }
  const job = roundTrip(
    "a cat\nSteps: 20, Seed: 1, Size: 512x512, Hires upscale: 2, " +
      "Hires upscaler: R-ESRGAN 4x+, Denoising strength: 0.5",
  );
  assert.equal(job.hiresUpscaler, "realesrgan-x4plus");
  assert.equal(job.hiresScale, 2);
});
