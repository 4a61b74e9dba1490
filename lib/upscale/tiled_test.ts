import assert from "node:assert/strict";
import { rrdbNetConfig, srvggNetCompactConfig, type UpscalerConfig } from "../models/esrgan.ts";
import { testImage, tinyUpscaler } from "./testing.ts";
import { upscaleTiled } from "./tiled.ts";

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// Receptive field of a 1-block RRDBNet x4, in input pixels: conv_first, 15 dense convs and
// conv_body (17), then conv_up1 at 2x (1/2) and conv_up2, conv_hr, conv_last at 4x (3/4).
const ONE_BLOCK_RADIUS = 17 + 0.5 + 0.75;

Deno.test("upscaleTiled() equals the untiled output when the margin covers the receptive field", async () => {
  const config = rrdbNetConfig({ features: 8, blocks: 1, growthChannels: 4 });
  const upscaler = await tinyUpscaler(config, 3);
  try {
    const image = testImage(150, 110);
    const whole = await upscaleTiled(upscaler, image, { tile: 0 });
    const margin = Math.ceil(ONE_BLOCK_RADIUS);
    let tiles = 0;
    const tiled = await upscaleTiled(upscaler, image, {
      tile: 64,
      overlap: 2 * margin + 8,
      margin,
      onTile: (_, total) => (tiles = total),
    });
    const d = maxDiff(whole, tiled);
    console.log(
      `RRDBNet x4 (1 block) ${tiles} tiles, margin ${margin}: maxdiff ${d.toExponential(2)}`,
    );
    assert.ok(tiles >= 9);
    assert.ok(d < 1e-5, `maxdiff ${d}`);
  } finally {
    await upscaler.release();
  }
});

Deno.test("upscaleTiled() with the default overlap differs invisibly from the untiled output", async () => {
  // [name, config, tile, width, height]: tiles of 48 grid pixels, odd image sizes (the far
  // windows of unshuffling models need reflect padding).
  const cases: Array<[string, UpscalerConfig, number, number, number]> = [
    [
      "RRDBNet x4, 2 blocks",
      rrdbNetConfig({ features: 16, blocks: 2, growthChannels: 8 }),
      48,
      97,
      75,
    ],
    [
      "RRDBNet x2 (unshuffle)",
      rrdbNetConfig({ scale: 2, features: 16, blocks: 2, growthChannels: 8 }),
      96,
      193,
      151,
    ],
    [
      "RRDBNet x1 (unshuffle 4)",
      rrdbNetConfig({ scale: 1, features: 8, blocks: 1, growthChannels: 4 }),
      192,
      387,
      301,
    ],
    ["SRVGGNetCompact x4", srvggNetCompactConfig({ features: 16, convs: 8 }), 48, 97, 75],
  ];
  for (const [name, config, tile, width, height] of cases) {
    const upscaler = await tinyUpscaler(config, 11);
    try {
      const image = testImage(width, height);
      const whole = await upscaleTiled(upscaler, image, { tile: 0, clamp: true });
      let tiles = 0;
      const tiled = await upscaleTiled(upscaler, image, {
        tile,
        clamp: true,
        onTile: (_, total) => (tiles = total),
      });
      const d = maxDiff(whole, tiled);
      console.log(
        `${name}: ${tiles} tiles of ${tile}, default overlap: maxdiff ${d.toExponential(2)}`,
      );
      assert.ok(tiles >= 4);
      assert.ok(d < 0.5 / 255, `${name}: maxdiff ${d}`);
    } finally {
      await upscaler.release();
    }
  }
});

Deno.test("upscaleTiled() mixes output channels and writes into given planes", async () => {
  const upscaler = await tinyUpscaler(srvggNetCompactConfig({ features: 4, convs: 1 }), 2);
  try {
    const image = testImage(9, 7, 2);
    const rgb = await upscaleTiled(upscaler, image, { inputPlanes: [1, 1, 1], clamp: true });
    const out = new Float32Array(2 * 36 * 28);
    await upscaleTiled(upscaler, image, {
      inputPlanes: [1, 1, 1],
      outputMix: [[0.299, 0.587, 0.114]],
      clamp: true,
      into: { data: out, plane: 1 },
    });
    const n = 36 * 28;
    let d = 0;
    for (let i = 0; i < n; i++) {
      const grey = 0.299 * rgb[i]! + 0.587 * rgb[n + i]! + 0.114 * rgb[2 * n + i]!;
      d = Math.max(d, Math.abs(out[n + i]! - grey));
      assert.equal(out[i], 0);
    }
    assert.ok(d < 1e-6);
    await assert.rejects(
      () => upscaleTiled(upscaler, image, { inputPlanes: [0, 1, 2] }),
      /Cannot feed planes \[0,1,2\] of a 2-plane image/,
    );
  } finally {
    await upscaler.release();
  }
});
