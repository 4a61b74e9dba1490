import assert from "node:assert/strict";
import {
  decodeFloatImage,
  encodeFloatImage,
  type FloatImage,
  resizeFloatImage,
} from "../image/codec.ts";
import { rrdbNetConfig, srvggNetCompactConfig } from "../models/esrgan.ts";
import { activationBytesPerPixel } from "../models/esrgan_cost.ts";
import { hostTensor } from "../onnx/session.ts";
import { testImage, tinyUpscaler } from "./testing.ts";
import { upscaledSize, upscaleImage } from "./upscale_image.ts";
import type { Upscaler } from "./upscaler.ts";

const GREY = [0.299, 0.587, 0.114];

/** The model on 3 planes of `planes` (untiled, one session call), clamped to [0, 1]. */
async function modelOn(
  upscaler: Upscaler,
  image: FloatImage,
  planes: number[],
): Promise<Float32Array> {
  const n = image.width * image.height;
  const x = new Float32Array(3 * n);
  planes.forEach((p, c) => x.set(image.data.subarray(p * n, (p + 1) * n), c * n));
  const out = await upscaler.session.run({
    image: hostTensor("float32", x, [1, 3, image.height, image.width]),
  });
  return (out["upscaled"]!.data as Float32Array).map((v) => Math.min(1, Math.max(0, v)));
}

function grey(rgb: Float32Array): Float32Array {
  const n = rgb.length / 3;
  return Float32Array.from(
    { length: n },
    (_, i) => GREY[0]! * rgb[i]! + GREY[1]! * rgb[n + i]! + GREY[2]! * rgb[2 * n + i]!,
  );
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function floatImage(channels: FloatImage["channels"], w: number, h: number, bitDepth: 8 | 16 = 8) {
  const { data } = testImage(w, h, channels);
  return { width: w, height: h, channels, bitDepth, data } satisfies FloatImage;
}

const SMALL = rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 });

Deno.test("upscaleImage() keeps alpha, upscaled by the model as Real-ESRGAN does", async () => {
  const upscaler = await tinyUpscaler(SMALL, 4);
  try {
    const image = floatImage(4, 20, 14);
    const out = await upscaleImage(upscaler, image, { tile: 0 });
    assert.deepEqual([out.width, out.height, out.channels, out.bitDepth], [80, 56, 4, 8]);
    const n = 80 * 56;
    const rgb = await modelOn(upscaler, image, [0, 1, 2]);
    const alpha = grey(await modelOn(upscaler, image, [3, 3, 3]));
    const dRgb = maxDiff(out.data.subarray(0, 3 * n), rgb);
    const dAlpha = maxDiff(out.data.subarray(3 * n), alpha);
    console.log(`RGBA: colour maxdiff ${dRgb.toExponential(2)}, alpha ${dAlpha.toExponential(2)}`);
    assert.ok(dRgb < 1e-6 && dAlpha < 1e-6);

    // "linear": alpha resized, colour unchanged.
    const linear = await upscaleImage(upscaler, image, { tile: 0, alphaUpsampler: "linear" });
    assert.deepEqual(linear.data.subarray(0, 3 * n), out.data.subarray(0, 3 * n));
    const a = {
      width: 20,
      height: 14,
      channels: 1,
      bitDepth: 8,
      data: image.data.subarray(3 * 280),
    } as const;
    const resized = await resizeFloatImage(a, 80, 56, { kernel: "linear" });
    assert.deepEqual(linear.data.subarray(3 * n), resized.data);

    // A constant alpha stays constant, with no second model pass.
    image.data.fill(0.5, 3 * 280);
    let passes = 0;
    const flat = await upscaleImage(upscaler, image, {
      tile: 0,
      onTile: (_, total) => (passes = total),
    });
    assert.equal(passes, 1);
    assert.ok(flat.data.subarray(3 * n).every((v) => v === 0.5));
  } finally {
    await upscaler.release();
  }
});

