import assert from "node:assert/strict";
import { join } from "node:path";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { tensorToImage } from "../image/codec.ts";
import type { Nchw } from "../models/vae.ts";
import { planTiles } from "../image/tiles.ts";
import { conditionerFor } from "./conditioning.ts";
import { type DiffusionParams, img2img } from "./generate.ts";
import type { UnetCall } from "./denoise.ts";
import { multiDiffusionUnet } from "./multidiffusion.ts";
import { StableDiffusion } from "./stable_diffusion.ts";
import { tileGridMultiple, upscaleImg2Img } from "./upscale_img2img.ts";

/** A smooth test picture with some detail, `[1, 3, H, W]` in [-1, 1]. */
function picture(width: number, height: number): Nchw {
  const data = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        data[(c * height + y) * width + x] = 0.8 *
          Math.sin(x / (7 + c) + y / 11) * Math.cos(y / (5 + 2 * c) - x / 23);
      }
    }
  }
  return { data, dims: [1, 3, height, width] };
}

function params(): DiffusionParams {
  return {
    steps: 8,
    cfg: 7.5,
    seeds: [5n],
    rng: "cpu",
    sampler: "euler-a",
    conditioner: conditionerFor({
      prompt: "a detailed photo",
      negative: "blurry",
      steps: 8,
      clipSkip: 1,
      promptSyntax: "a1111",
      emphasis: "original",
    }),
  };
}

/** Mean |a - b| and max |a - b| in 8-bit levels over all pixels of two images. */
function levels(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    max = Math.max(max, d);
  }
  return { mean: sum / a.length, max };
}

/**
 * Seams, measured: the column profile of the difference between a tiled result and the one-tile
 * result (the mean over rows and channels of tiled - whole at each column, in `unit`s: 8-bit
 * levels by default, 255/2 per unit of [-1, 1]). Each tile's result differs from the one-tile result by a tone of its own
 * (a UNet's group norms and attention see the tile, not the image); a hard cut between two tiles
 * makes the difference step at the cut, a blend ramps it across the overlap. Returns the largest
 * jump between neighbouring columns at the cuts and anywhere else.
 */
function seamJumps(
  tiled: Float32Array,
  whole: Float32Array,
  width: number,
  height: number,
  cuts: number[],
  unit = 127.5,
): { atCuts: number; elsewhere: number } {
  const profile = new Float64Array(width);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const row = (c * height + y) * width;
      for (let x = 0; x < width; x++) {
        profile[x] = profile[x]! + (unit * (tiled[row + x]! - whole[row + x]!)) / (3 * height);
      }
    }
  }
  let atCuts = 0;
  let elsewhere = 0;
  for (let x = 1; x < width; x++) {
    const jump = Math.abs(profile[x]! - profile[x - 1]!);
    if (cuts.includes(x)) atCuts = Math.max(atCuts, jump);
    else elsewhere = Math.max(elsewhere, jump);
  }
  return { atCuts, elsewhere };
}

/** The columns (pixels) where tiles of `tile` latents start or end inside a `width` image. */
function cutColumns(width: number, tile: number, overlap: number, multiple: number): number[] {
  const grid = planTiles(width / 8, 8, { tile, overlap, margin: 0, multiple });
  return [...new Set(grid.columns.spans.flatMap((s) => [s.start, s.end]))]
    .filter((x) => x > 0 && x < width / 8).map((x) => x * 8);
}

