import assert from "node:assert/strict";
import { join } from "node:path";
import { TINY_SD15_UNET } from "../../tests/fixtures/configs.ts";
import { createRandomModel, TINY_MODELS } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { UsageError } from "../errors.ts";
import type { MaskImage } from "../image/mask.ts";
import { type Nchw, sampleLatent, scaleLatents } from "../models/vae.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";
import { conditionerFor } from "./conditioning.ts";
import { img2img } from "./generate.ts";
import { inpaint, type InpaintParams, prepareInpaint } from "./inpaint.ts";
import { batchGenerator, makeScheduler } from "./sampling.ts";
import { StableDiffusion } from "./stable_diffusion.ts";

const SIZE = 64;
const PROMPT = {
  prompt: "a red fox",
  negative: "",
  steps: 4,
  clipSkip: 1,
  promptSyntax: "a1111" as const,
  emphasis: "original" as const,
};

/** A smooth colour gradient, `[1, 3, 64, 64]` in [-1, 1]. */
function testImage(): Nchw {
  const plane = SIZE * SIZE;
  const data = new Float32Array(3 * plane);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const i = y * SIZE + x;
      data[i] = x / (SIZE - 1) * 2 - 1;
      data[plane + i] = y / (SIZE - 1) * 2 - 1;
      data[2 * plane + i] = Math.sin((x + y) / 9);
    }
  }
  return { data, dims: [1, 3, SIZE, SIZE] };
}

/** A mask that repaints the pixels where `inside(x, y)`. */
function makeMask(inside: (x: number, y: number) => boolean): MaskImage {
  const data = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) data[y * SIZE + x] = inside(x, y) ? 255 : 0;
  }
  return { width: SIZE, height: SIZE, data };
}

