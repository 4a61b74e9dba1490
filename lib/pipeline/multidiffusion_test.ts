import assert from "node:assert/strict";
import type { UnetCall, UnetInput } from "./denoise.ts";
import { type LatentTile, multiDiffusionUnet } from "./multidiffusion.ts";

function input(b: number, c: number, h: number, w: number, extra: UnetInput["extra"] = {}) {
  const sample = Float32Array.from({ length: b * c * h * w }, (_, i) => Math.sin(i * 0.37));
  return {
    sample,
    sampleShape: [b, c, h, w] as [number, number, number, number],
    timestep: 500,
    hiddenStates: new Float32Array(b * 2 * 4),
    hiddenShape: [b, 2, 4] as [number, number, number],
    extra,
  };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A pointwise "UNet": 2x + 1 per value, plus a per-channel offset from an extra input. */
const pointwise: UnetCall = (x) => {
  const extra = x.extra["cond_map"];
  return Promise.resolve(
    x.sample.map((v, i) => 2 * v + 1 + (extra ? extra.data[i % extra.data.length]! : 0)),
  );
};

Deno.test("multiDiffusionUnet() runs a latent that fits one tile as the plain UNet", async () => {
  let calls = 0;
  const unet: UnetCall = (x) => {
    calls++;
    return Promise.resolve(x.sample.map((v) => v * 3));
  };
  const x = input(2, 4, 16, 12);
  const out = await multiDiffusionUnet(unet, { tile: 16, overlap: 4 })(x);
  assert.equal(calls, 1);
  assert.deepEqual(out, x.sample.map((v) => v * 3));
});

Deno.test("multiDiffusionUnet() blends tiles of a pointwise model back to the whole output", async () => {
  // A pointwise model gives every tile the same values where tiles overlap, and the blend
  // weights sum to 1, so the tiled call equals the whole call (up to float rounding).
  const x = input(2, 4, 24, 40);
  const seen: LatentTile[] = [];
  const tiled = multiDiffusionUnet(pointwise, {
    tile: 16,
    overlap: 6,
    multiple: 2,
    tileHooks: [(t, tile) => {
      seen.push(tile);
      assert.deepEqual(t.sampleShape, [2, 4, tile.height, tile.width]);
      assert.equal(tile.x % 2, 0);
      assert.equal(tile.y % 2, 0);
      return t;
    }],
  });
  const out = await tiled(x);
  const whole = await pointwise(x);
  const diff = maxDiff(out, whole);
  console.log(`pointwise model, ${seen.length} tiles: maxdiff ${diff.toExponential(2)}`);
  assert.ok(diff < 1e-5, `maxdiff ${diff}`);
  assert.ok(seen.length >= 6, `${seen.length} tiles`);
  assert.ok(seen.every((t) => t.width <= 17 && t.height <= 17 && t.count === seen.length));
});

Deno.test("multiDiffusionUnet() cuts latent-sized extra inputs and passes 2-D ones whole", async () => {
  const [b, c, h, w] = [1, 2, 20, 20];
  const map = Float32Array.from({ length: b * c * h * w }, (_, i) => (i % 7) / 7);
  const rows = { data: Float32Array.of(1, 2, 3), dims: [1, 3] };
  const x = input(b, c, h, w, { cond_map: { data: map, dims: [b, c, h, w] }, text_embeds: rows });
  const shapes: string[] = [];
  const unet: UnetCall = (t) => {
    shapes.push(t.extra["cond_map"]!.dims.join("x"));
    assert.equal(t.extra["text_embeds"], rows);
    // cond_map as cut for this tile must equal the sample's own position: check one value.
    return Promise.resolve(t.sample.map((v, i) => v + t.extra["cond_map"]!.data[i]!));
  };
  const out = await multiDiffusionUnet(unet, { tile: 12, overlap: 4 })(x);
  const whole = x.sample.map((v, i) => v + map[i]!);
  assert.ok(maxDiff(out, whole) < 1e-5);
  assert.ok(shapes.every((s) => s.startsWith("1x2x")) && shapes.length === 4, shapes.join());
});

Deno.test("multiDiffusionUnet() refuses extra 4-D inputs at another resolution", async () => {
  const x = input(1, 4, 32, 32, {
    down_block_additional_residual_0: { data: new Float32Array(16 * 16 * 8), dims: [1, 8, 16, 16] },
  });
  await assert.rejects(
    () => multiDiffusionUnet(pointwise, { tile: 16, overlap: 4 })(x),
    /Cannot tile the UNet input "down_block_additional_residual_0" of shape \[1, 8, 16, 16\]/,
  );
});

Deno.test("multiDiffusionUnet() with a local model differs from the whole call only near tile edges", async () => {
  // A 3x3 box blur with zero padding: each tile sees a zero border where the whole latent has
  // neighbours, so outputs differ within one pixel of a cut edge, and the ramp fades them.
  const blur: UnetCall = (x) => {
    const [b, c, h, w] = x.sampleShape;
    const out = new Float32Array(x.sample.length);
    for (let p = 0; p < b * c; p++) {
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          let s = 0;
          for (let dy = -1; dy <= 1; dy++) {
            for (let dx = -1; dx <= 1; dx++) {
              const yy = y + dy;
              const xd = xx + dx;
              if (yy >= 0 && yy < h && xd >= 0 && xd < w) s += x.sample[(p * h + yy) * w + xd]!;
            }
          }
          out[(p * h + y) * w + xx] = s / 9;
        }
      }
    }
    return Promise.resolve(out);
  };
  const x = input(1, 1, 32, 32);
  const whole = await blur(x);
  const tiled = await multiDiffusionUnet(blur, { tile: 16, overlap: 8 })(x);
  const noOverlap = await multiDiffusionUnet(blur, { tile: 16, overlap: 0 })(x);
  const blended = maxDiff(tiled, whole);
  const hard = maxDiff(noOverlap, whole);
  console.log(
    `box blur 32x32, tiles of 16: overlap 8 maxdiff ${blended.toFixed(4)}, ` +
      `overlap 0 maxdiff ${hard.toFixed(4)}`,
  );
  assert.ok(blended < 0.1, `blended maxdiff ${blended}`);
  assert.ok(blended < hard / 5, "blending over an overlap must beat hard cuts");
});
