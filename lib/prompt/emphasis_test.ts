import assert from "node:assert/strict";
import { applyEmphasis } from "./emphasis.ts";

Deno.test("applyEmphasis() 'original' scales tokens and restores each chunk's mean", () => {
  // 2 chunks, 3 tokens, dim 2.
  const hidden = new Float32Array([1, 2, 3, 4, 5, 6, -1, 0.5, 2, 2, 1, 3]);
  const weights = new Float32Array([1, 1.1, 0.9, 1, 2, 1]);
  const out = applyEmphasis(hidden, [2, 3, 2], weights, "original");
  for (let c = 0; c < 2; c++) {
    const slice = (a: Float32Array) => Array.from(a.subarray(c * 6, c * 6 + 6));
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const diff = Math.abs(mean(slice(out)) - mean(slice(hidden)));
    assert.ok(diff < 1e-6, `chunk ${c} mean moved by ${diff}`);
  }
  // Reference: z * w, then * (mean(z) / mean(z * w)), computed in float64.
  const z = [1, 2, 3, 4, 5, 6];
  const w = [1, 1, 1.1, 1.1, 0.9, 0.9];
  const zw = z.map((v, i) => v * (w[i] as number));
  const ratio = (21 / 6) / (zw.reduce((s, x) => s + x, 0) / 6);
  const maxdiff = Math.max(...zw.map((v, i) => Math.abs(v * ratio - (out[i] as number))));
  assert.ok(maxdiff < 1e-6, `maxdiff ${maxdiff}`);
});

Deno.test("applyEmphasis() 'no-norm' only multiplies; 'none' and 'ignore' copy", () => {
  const hidden = new Float32Array([1, 2, 3, 4]);
  const weights = new Float32Array([2, 0.5]);
  assert.deepEqual(Array.from(applyEmphasis(hidden, [1, 2, 2], weights, "no-norm")), [
    2,
    4,
    1.5,
    2,
  ]);
  for (const mode of ["none", "ignore"] as const) {
    const out = applyEmphasis(hidden, [1, 2, 2], weights, mode);
    assert.deepEqual(Array.from(out), [1, 2, 3, 4]);
    assert.notEqual(out, hidden);
  }
});

Deno.test("applyEmphasis() rejects mismatched shapes with TypeError", () => {
  const hidden = new Float32Array(8);
  assert.throws(() => applyEmphasis(hidden, [1, 2, 3], new Float32Array(2), "original"), TypeError);
  assert.throws(() => applyEmphasis(hidden, [2, 2, 2], new Float32Array(3), "original"), TypeError);
});