Deno.test("upscaleImg2Img() on a tiny model", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "denoise-upscale-img2img-" });
  const tokenizerDir = await writeByteTokenizer(join(root, "tok"));
  const dir = await makeTinyModel("sd15", { seed: 4, tokenizerDir });
  const sd = await StableDiffusion.open(dir, { cacheDir: join(root, "cache"), threads: 2 });
  try {
    await t.step(
      "a latent that fits one tile gives exactly img2img's latents and image",
      async () => {
        const image = picture(64, 48);
        const plain = await img2img(sd, { ...params(), image, strength: 0.5 });
        const up = await upscaleImg2Img(sd, { ...params(), image, strength: 0.5 });
        assert.equal(up.tiles, 1);
        assert.equal(up.vaeTiled, false);
        assert.deepEqual(up.latents.dims, plain.latents.dims);
        assert.deepEqual(up.latents.data, plain.latents.data);
        assert.deepEqual(tensorToImage(up.pixels.data, 64, 48).data, plain.images[0]!.data);
      },
    );

    await t.step(
      "tiles smaller than the latent: no seam, small difference from one tile",
      async () => {
        // 192x192 pixels = a 24x24 latent; the tiny UNet's native size is 64 pixels.
        const [w, h] = [192, 192];
        const image = picture(w, h);
        const base = { ...params(), image, strength: 0.5 };
        const whole = await upscaleImg2Img(sd, { ...base, tile: 0 });
        const tiled = await upscaleImg2Img(sd, { ...base, tile: 96, overlap: 32 });
        // Hard cuts for comparison: two by two tiles of 96 pixels side by side, no overlap.
        const hard = await upscaleImg2Img(sd, {
          ...base,
          tile: 0,
          unetWrapper: (unet) => multiDiffusionUnet(unet, { tile: 12, overlap: 0 }),
        });
        assert.equal(whole.tiles, 1);
        assert.ok(tiled.tiles >= 4, `${tiled.tiles} tiles`);
        const cuts = cutColumns(w, 12, 4, tileGridMultiple(8, 12, 4));
        const toImage = (r: typeof whole) => tensorToImage(r.pixels.data, w, h).data;
        const diff = levels(toImage(tiled), toImage(whole));
        const hardDiff = levels(toImage(hard), toImage(whole));
        const seams = seamJumps(tiled.pixels.data, whole.pixels.data, w, h, cuts);
        const hardSeams = seamJumps(hard.pixels.data, whole.pixels.data, w, h, [96]);
        console.log(
          `tiny random SD 1.5, 192x192, tiles of 96 px overlapping by 32 (${tiled.tiles} tiles) ` +
            `vs one tile: mean ${diff.mean.toFixed(2)} / max ${diff.max} levels; column jump ` +
            `${seams.atCuts.toFixed(2)} levels at the cuts (${cuts}), ` +
            `${seams.elsewhere.toFixed(2)} elsewhere. Hard cuts (no overlap): mean ` +
            `${hardDiff.mean.toFixed(2)} / max ${hardDiff.max}; jump ${
              hardSeams.atCuts.toFixed(2)
            } ` +
            `at 96, ${hardSeams.elsewhere.toFixed(2)} elsewhere`,
        );
        // A random model's output is noise, so this only shows that nothing breaks at the cuts;
        // the synthetic denoiser below measures the seam itself.
        assert.ok(Number.isFinite(diff.mean) && seams.atCuts <= seams.elsewhere * 2);
      },
    );

    await t.step(
      "a denoiser whose output depends on the whole tile: seams only without overlap",
      async () => {
        // A stand-in UNet with the property that makes tiles disagree in real models (group norms
        // and attention see the whole input): its prediction is the input's mean over the tile,
        // per channel, plus a local part. Everything else (scheduler, noise, VAE) is the pipeline's.
        const tone: UnetCall = (x) => {
          const [b, c, hh, ww] = x.sampleShape;
          const plane = hh * ww;
          const out = new Float32Array(x.sample.length);
          for (let p = 0; p < b * c; p++) {
            let mean = 0;
            for (let i = 0; i < plane; i++) mean += x.sample[p * plane + i]!;
            mean /= plane;
            for (let i = 0; i < plane; i++) {
              out[p * plane + i] = 0.8 * mean + 0.2 * x.sample[p * plane + i]!;
            }
          }
          return Promise.resolve(out);
        };
        const [w, h] = [192, 192];
        const image = picture(w, h);
        const base = { ...params(), image, strength: 0.5, unetWrapper: () => tone };
        const whole = await upscaleImg2Img(sd, { ...base, tile: 0 });
        const tiled = await upscaleImg2Img(sd, { ...base, tile: 96, overlap: 32 });
        const hard = await upscaleImg2Img(sd, {
          ...base,
          tile: 0,
          unetWrapper: () => multiDiffusionUnet(tone, { tile: 12, overlap: 0 }),
        });
        const cuts = cutColumns(w, 12, 4, tileGridMultiple(8, 12, 4));
        const seams = seamJumps(tiled.pixels.data, whole.pixels.data, w, h, cuts);
        const hardSeams = seamJumps(hard.pixels.data, whole.pixels.data, w, h, [96]);
        // The same in latent space, where the tiles are (8 pixels per latent column).
        const lw = w / 8;
        const latentSeams = seamJumps(
          tiled.latents.data.subarray(0, 3 * lw * lw),
          whole.latents.data.subarray(0, 3 * lw * lw),
          lw,
          lw,
          cuts.map((x) => x / 8),
          1,
        );
        const hardLatent = seamJumps(
          hard.latents.data.subarray(0, 3 * lw * lw),
          whole.latents.data.subarray(0, 3 * lw * lw),
          lw,
          lw,
          [12],
          1,
        );
        console.log(
          `tile-mean denoiser, 192x192: blended tiles (96 px, 32 overlap): column jump ` +
            `${latentSeams.atCuts.toFixed(4)} at the cuts, ${latentSeams.elsewhere.toFixed(4)} ` +
            `elsewhere in the latents (pixels: ${seams.atCuts.toFixed(2)} / ` +
            `${seams.elsewhere.toFixed(2)} levels); hard cuts: ${
              hardLatent.atCuts.toFixed(4)
            } at ` +
            `the cut, ${hardLatent.elsewhere.toFixed(4)} elsewhere (pixels: ` +
            `${hardSeams.atCuts.toFixed(2)} / ${hardSeams.elsewhere.toFixed(2)} levels)`,
        );
        // Hard cuts step at the cut and nowhere else; blended tiles step nowhere like that. (The
        // tiny random VAE decoder scrambles these smooth latent tones, so the pixel figures are
        // printed, not checked.)
        assert.ok(hardLatent.atCuts > 10 * hardLatent.elsewhere, "the hard cut must show a seam");
        const worst = Math.max(latentSeams.atCuts, latentSeams.elsewhere);
        assert.ok(worst < hardLatent.atCuts / 4, `blended jump ${worst} vs ${hardLatent.atCuts}`);
      },
    );
  } finally {
    await sd.release();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("tileGridMultiple() keeps tiles on the UNet's grid without duplicates", () => {
  assert.equal(tileGridMultiple(8, 64, 16), 8);
  assert.equal(tileGridMultiple(8, 128, 32), 8);
  assert.equal(tileGridMultiple(8, 12, 4), 2);
  assert.equal(tileGridMultiple(1, 12, 4), 1);
  for (const [tile, overlap] of [[16, 4], [12, 4], [64, 16], [20, 8]] as const) {
    const m = tileGridMultiple(8, tile, overlap);
    for (const length of [tile + 1, 2 * tile, 3 * tile + 5, 10 * tile]) {
      const spans = planTiles(length, 1, { tile, overlap, margin: 0, multiple: m }).columns.spans;
      const keys = spans.map((s) => `${s.start}-${s.end}`);
      assert.equal(new Set(keys).size, keys.length, `tile ${tile} length ${length}: ${keys}`);
      assert.ok(spans.every((s) => s.start % m === 0));
    }
  }
});
