import assert from "node:assert/strict";
import { join } from "node:path";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { writeTinyUpscaler } from "../../tests/fixtures/upscaler.ts";
import { InputError, UsageError } from "../errors.ts";
import { type FloatImage, resizeFloatImage } from "../image/codec.ts";
import { UpscaleJob } from "../job/upscale.ts";
import { parseInfotext } from "../meta/a1111.ts";
import { rrdbNetConfig } from "../models/esrgan.ts";
import type { RunEnvironment } from "../pipeline/resolve.ts";
import { passSizes, QUALITY_PROMPT } from "./img2img_upscale.ts";
import { postprocessInfotext } from "./modes.ts";
import { runUpscale } from "./run.ts";
import { testImage } from "./testing.ts";

const ROOT = await Deno.makeTempDir({ prefix: "denoise-upscale-run-" });
const ENV: RunEnvironment = { cacheDir: join(ROOT, "cache"), threads: 2, version: "test" };
const MODEL = await writeTinyUpscaler(
  join(ROOT, "tiny.safetensors"),
  rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 }),
  3,
);

function image(channels: FloatImage["channels"], bitDepth: 8 | 16, w = 20, h = 14): FloatImage {
  return { width: w, height: h, channels, bitDepth, data: testImage(w, h, channels).data };
}

function job(fields: Record<string, unknown>) {
  return UpscaleJob.parse({ command: "upscale", ...fields });
}

Deno.test("runUpscale() keeps every layout in the esrgan and lanczos modes", async () => {
  for (const channels of [1, 2, 3, 4] as const) {
    for (const bitDepth of [8, 16] as const) {
      const input = image(channels, bitDepth);
      for (const [fields, scale] of [[{ model: MODEL }, 4], [{ scale: 1.5 }, 1.5]] as const) {
        const { image: out, job: stored } = await runUpscale(ENV, job(fields), { image: input });
        const what = `${channels} channels, ${bitDepth} bits, ${stored.mode}`;
        assert.deepEqual(
          [out.width, out.height, out.channels, out.bitDepth],
          [Math.floor(20 * scale), Math.floor(14 * scale), channels, bitDepth],
          what,
        );
        assert.ok(out.data.every((v) => v >= 0 && v <= 1), what);
        assert.equal(stored.scale, scale);
      }
    }
  }
});

Deno.test("runUpscale() stores the input's Job under source and appends Extras fields", async () => {
  const source = { command: "generate", version: 1, prompt: "a fox", seed: 7 };
  const infotext = parseInfotext("a fox\nSteps: 20, Sampler: Euler, Seed: 7, Size: 20x14");
  const out = await runUpscale(ENV, job({ model: MODEL, tile: 16, tileOverlap: 4 }), {
    image: image(3, 8),
    job: source,
    infotext,
  });
  assert.deepEqual(out.job.source, source);
  assert.deepEqual(
    Object.keys(out.job),
    ["command", "version", "model", "mode", "scale", "tile", "tileOverlap", "source"],
  );
  assert.ok(out.tiles > 1);
  const back = parseInfotext(out.infotext!);
  assert.equal(back.prompt, "a fox");
  assert.equal(back.params["Seed"], "7");
  assert.equal(back.params["Postprocess upscale by"], "4");
  assert.equal(back.params["Postprocess upscaler"], "tiny");
  assert.equal(back.params["Postprocess upscale to"], "80x56");
  // A source in the --job document is replaced by the input's (here: none).
  const replay = await runUpscale(ENV, job({ scale: 2, source: { command: "old" } }), {
    image: image(3, 8),
  });
  assert.equal(replay.job.source, undefined);
});

Deno.test("runUpscale() refuses outputs over the pixel limit before opening any model", async () => {
  const notAModel = join(ROOT, "empty-model-folder");
  await Deno.mkdir(notAModel, { recursive: true });
  for (const fields of [{ scale: 60 }, { model: MODEL, scale: 8 }, { model: notAModel }]) {
    await assert.rejects(
      () => runUpscale(ENV, job(fields), { image: image(3, 8) }, { maxPixels: 500 }),
      (e: unknown) => e instanceof InputError && /over the limit of 500/.test(e.message),
      JSON.stringify(fields),
    );
  }
});

