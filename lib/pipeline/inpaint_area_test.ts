import assert from "node:assert/strict";
import type { MaskImage } from "../image/mask.ts";
import { expandCropRegion, maskCropRegion } from "./inpaint_area.ts";

function maskWith(width: number, height: number, points: Array<[number, number]>): MaskImage {
  const data = new Uint8Array(width * height);
  for (const [x, y] of points) data[y * width + x] = 1;
  return { width, height, data };
}

Deno.test("maskCropRegion() is the padded bounding box of the non-zero pixels, clamped", () => {
  const mask = maskWith(10, 8, [[3, 2], [5, 4]]);
  assert.deepEqual(maskCropRegion(mask, 0), { x1: 3, y1: 2, x2: 6, y2: 5 });
  // Padding 2: x 3-2 = 1, y 2-2 = 0, x 6+2 = 8, y 5+2 = 7.
  assert.deepEqual(maskCropRegion(mask, 2), { x1: 1, y1: 0, x2: 8, y2: 7 });
  // Padding 4 runs past every edge: clamped to the image.
  assert.deepEqual(maskCropRegion(mask, 4), { x1: 0, y1: 0, x2: 10, y2: 8 });
  // Faint (blurred) values count: any value above 0.
  assert.deepEqual(maskCropRegion(maskWith(10, 8, [[9, 7]]), 0), { x1: 9, y1: 7, x2: 10, y2: 8 });
});

Deno.test("maskCropRegion() of a mask touching the edges is the whole image; blank is undefined", () => {
  assert.deepEqual(maskCropRegion(maskWith(10, 8, [[0, 0], [9, 7]]), 0), {
    x1: 0,
    y1: 0,
    x2: 10,
    y2: 8,
  });
  // (0, 3) padded by 3: x 0-3 -> 0, y 3-3 = 0, x 1+3 = 4, y 4+3 = 7.
  assert.deepEqual(maskCropRegion(maskWith(10, 8, [[0, 3]]), 3), { x1: 0, y1: 0, x2: 4, y2: 7 });
  assert.equal(maskCropRegion(maskWith(10, 8, []), 32), undefined);
  assert.throws(() => maskCropRegion(maskWith(4, 4, []), -1), RangeError);
});

Deno.test("expandCropRegion() grows the short side to the processing aspect ratio", () => {
  // 128x32 at 512x512: height 128, 96 more split 48 / 48 (A1111's docstring example).
  assert.deepEqual(expandCropRegion({ x1: 100, y1: 200, x2: 228, y2: 232 }, 512, 512, 1024, 1024), {
    x1: 100,
    y1: 152,
    x2: 228,
    y2: 280,
  });
  // 13x13 at 96x64 (ratio 1.5): width 19.5, diff int(6.5) = 6, split 3 / 3.
  assert.deepEqual(expandCropRegion({ x1: 20, y1: 20, x2: 33, y2: 33 }, 96, 64, 100, 100), {
    x1: 17,
    y1: 20,
    x2: 36,
    y2: 33,
  });
  // 11x11 at 96x64: width 16.5, diff int(5.5) = 5, split floor(5/2) = 2 before, 3 after.
  assert.deepEqual(expandCropRegion({ x1: 20, y1: 20, x2: 31, y2: 31 }, 96, 64, 100, 100), {
    x1: 18,
    y1: 20,
    x2: 34,
    y2: 31,
  });
});

Deno.test("expandCropRegion() shifts a region back inside the image and clamps what cannot fit", () => {
  // 10x40 at 64x64: width 40, diff 30: x -5..35, shifted right by 5 to 0..40.
  assert.deepEqual(expandCropRegion({ x1: 10, y1: 10, x2: 20, y2: 50 }, 64, 64, 64, 64), {
    x1: 0,
    y1: 10,
    x2: 40,
    y2: 50,
  });
  // Touching the right edge: 14x56 -> width 56, diff 42: x 29..85, shifted left by 21 to 8..64.
  assert.deepEqual(expandCropRegion({ x1: 50, y1: 0, x2: 64, y2: 56 }, 64, 64, 64, 64), {
    x1: 8,
    y1: 0,
    x2: 64,
    y2: 56,
  });
  // 64x8 in a 64x32 image at 32x32 wants height 64: y -28..36 -> -32..32 -> 0..64 -> 0..32.
  assert.deepEqual(expandCropRegion({ x1: 0, y1: 0, x2: 64, y2: 8 }, 32, 32, 64, 32), {
    x1: 0,
    y1: 0,
    x2: 64,
    y2: 32,
  });
});
