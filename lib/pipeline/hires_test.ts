import assert from "node:assert/strict";
import { join } from "node:path";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { UsageError } from "../errors.ts";
import type { Nchw } from "../models/vae.ts";
import { conditionerFor } from "./conditioning.ts";
import { txt2img } from "./generate.ts";
import {
  hiresFirstPass,
  hiresFix,
  type HiresParams,
  hiresSize,
  type ModelUpscaler,
  upscaleToSize,
} from "./hires.ts";
import type { RawImage } from "../image/codec.ts";
import { pilResize } from "../image/pil_resample.ts";
import { StableDiffusion } from "./stable_diffusion.ts";
import { interpolateBilinear } from "../tensor/interpolate.ts";

Deno.test("interpolateBilinear() matches F.interpolate(mode='bilinear', align_corners=False)", () => {
  // PyTorch: F.interpolate(torch.tensor([[[[0., 1.]]]]), size=(1, 4), mode="bilinear")
  // -> [0, 0.25, 0.75, 1] (source x = max((d + 0.5) / 2 - 0.5, 0), clamped at the right edge).
  const row: Nchw = { data: Float32Array.of(0, 1), dims: [1, 1, 1, 2] };
  assert.deepEqual([...interpolateBilinear(row, 1, 4).data], [0, 0.25, 0.75, 1]);
  // 2x2 -> 4x4: separable, so the corners keep their values and the centre is the mean.
  const sq: Nchw = { data: Float32Array.of(0, 4, 8, 12), dims: [1, 1, 2, 2] };
  const up = interpolateBilinear(sq, 4, 4);
  assert.deepEqual(up.dims, [1, 1, 4, 4]);
  assert.deepEqual([...up.data.subarray(0, 4)], [0, 1, 3, 4]);
  assert.deepEqual([...up.data.subarray(12, 16)], [8, 9, 11, 12]);
  assert.equal(up.data[5], 0.75 * 0.75 * 0 + 0.75 * 0.25 * 4 + 0.25 * 0.75 * 8 + 0.25 * 0.25 * 12);
  // 1.5x: 4 -> 6, scale 2/3: source x = (d + 0.5) * 2/3 - 0.5.
  const four: Nchw = { data: Float32Array.of(0, 1, 2, 3), dims: [1, 1, 1, 4] };
  const six = interpolateBilinear(four, 1, 6).data;
  const want = [0, 0.5, 1.1666666, 1.8333333, 2.5, 3];
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(six[i]! - want[i]!) < 1e-6, `x=${i}: ${six[i]}`);
  // Same size is the identity; channels and batch items are independent planes.
  const multi: Nchw = {
    data: Float32Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => i),
    dims: [2, 3, 4, 5],
  };
  assert.deepEqual(interpolateBilinear(multi, 4, 5).data, multi.data);
});

Deno.test("hiresSize() is int(base * scale) rounded down to the VAE grid", () => {
  assert.deepEqual(hiresSize(512, 768, { scale: 2, factor: 8 }), { width: 1024, height: 1536 });
  assert.deepEqual(hiresSize(520, 512, { scale: 1.5, factor: 8 }), { width: 776, height: 768 });
  assert.deepEqual(hiresSize(64, 64, { scale: 1.3, factor: 8 }), { width: 80, height: 80 });
  assert.throws(() => hiresSize(64, 64, { scale: 0.5, factor: 8 }), RangeError);
});

/** A stand-in upscaling model: nearest-neighbour by `scale`, recording its input sizes. */
function nearestUpscaler(scale: number, seen: Array<[number, number]>): ModelUpscaler {
  return {
    name: `nearest-x${scale}`,
    run: (image: RawImage) => {
      seen.push([image.width, image.height]);
      const [w, h, c] = [image.width * scale, image.height * scale, image.channels];
      const data = new Uint8Array(w * h * c);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          for (let k = 0; k < c; k++) {
            data[(y * w + x) * c + k] = image.data[
              (Math.floor(y / scale) * image.width + Math.floor(x / scale)) * c + k
            ]!;
          }
        }
      }
      return Promise.resolve({ width: w, height: h, channels: image.channels, data });
    },
  };
}

function gradientImage(width: number, height: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + Math.floor(i / 97)) % 256;
  return { width, height, channels: 3, data };
}

Deno.test("upscaleToSize() follows A1111's Upscaler.upscale: passes, grid of 8, Lanczos", async () => {
  const image = gradientImage(20, 20);
  // x4 model, x2 target: one pass (80x80), then PIL Lanczos to 40x40.
  let seen: Array<[number, number]> = [];
  let out = await upscaleToSize(nearestUpscaler(4, seen), image, 40, 40);
  assert.deepEqual(seen, [[20, 20]]);
  const once = await nearestUpscaler(4, [])!.run(image);
  assert.deepEqual(out, pilResize(once, 40, 40, "lanczos"));
  // x2 model, x5 target: three passes at most (20 -> 40 -> 80 -> 160), then to the grid of 8
  // (int(20 * 5) // 8 * 8 = 96), then to the target (100).
  seen = [];
  out = await upscaleToSize(nearestUpscaler(2, seen), image, 100, 100);
  assert.deepEqual(seen, [[20, 20], [40, 40], [80, 80]]);
  assert.deepEqual([out.width, out.height], [100, 100]);
  // x2 model, x1.5 target: the pass stops once the image covers 24x24 (int(30) // 8 * 8).
  seen = [];
  out = await upscaleToSize(nearestUpscaler(2, seen), image, 30, 30);
  assert.deepEqual(seen, [[20, 20]]);
  assert.deepEqual([out.width, out.height], [30, 30]);
  // A model that does not grow the image stops the loop; a target no larger runs no model.
  seen = [];
  out = await upscaleToSize(nearestUpscaler(1, seen), image, 40, 40);
  assert.deepEqual(seen, [[20, 20]]);
  seen = [];
  out = await upscaleToSize(nearestUpscaler(4, seen), image, 20, 10);
  assert.deepEqual(seen, []);
  assert.deepEqual(out, pilResize(image, 20, 10, "lanczos"));
});