Deno.test("runUpscale() refuses a mode that does not fit the model", async () => {
  await assert.rejects(
    () => runUpscale(ENV, job({ mode: "img2img", model: MODEL }), { image: image(3, 8) }),
    (e: unknown) =>
      e instanceof UsageError && /--mode img2img cannot run with an ESRGAN/.test(e.message),
  );
  await assert.rejects(
    () => runUpscale(ENV, job({ mode: "esrgan" }), { image: image(3, 8) }),
    (e: unknown) => e instanceof UsageError && /with no model/.test(e.message),
  );
  // Options of another mode would be ignored: refused instead.
  await assert.rejects(
    () =>
      runUpscale(ENV, job({ model: MODEL, strength: 0.5, qualityPrompt: true }), {
        image: image(3, 8),
      }),
    (e: unknown) =>
      e instanceof UsageError &&
      /--quality-prompt, --strength do not apply to --mode esrgan/.test(e.message),
  );
  await assert.rejects(
    () => runUpscale(ENV, job({ scale: 2, tile: 64 }), { image: image(3, 8) }),
    (e: unknown) =>
      e instanceof UsageError && /--tile does not apply to --mode lanczos/.test(e.message),
  );
  // A tile the overlap does not fit in.
  await assert.rejects(
    () => runUpscale(ENV, job({ model: MODEL, tile: 16 }), { image: image(3, 8, 40, 30) }),
    (e: unknown) => e instanceof UsageError && /cannot overlap/.test(e.message),
  );
});

Deno.test("runUpscale() img2img mode: grey + alpha 16-bit in two passes, prompt from the source", async () => {
  const tok = await writeByteTokenizer(join(ROOT, "tok"));
  const sd = await makeTinyModel("sd15", { seed: 6, tokenizerDir: tok });
  try {
    const input = image(2, 16, 32, 24);
    const source = {
      command: "upscale",
      mode: "esrgan",
      source: { command: "generate", prompt: "a castle", negative: "fog" },
    };
    const out = await runUpscale(
      ENV,
      job({
        model: sd,
        scale: 2.5,
        passes: 2,
        steps: 4,
        strength: 0.5,
        seed: 3,
        qualityPrompt: true,
      }),
      { image: input, job: source },
    );
    // Sizes: 32 x 2.5^(1/2) = 50 -> 48, then 80 (24 -> 37 -> 32, then 60 -> 56).
    assert.deepEqual(passSizes(32, 24, 2.5, 2, 8).map((s) => [s.width, s.height]), [[48, 32], [
      80,
      56,
    ]]);
    assert.deepEqual(
      [out.image.width, out.image.height, out.image.channels, out.image.bitDepth],
      [80, 56, 2, 16],
    );
    // Alpha is the input's, resized with Lanczos.
    const plane = 24 * 32;
    const alpha = await resizeFloatImage(
      { ...input, channels: 1, data: input.data.subarray(plane, 2 * plane) },
      80,
      56,
      { kernel: "lanczos3" },
    );
    assert.deepEqual(out.image.data.subarray(80 * 56), alpha.data);
    const stored = out.job;
    assert.equal(stored.mode, "img2img");
    assert.equal(stored.prompt, "a castle");
    assert.equal(stored.negative, "fog");
    assert.equal(stored.passes, 2);
    assert.equal(stored.cfg, 8);
    assert.deepEqual(stored.source, source);
    const info = parseInfotext(out.infotext!);
    assert.equal(info.prompt, QUALITY_PROMPT + "a castle");
    assert.equal(info.negativePrompt, "fog");
    assert.equal(info.params["Size"], "80x56");
    assert.equal(info.params["SD upscale passes"], "2");
    // The same Job again: the same pixels.
    const again = await runUpscale(ENV, stored, { image: input, job: source });
    assert.deepEqual(again.image.data, out.image.data);
  } finally {
    await Deno.remove(sd, { recursive: true });
  }
});

Deno.test("postprocessInfotext() keeps the input's text and adds A1111's Extras fields", () => {
  const text = postprocessInfotext(
    parseInfotext("a cat\nNegative prompt: dog\nSteps: 5, Seed: 1"),
    {
      scale: 2,
      upscaler: "RealESRGAN_x4plus",
      width: 10,
      height: 8,
    },
  );
  assert.equal(
    text,
    "a cat\nNegative prompt: dog\nSteps: 5, Seed: 1, Postprocess upscale by: 2, " +
      "Postprocess upscaler: RealESRGAN_x4plus, Postprocess upscale to: 10x8",
  );
});
