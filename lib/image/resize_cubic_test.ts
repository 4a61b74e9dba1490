import assert from "node:assert/strict";
import { cubicWeights, resizeCubicPlane } from "./resize_cubic.ts";

Deno.test("cubicWeights() is Keys' kernel with A = -0.75, summing to 1", () => {
  assert.deepEqual(cubicWeights(0), [0, 1, 0, 0]);
  // At x = 0.5: A/8 (1.5³ - 5 * 1.5² + 8 * 1.5 - 4) = -0.09375, and (A + 2) / 8 - (A + 3) / 4 + 1.
  const [a, b, c, d] = cubicWeights(0.5);
  assert.equal(a, -0.09375);
  assert.equal(b, 0.59375);
  assert.equal(c, 0.59375);
  assert.equal(d, -0.09375);
  for (const x of [0.1, 0.3, 0.77, 0.999]) {
    const w = cubicWeights(Math.fround(x));
    assert.ok(Math.abs(w.reduce((s, v) => s + v, 0) - 1) < 1e-6);
  }
});

Deno.test("resizeCubicPlane() copies at the same size and keeps constants", () => {
  const src = Float64Array.from({ length: 12 }, (_, i) => Math.sin(i) * 10);
  assert.deepEqual([...resizeCubicPlane(src, 4, 3, 4, 3)], [...src]);
  const out = resizeCubicPlane(new Float64Array(6).fill(0.25), 3, 2, 17, 9);
  assert.ok(out.every((v) => Math.abs(v - 0.25) < 1e-7));
});

Deno.test("resizeCubicPlane() samples at (d + 0.5) / scale - 0.5 with edge-clamped taps", () => {
  // [0, 10, 20, 30] enlarged 2x. Output 3 sits at 1.25: weights at 0.25 are
  // (-0.10546875, 0.87890625, 0.26171875, -0.03515625), so 8.7890625 + 5.234375 - 1.0546875
  // (A = -0.75 overshoots the line's 12.5). Output 0 sits at -0.25: taps -2, -1, 0, 1 clamp to
  // 0, 0, 0, 1, leaving 10 * -0.10546875.
  const out = resizeCubicPlane(Float64Array.of(0, 10, 20, 30), 4, 1, 8, 1);
  assert.equal(out[3], 12.96875);
  assert.equal(out[0], -1.0546875);
  // Symmetric data gives symmetric output.
  const sym = resizeCubicPlane(Float64Array.of(1, 5, 5, 1), 4, 1, 8, 1);
  for (let i = 0; i < 4; i++) assert.equal(sym[i], sym[7 - i]);
});

Deno.test("resizeCubicPlane() with a window equals cropping the full result", () => {
  const src = Float64Array.from({ length: 5 * 4 }, (_, i) => (i * 7919) % 13);
  const full = resizeCubicPlane(src, 5, 4, 23, 19);
  const part = resizeCubicPlane(src, 5, 4, 23, 19, { x: 3, y: 5, width: 11, height: 7 });
  for (let y = 0; y < 7; y++) {
    for (let x = 0; x < 11; x++) assert.equal(part[y * 11 + x], full[(y + 5) * 23 + x + 3]);
  }
  assert.throws(() => resizeCubicPlane(src, 5, 4, 23, 19, { x: 20, y: 0, width: 5, height: 1 }));
});
