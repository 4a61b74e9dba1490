import assert from "node:assert/strict";
import { join } from "node:path";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { TINY_SD15_UNET } from "../../tests/fixtures/configs.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { planTiles } from "../image/tiles.ts";
import { createRandomControlnet } from "../models/random.ts";
import type { Nchw } from "../models/vae.ts";
import { conditionerFor } from "../pipeline/conditioning.ts";
import { ControlnetOpener } from "../pipeline/controlnet.ts";
import { controlnetTileHooks } from "../pipeline/controlnet_hook.ts";
import type { UnetCall } from "../pipeline/denoise.ts";
import type { DiffusionParams } from "../pipeline/generate.ts";
import { multiDiffusionUnet } from "../pipeline/multidiffusion.ts";
import { StableDiffusion } from "../pipeline/stable_diffusion.ts";
import { tileGridMultiple, upscaleImg2Img } from "../pipeline/upscale_img2img.ts";

/** A smooth picture, `[1, 3, H, W]` in [-1, 1], and the same as a control image in [0, 1]. */
function picture(width: number, height: number): { image: Nchw; control: Float32Array } {
  const data = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        data[(c * height + y) * width + x] = 0.8 *
          Math.sin(x / (7 + c) + y / 11) * Math.cos(y / (5 + 2 * c) - x / 23);
      }
    }
  }
  return { image: { data, dims: [1, 3, height, width] }, control: data.map((v) => (v + 1) / 2) };
}

/** The largest jump between neighbouring columns of the mean of `a - b`, at cuts and elsewhere. */
function columnJumps(
  a: Float32Array,
  b: Float32Array,
  [channels, height, width]: [number, number, number],
  cuts: number[],
): { atCuts: number; elsewhere: number } {
  const profile = new Float64Array(width);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (c * height + y) * width + x;
        profile[x] = profile[x]! + (a[i]! - b[i]!) / (channels * height);
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

Deno.test("ControlNet tile in MultiDiffusion tiles: the net's per-tile residuals leave no seam", async () => {
  const root = await Deno.makeTempDir({ prefix: "denoise-cntile-lib-" });
  const tokenizerDir = await writeByteTokenizer(join(root, "tok"));
  const dir = await makeTinyModel("sd15", { seed: 4, tokenizerDir });
  const { sample_size: _s, ...unetJson } = TINY_SD15_UNET;
  const netDir = join(root, "net");
  await createRandomControlnet(
    { ...unetJson, conditioning_embedding_out_channels: [8, 16, 16, 32] },
    netDir,
    { seed: 7 },
  );
  const sd = await StableDiffusion.open(dir, { cacheDir: join(root, "cache"), threads: 2 });
  try {
    // 192x192 pixels, a 24x24 latent; tiles of 96 pixels (12 latents) overlapping by 32.
    const [w, h] = [192, 192];
    const { image, control } = picture(w, h);
    const { units, hookOptions } = await new ControlnetOpener({
      cacheDir: join(root, "cache"),
      version: "test",
    }).open(sd, [{
      net: netDir,
      scale: 1,
      start: 0,
      end: 1,
      image: (width, height) => {
        assert.deepEqual([width, height], [w, h], "the whole image's size");
        return Promise.resolve(control);
      },
    }], { modelLabel: "the tiny model" });
    // A stand-in UNet with what makes tiles disagree in real models (its prediction depends on
    // the whole tile, as group norms and attention do) and that follows the net: each latent
    // channel gets the tile's mean, a local part, and the tile's mean of the net's first
    // residual (at the latent's resolution), which the net computes from the tile it sees.
    const residual = "down_block_additional_residual_0";
    const stand: UnetCall = (x) => {
      const [b, c, hh, ww] = x.sampleShape;
      const plane = hh * ww;
      const r = x.extra[residual]!;
      const rc = r.dims[1]!;
      const out = new Float32Array(x.sample.length);
      for (let p = 0; p < b * c; p++) {
        let mean = 0;
        for (let i = 0; i < plane; i++) mean += x.sample[p * plane + i]!;
        mean /= plane;
        const [bi, ci] = [Math.floor(p / c), p % c];
        let net = 0;
        for (const v of r.data.subarray((bi * rc + ci) * plane, (bi * rc + ci + 1) * plane)) {
          net += v / plane;
        }
        for (let i = 0; i < plane; i++) {
          out[p * plane + i] = 0.6 * mean + 0.2 * x.sample[p * plane + i]! + 0.2 * net;
        }
      }
      return Promise.resolve(out);
    };
    const params: DiffusionParams = {
      steps: 8,
      cfg: 7,
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
    const hooks = () => controlnetTileHooks(units, hookOptions);
    const run = async (tile: number, overlap: number, hard = false) => {
      const { hook, tileHook } = hooks();
      return await upscaleImg2Img(sd, {
        ...params,
        image,
        strength: 0.8,
        tile,
        overlap,
        hooks: [hook],
        tileHooks: [tileHook],
        // Hard cuts for comparison: two by two tiles side by side, each with its own residuals.
        unetWrapper: hard
          ? () => multiDiffusionUnet(stand, { tile: 12, overlap: 0, tileHooks: [tileHook] })
          : () => stand,
      });
    };
    const whole = await run(0, 0);
    const tiled = await run(96, 32);
    const hard = await run(0, 0, true);
    assert.equal(whole.tiles, 1);
    assert.ok(tiled.tiles >= 4);
    const grid = planTiles(24, 24, {
      tile: 12,
      overlap: 4,
      margin: 0,
      multiple: tileGridMultiple(8, 12, 4),
    });
    const cuts = [...new Set(grid.columns.spans.flatMap((s) => [s.start, s.end]))]
      .filter((x) => x > 0 && x < 24);
    const dims: [number, number, number] = [4, 24, 24];
    const soft = columnJumps(tiled.latents.data, whole.latents.data, dims, cuts);
    const cut = columnJumps(hard.latents.data, whole.latents.data, dims, [12]);
    console.log(
      `tile-mean stand-in UNet + the tiny ControlNet per tile, 192x192, strength 0.8: blended ` +
        `tiles (96 px, overlap 32, ${tiled.tiles} tiles) column jump ${soft.atCuts.toFixed(4)} ` +
        `at the cuts (${cuts}), ${soft.elsewhere.toFixed(4)} elsewhere in the latents; hard ` +
        `cuts ${cut.atCuts.toFixed(4)} at the cut, ${cut.elsewhere.toFixed(4)} elsewhere`,
    );
    assert.ok(cut.atCuts > 5 * cut.elsewhere, "the hard cut must show a seam");
    const worst = Math.max(soft.atCuts, soft.elsewhere);
    assert.ok(worst < cut.atCuts / 4, `blended jump ${worst} vs hard ${cut.atCuts}`);
  } finally {
    await sd.release();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
