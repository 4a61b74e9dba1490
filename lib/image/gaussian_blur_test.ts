import assert from "node:assert/strict";
import fc from "fast-check";
import { gaussianBlur, gaussianKernel, gaussianKernelSize, reflect101 } from "./gaussian_blur.ts";

Deno.test("gaussianKernelSize() is OpenCV's round(8 sigma + 1) | 1 for float images", () => {
  assert.deepEqual([0.5, 1, 3, 5, 6, 0.3, 0.6].map(gaussianKernelSize), [5, 9, 25, 41, 49, 3, 7]);
  // 0.1875 * 8 + 1 = 2.5: cvRound ties to even (2), then | 1 = 3.
  assert.equal(gaussianKernelSize(0.1875), 3);
});

Deno.test("gaussianKernel() is exp(-x²/2σ²) normalised, symmetric, in float32", () => {
  const k = gaussianKernel(0.5, 5);
  const raw = [-2, -1, 0, 1, 2].map((x) => Math.exp(-(x * x) / (2 * 0.25)));
  const sum = raw.reduce((a, b) => a + b, 0);
  let maxdiff = 0;
  k.forEach((v, i) => (maxdiff = Math.max(maxdiff, Math.abs(v - raw[i]! / sum))));
  console.log(`gaussianKernel(0.5, 5) maxdiff vs the formula: ${maxdiff}`);
  assert.ok(maxdiff < 1e-7);
  assert.equal(k[0], k[4]);
  assert.equal(k[1], k[3]);
  assert.ok(Math.abs(k.reduce((a, b) => a + b, 0) - 1) < 1e-6);
  assert.throws(() => gaussianKernel(0), RangeError);
  assert.throws(() => gaussianKernel(1, 4), RangeError);
});

Deno.test("reflect101() mirrors without repeating the edge, also for kernels wider than the image", () => {
  // gfedcb|abcdefgh|gfedcba
  assert.deepEqual([-3, -2, -1, 0, 7, 8, 9, 10].map((p) => reflect101(p, 8)), [
    3,
    2,
    1,
    0,
    7,
    6,
    5,
    4,
  ]);
  // Length 2 bounces back and forth: ... 1 0 1 | 0 1 | 0 1 0 ...
  assert.deepEqual([-3, -2, -1, 2, 3, 4].map((p) => reflect101(p, 2)), [1, 0, 1, 0, 1, 0]);
  assert.equal(reflect101(-5, 1), 0);
});

Deno.test("gaussianBlur() keeps constants, spreads an impulse as the kernel's outer product", () => {
  const flat = new Float32Array(7 * 5 * 3).fill(42.5);
  assert.ok(gaussianBlur(flat, 7, 5, 3, 2).every((v) => Math.abs(v - 42.5) < 1e-4));
  const impulse = new Float32Array(11 * 11);
  impulse[5 * 11 + 5] = 1;
  const k = gaussianKernel(1);
  const out = gaussianBlur(impulse, 11, 11, 1, 1);
  let maxdiff = 0;
  for (let y = 0; y < 11; y++) {
    for (let x = 0; x < 11; x++) {
      const expected = y >= 1 && y <= 9 && x >= 1 && x <= 9 ? k[y - 1]! * k[x - 1]! : 0;
      maxdiff = Math.max(maxdiff, Math.abs(out[y * 11 + x]! - expected));
    }
  }
  console.log(`impulse response maxdiff ${maxdiff}`);
  assert.ok(maxdiff < 1e-7);
});

Deno.test("gaussianBlur() at the border reads the reflect-101 mirror", () => {
  // One row, impulse at x = 0: the output at x = 1 gets k[3] (direct) only, since the mirror of
  // x = 0 is itself (not repeated); at x = 0 only the centre weight.
  const row = Float32Array.of(1, 0, 0, 0, 0, 0);
  const k = gaussianKernel(0.5); // 5 taps, centre 2
  const out = gaussianBlur(row, 6, 1, 1, 0.5);
  assert.ok(Math.abs(out[0]! - k[2]!) < 1e-7);
  assert.ok(Math.abs(out[1]! - k[1]!) < 1e-7);
  assert.ok(Math.abs(out[2]! - k[0]!) < 1e-7);
  // An impulse at x = 1 reaches x = 0 directly and through the mirror at -1.
  const out2 = gaussianBlur(Float32Array.of(0, 1, 0, 0, 0, 0), 6, 1, 1, 0.5);
  assert.ok(Math.abs(out2[0]! - 2 * k[1]!) < 1e-7);
});

Deno.test("gaussianBlur() is linear and its output stays within the input's range", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 9 }),
      fc.double({ min: 0.3, max: 4, noNaN: true }),
      fc.infiniteStream(fc.integer({ min: 0, max: 255 })),
      (w, h, sigma, values) => {
        const data = Float32Array.from({ length: w * h * 3 }, () => values.next().value);
        const out = gaussianBlur(data, w, h, 3, sigma);
        const lo = Math.min(...data);
        const hi = Math.max(...data);
        assert.ok(out.every((v) => v >= lo - 1e-3 && v <= hi + 1e-3));
        const doubled = gaussianBlur(data.map((v) => 2 * v), w, h, 3, sigma);
        doubled.forEach((v, i) => assert.ok(Math.abs(v - 2 * out[i]!) < 1e-3));
      },
    ),
    { numRuns: 100 },
  );
});
