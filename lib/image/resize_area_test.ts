import assert from "node:assert/strict";
import fc from "fast-check";
import type { RawImage } from "./codec.ts";
import { resizeArea } from "./resize_area.ts";

const gray = (width: number, height: number, data: number[]): RawImage => ({
  width,
  height,
  channels: 1,
  data: Uint8Array.from(data),
});

Deno.test("resizeArea() halves with OpenCV's (a + b + c + d + 2) >> 2", () => {
  // Block sums 2 and 6 give 1 and 2 (rounding half up), not round-half-even's 0 and 2.
  const image = gray(4, 2, [0, 1, 1, 3, 1, 0, 1, 1]);
  assert.deepEqual([...resizeArea(image, 2, 1).data], [1, 2]);
  // Three channels average channel by channel.
  const rgb: RawImage = {
    width: 2,
    height: 2,
    channels: 3,
    data: Uint8Array.of(0, 10, 255, 4, 10, 255, 8, 10, 0, 12, 10, 0),
  };
  assert.deepEqual([...resizeArea(rgb, 1, 1).data], [6, 10, 128]);
});

Deno.test("resizeArea() other integer factors round float(sum) / area half to even", () => {
  // 4x4 blocks: sums 8 and 24 give 0.5 -> 0 and 1.5 -> 2.
  const block = (v: number[]) => v.concat(new Array(16 - v.length).fill(0));
  const a = block([8]);
  const b = block([24]);
  const data: number[] = [];
  for (let y = 0; y < 4; y++) data.push(...a.slice(y * 4, y * 4 + 4), ...b.slice(y * 4, y * 4 + 4));
  assert.deepEqual([...resizeArea(gray(8, 4, data), 2, 1).data], [0, 2]);
});

Deno.test("resizeArea() non-integer factors weigh partly covered pixels by their coverage", () => {
  // 3 -> 2: cells [0, 1.5) and [1.5, 3): (2a + b) / 3 and (b + 2c) / 3.
  assert.deepEqual([...resizeArea(gray(3, 1, [0, 90, 180]), 2, 1).data], [30, 150]);
  assert.deepEqual([...resizeArea(gray(3, 3, new Array(9).fill(200)), 2, 2).data], [
    200,
    200,
    200,
    200,
  ]);
});

Deno.test("resizeArea() stays within the range of the pixels it averages", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 10 }),
      fc.infiniteStream(fc.integer({ min: 0, max: 255 })),
      (sw, sh, dw0, dh0, values) => {
        const dw = Math.min(dw0, sw);
        const dh = Math.min(dh0, sh);
        const data = Array.from({ length: sw * sh * 3 }, () => values.next().value);
        const out = resizeArea(
          { width: sw, height: sh, channels: 3, data: Uint8Array.from(data) },
          dw,
          dh,
        );
        assert.equal(out.data.length, dw * dh * 3);
        const lo = Math.min(...data);
        const hi = Math.max(...data);
        assert.ok(out.data.every((v) => v >= lo && v <= hi));
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("resizeArea() refuses to enlarge and bad sizes", () => {
  assert.throws(() => resizeArea(gray(2, 2, [0, 0, 0, 0]), 3, 2), RangeError);
  assert.throws(() => resizeArea(gray(2, 2, [0, 0, 0, 0]), 0, 1), RangeError);
  assert.deepEqual([...resizeArea(gray(2, 1, [5, 6]), 2, 1).data], [5, 6]);
});