function params(overrides: Partial<InpaintParams>): InpaintParams {
  return {
    steps: 4,
    cfg: 7.5,
    seeds: [11n],
    rng: "cpu",
    conditioner: conditionerFor(PROMPT),
    image: testImage(),
    mask: makeMask((x) => x < 32),
    strength: 0.75,
    ...overrides,
  };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Diffusers' image latents: `scaling_factor * latent_dist.sample(generator)`, the first draw. */
async function expectedImageLatents(sd: StableDiffusion, seed: bigint): Promise<Float32Array> {
  const posterior = await sd.encode(testImage());
  const sample = sampleLatent(posterior, new TorchCpuGenerator(seed).randn([1, 4, 8, 8]));
  return scaleLatents({ data: sample, dims: [1, 4, 8, 8] }, sd.model.vae.config);
}

const tokenizerDir = await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" }));

async function withModel(
  unet: Record<string, unknown>,
  fn: (sd: StableDiffusion) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "denoise-inpaint-" });
  const dir = join(root, "model");
  await createRandomModel({ ...TINY_MODELS.sd15, unet }, dir, { seed: 5, tokenizerDir });
  const sd = await StableDiffusion.open(dir, { cacheDir: join(root, "cache"), threads: 2 });
  try {
    await fn(sd);
  } finally {
    await sd.release();
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("inpaint() with a 4-channel UNet: Diffusers' blend semantics", async (t) => {
  await withModel(TINY_SD15_UNET, async (sd) => {
    await t.step(
      "latents outside the mask equal the encoded image after the last step",
      async () => {
        const result = await inpaint(sd, params({}));
        assert.deepEqual(result.latents.dims, [1, 4, 8, 8]);
        const known = await expectedImageLatents(sd, 11n);
        let outside = 0;
        let inside = 0;
        for (let c = 0; c < 4; c++) {
          for (let i = 0; i < 64; i++) {
            const d = Math.abs(result.latents.data[c * 64 + i]! - known[c * 64 + i]!);
            // Latent column j reads pixel column 8j: the mask (x < 32) covers columns 0..3.
            if (i % 8 < 4) inside = Math.max(inside, d);
            else outside = Math.max(outside, d);
          }
        }
        assert.ok(outside < 1e-6, `outside the mask: maxdiff ${outside}`);
        assert.ok(inside > 1e-2, `inside the mask the latents were not repainted (${inside})`);
        assert.equal(result.images.length, 1);
        assert.deepEqual([result.images[0]!.width, result.images[0]!.height], [SIZE, SIZE]);
      },
    );

    await t.step("an all-white mask equals img2img for a deterministic sampler", async () => {
      const all = makeMask(() => true);
      for (const sampler of [undefined, "euler"]) {
        const a = await inpaint(sd, params({ mask: all, sampler, strength: 0.6 }));
        const b = await img2img(sd, { ...params({ sampler, strength: 0.6 }) });
        const d = maxAbsDiff(a.latents.data, b.latents.data);
        assert.equal(d, 0, `${sampler ?? "PNDM"}: maxdiff ${d}`);
      }
    });

    await t.step(
      "an ancestral sampler sees the masked-image draw (Diffusers' draw order)",
      async () => {
        // prepare_mask_latents samples the masked image's posterior even for 4-channel UNets, so
        // the ancestral noise that follows differs from img2img's.
        const all = makeMask(() => true);
        const a = await inpaint(sd, params({ mask: all, sampler: "euler-a", strength: 0.6 }));
        const b = await img2img(sd, params({ sampler: "euler-a", strength: 0.6 }));
        assert.ok(maxAbsDiff(a.latents.data, b.latents.data) > 1e-3);
      },
    );

    await t.step("an all-black mask keeps the encoded image everywhere", async () => {
      const result = await inpaint(sd, params({ mask: makeMask(() => false), strength: 1 }));
      const known = await expectedImageLatents(sd, 11n);
      const d = maxAbsDiff(result.latents.data, known);
      assert.ok(d < 1e-6, `maxdiff ${d}`);
    });

    await t.step("batches: image k is the image seed + k makes alone", async () => {
      const both = await inpaint(sd, params({ seeds: [11n, 12n] }));
      const second = await inpaint(sd, params({ seeds: [12n] }));
      const d = maxAbsDiff(both.latents.data.subarray(256), second.latents.data);
      assert.ok(d < 1e-5, `maxdiff ${d}`);
    });

    await t.step("mask blur pastes the original back outside the blurred mask", async () => {
      const blurred = await inpaint(sd, params({ maskBlur: 4 }));
      const image = blurred.images[0]!;
      // Far from the mask (x >= 48) the overlay mask is 0: the original pixels, exactly.
      const original = testImage().data;
      for (let y = 0; y < SIZE; y += 7) {
        for (let x = 48; x < SIZE; x++) {
          const want = Math.round(
            Math.fround(Math.fround(original[y * SIZE + x]! / 2) + 0.5) * 255,
          );
          assert.ok(Math.abs(image.data[(y * SIZE + x) * 3]! - want) <= 1, `pixel (${x}, ${y})`);
        }
      }
    });

    await t.step("a mask of another size is a usage error", async () => {
      const small: MaskImage = { width: 32, height: 32, data: new Uint8Array(32 * 32) };
      await assert.rejects(
        () => inpaint(sd, params({ mask: small })),
        (e: unknown) =>
          e instanceof UsageError && /mask is 32x32 but the image is 64x64/.test(e.message),
      );
    });
  });
});

Deno.test("inpaint() with a 9-channel inpainting UNet: cat(latents, mask, masked-image latents)", async (t) => {
  await withModel({ ...TINY_SD15_UNET, in_channels: 9 }, async (sd) => {
    assert.equal(sd.model.inpainting, true);

    await t.step(
      "prepareInpaint() draws noise first at strength 1, then the masked image",
      async () => {
        const p = params({ strength: 1 });
        const scheduler = makeScheduler(sd.model.schedulerConfig, undefined, undefined);
        const { startIndex } = scheduler.img2imgTimesteps(4, 1);
        const setup = await prepareInpaint(sd, p, {
          scheduler,
          rng: batchGenerator("cpu", [11n]),
          startIndex,
        });
        const gen = new TorchCpuGenerator(11n);
        // is_strength_max: latents = noise * init_noise_sigma, no image encode.
        const noise = gen.randn([1, 4, 8, 8]);
        const sigma = scheduler.initNoiseSigma;
        assert.equal(maxAbsDiff(setup.latents, noise.map((v) => Math.fround(v * sigma))), 0);
        // masked_image = image * (mask < 0.5), encoded with the second draw.
        const masked = testImage();
        for (let c = 0; c < 3; c++) {
          for (let i = 0; i < SIZE * SIZE; i++) {
            if (i % SIZE < 32) masked.data[c * SIZE * SIZE + i] = 0;
          }
        }
        const posterior = await sd.encode(masked);
        const maskedLatents = scaleLatents(
          { data: sampleLatent(posterior, gen.randn([1, 4, 8, 8])), dims: [1, 4, 8, 8] },
          sd.model.vae.config,
        );
        const extra = setup.extraChannels!;
        assert.equal(extra.channels, 5);
        const wantMask = Float32Array.from({ length: 64 }, (_, i) => (i % 8 < 4 ? 1 : 0));
        assert.deepEqual([...extra.data.subarray(0, 64)], [...wantMask]);
        const d = maxAbsDiff(extra.data.subarray(64), maskedLatents);
        assert.ok(d < 1e-6, `masked image latents: maxdiff ${d}`);
        assert.equal(setup.afterStep, undefined);
      },
    );

    await t.step(
      "prepareInpaint() at strength < 1 noises the image latents (first draw)",
      async () => {
        const scheduler = makeScheduler(sd.model.schedulerConfig, undefined, undefined);
        const { startIndex } = scheduler.img2imgTimesteps(4, 0.5);
        const setup = await prepareInpaint(sd, params({ strength: 0.5 }), {
          scheduler,
          rng: batchGenerator("cpu", [11n]),
          startIndex,
        });
        const known = await expectedImageLatents(sd, 11n);
        const gen = new TorchCpuGenerator(11n);
        gen.randn([1, 4, 8, 8]);
        const want = scheduler.addNoise(known, gen.randn([1, 4, 8, 8]), startIndex);
        const d = maxAbsDiff(setup.latents, want);
        assert.ok(d < 1e-6, `maxdiff ${d}`);
      },
    );

    await t.step("runs end to end, and the mask steers the result", async () => {
      const left = await inpaint(sd, params({ strength: 1 }));
      const right = await inpaint(sd, params({ strength: 1, mask: makeMask((x) => x >= 32) }));
      assert.deepEqual(left.latents.dims, [1, 4, 8, 8]);
      assert.ok(left.latents.data.every(Number.isFinite));
      assert.deepEqual([left.images[0]!.width, left.images[0]!.height], [SIZE, SIZE]);
      // Same seed, same initial noise: only the mask and masked-image channels differ.
      assert.ok(maxAbsDiff(left.latents.data, right.latents.data) > 1e-4);
      const again = await inpaint(sd, params({ strength: 1 }));
      assert.equal(maxAbsDiff(left.latents.data, again.latents.data), 0);
    });
  });
});