Deno.test("hiresFix() on a tiny model: first pass, sizes, determinism", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "denoise-hires-" });
  const tokenizerDir = await writeByteTokenizer(join(root, "tok"));
  const dir = await makeTinyModel("sd15", { seed: 9, tokenizerDir });
  const sd = await StableDiffusion.open(dir, { cacheDir: join(root, "cache"), threads: 2 });
  const base: HiresParams = {
    steps: 3,
    cfg: 7.5,
    seeds: [21n],
    rng: "cpu",
    sampler: "euler-a",
    width: 64,
    height: 64,
    conditioner: conditionerFor({
      prompt: "a castle",
      negative: "",
      steps: 3,
      clipSkip: 1,
      promptSyntax: "a1111",
      emphasis: "original",
    }),
    hiresScale: 2,
    hiresStrength: 0.5,
    hiresUpscaler: "latent",
  };
  try {
    await t.step("the first pass equals a plain txt2img at the base size", async () => {
      const first = await hiresFirstPass(sd, base);
      const plain = await txt2img(sd, base);
      assert.deepEqual(first.dims, plain.latents.dims);
      assert.deepEqual(first.data, plain.latents.data);
    });

    await t.step("latent upscaler: scale x base output, deterministic for a seed", async () => {
      const a = await hiresFix(sd, base);
      assert.deepEqual(a.latents.dims, [1, 4, 16, 16]);
      assert.deepEqual(a.firstPass.dims, [1, 4, 8, 8]);
      assert.deepEqual([a.images[0]!.width, a.images[0]!.height], [128, 128]);
      const b = await hiresFix(sd, base);
      assert.deepEqual(a.latents.data, b.latents.data);
      // The second pass really denoised: not just the upscaled first pass.
      const up = interpolateBilinear(a.firstPass, 16, 16);
      let diff = 0;
      for (let i = 0; i < up.data.length; i++) {
        diff = Math.max(diff, Math.abs(up.data[i]! - a.latents.data[i]!));
      }
      assert.ok(diff > 1e-2, `second pass changed nothing (${diff})`);
      // Another seed, another image.
      const c = await hiresFix(sd, { ...base, seeds: [22n] });
      assert.notDeepEqual(a.latents.data, c.latents.data);
    });

    await t.step("lanczos upscaler and hires steps: sizes and batch seeds", async () => {
      const batch = await hiresFix(sd, {
        ...base,
        seeds: [21n, 22n],
        hiresUpscaler: "lanczos",
        hiresScale: 1.5,
        hiresSteps: 2,
      });
      assert.deepEqual(batch.latents.dims, [2, 4, 12, 12]);
      assert.deepEqual([batch.images[1]!.width, batch.images[1]!.height], [96, 96]);
      const alone = await hiresFix(sd, {
        ...base,
        seeds: [22n],
        hiresUpscaler: "lanczos",
        hiresScale: 1.5,
        hiresSteps: 2,
      });
      let d = 0;
      for (let i = 0; i < alone.latents.data.length; i++) {
        d = Math.max(d, Math.abs(alone.latents.data[i]! - batch.latents.data[576 + i]!));
      }
      assert.ok(d < 1e-4, `image 2 of the batch differs from seed 22 alone: maxdiff ${d}`);
    });

    await t.step("a model upscaler: the decoded first pass, then Lanczos", async () => {
      const seen: Array<[number, number]> = [];
      const x4 = nearestUpscaler(4, seen);
      const model = await hiresFix(sd, { ...base, hiresScale: 1.5, hiresUpscaler: x4 });
      const lanczos = await hiresFix(sd, { ...base, hiresScale: 1.5, hiresUpscaler: "lanczos" });
      // One pass on the 64x64 first pass (to 256x256), then down to 96x96.
      assert.deepEqual(seen, [[64, 64]]);
      assert.deepEqual(model.latents.dims, [1, 4, 12, 12]);
      assert.deepEqual([model.images[0]!.width, model.images[0]!.height], [96, 96]);
      assert.deepEqual(model.firstPass.data, lanczos.firstPass.data);
      assert.notDeepEqual(model.latents.data, lanczos.latents.data);
    });

    await t.step("strength 0 is a usage error", async () => {
      await assert.rejects(() => hiresFix(sd, { ...base, hiresStrength: 0 }), UsageError);
    });
  } finally {
    await sd.release();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});
