import assert from "node:assert/strict";
import { bucketResolutions, fitToBucket, selectBucket } from "./buckets.ts";

function ramp(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
  return { width, height, channels: 3 as const, data };
}

Deno.test("kohya buckets: make_bucket_resolutions(512) and the nearest-ratio bucket", () => {
  const buckets = bucketResolutions(512);
  // kohya's list for 512: 256x1024 ... 512x512 ... 1024x256, sides multiples of 64.
  assert.ok(buckets.every(([w, h]) => w % 64 === 0 && h % 64 === 0 && w * h <= 512 * 512));
  for (const b of [[512, 512], [256, 1024], [1024, 256], [640, 384], [384, 640], [576, 448]]) {
    assert.ok(buckets.some(([w, h]) => w === b[0] && h === b[1]), `missing ${b}`);
  }
  assert.deepEqual(selectBucket(buckets, 1920, 1080), [640, 384]);
  assert.deepEqual(selectBucket(buckets, 1000, 1000), [512, 512]);
  const fit = fitToBucket(ramp(200, 100), [128, 64]);
  assert.deepEqual([fit.pixels.width, fit.pixels.height], [128, 64]);
  const wide = fitToBucket(ramp(300, 100), [128, 64]); // scaled to 192 x 64, 32 cut each side
  assert.deepEqual(wide.cropTopLeft, [0, 32]);
});