Deno.test("upscaleImage() runs grey and grey + alpha images as RGB and returns grey", async () => {
  const upscaler = await tinyUpscaler(SMALL, 5);
  try {
    const image = floatImage(2, 15, 11);
    const out = await upscaleImage(upscaler, image, { tile: 0 });
    assert.deepEqual([out.width, out.height, out.channels], [60, 44, 2]);
    const n = 60 * 44;
    const g = grey(await modelOn(upscaler, image, [0, 0, 0]));
    const a = grey(await modelOn(upscaler, image, [1, 1, 1]));
    const d = Math.max(maxDiff(out.data.subarray(0, n), g), maxDiff(out.data.subarray(n), a));
    console.log(`grey + alpha: maxdiff ${d.toExponential(2)}`);
    assert.ok(d < 1e-6);
    const single = await upscaleImage(upscaler, floatImage(1, 15, 11), { tile: 0 });
    assert.equal(single.channels, 1);
  } finally {
    await upscaler.release();
  }
});

Deno.test("upscaleImage() reads and writes 16-bit PNGs at 16 bits", async () => {
  const upscaler = await tinyUpscaler(SMALL, 6);
  try {
    const source = floatImage(3, 16, 12, 16);
    const png = await encodeFloatImage(source, "png");
    const image = await decodeFloatImage(png);
    assert.equal(image.bitDepth, 16);
    // The model sees v / 65535, not an 8-bit rounding of it.
    assert.ok(maxDiff(image.data, source.data) <= 0.5 / 65535);
    const out = await upscaleImage(upscaler, image, { tile: 0 });
    assert.equal(out.bitDepth, 16);
    const back = await decodeFloatImage(await encodeFloatImage(out, "png"));
    assert.equal(back.bitDepth, 16);
    const d = maxDiff(back.data, out.data);
    console.log(
      `16-bit PNG round trip of the output: maxdiff ${d.toExponential(2)} (1/65535 = 1.5e-5)`,
    );
    assert.ok(d <= 0.5 / 65535 + 1e-7);
    // Distinct 16-bit levels survive (an 8-bit path would leave at most 256).
    const levels = new Set(Array.from(back.data, (v) => Math.round(v * 65535)));
    assert.ok(levels.size > 256, `${levels.size} levels`);
  } finally {
    await upscaler.release();
  }
});

Deno.test("upscaleImage() reaches any scale through Lanczos, tiled or not", async () => {
  const upscaler = await tinyUpscaler(srvggNetCompactConfig({ features: 8, convs: 2 }), 7);
  try {
    const image = floatImage(3, 70, 50);
    const native = await upscaleImage(upscaler, image, { tile: 0 });
    const half = await upscaleImage(upscaler, image, { scale: 2, tile: 0 });
    assert.deepEqual([half.width, half.height], [140, 100]);
    const expected = await resizeFloatImage(native, 140, 100, { kernel: "lanczos3" });
    assert.deepEqual(half.data, expected.data);
    const odd = await upscaleImage(upscaler, image, { scale: 2.5, tile: 40 });
    assert.deepEqual([odd.width, odd.height], [175, 125]);
    assert.ok(odd.data.every((v) => v >= 0 && v <= 1));
  } finally {
    await upscaler.release();
  }
});

Deno.test("upscaleImage() refuses a scale that is not > 0", async () => {
  const upscaler = await tinyUpscaler(SMALL, 8);
  try {
    const image = floatImage(3, 8, 8);
    for (const scale of [0, -2, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(
        () => upscaleImage(upscaler, image, { scale }),
        (e: unknown) => e instanceof RangeError && /scale must be a number > 0/.test(e.message),
      );
    }
  } finally {
    await upscaler.release();
  }
  assert.deepEqual(upscaledSize(100, 100, 0.29), [29, 29]);
  assert.deepEqual(upscaledSize(3, 3, 0.1), [1, 1]);
});

Deno.test("upscaleImage() picks its tile from the memory budget", async () => {
  const upscaler = await tinyUpscaler(SMALL, 9);
  try {
    const image = floatImage(3, 300, 140);
    // A budget for 64x64 windows; the tile is raised to four overlaps (128).
    const budget = activationBytesPerPixel(SMALL) * 64 * 64;
    let tiles = 0;
    const tiled = await upscaleImage(upscaler, image, {
      memoryBudget: budget,
      onTile: (_, total) => (tiles = total),
    });
    const whole = await upscaleImage(upscaler, image, { tile: 0 });
    const d = maxDiff(tiled.data, whole.data);
    console.log(
      `default tile from a ${budget}-byte budget: ${tiles} tiles, maxdiff ${d.toExponential(2)}`,
    );
    assert.equal(tiles, 3 * 2);
    assert.ok(d < 0.5 / 255);
  } finally {
    await upscaler.release();
  }
});
