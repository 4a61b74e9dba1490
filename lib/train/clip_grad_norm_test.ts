import assert from "node:assert/strict";
import { clipGradNorm } from "./clip_grad_norm.ts";

Deno.test("clipGradNorm() scales by max_norm / (norm + 1e-6) over all tensors, only above the norm", () => {
  const grads = { a: Float32Array.of(1, 2, 2), b: Float32Array.of(4, 0) }; // norms 3 and 4: total 5
  const norm = clipGradNorm(grads, 1);
  assert.equal(norm, 5);
  const coef = Math.fround(1 / Math.fround(5 + 1e-6));
  assert.deepEqual([...grads.a], [1, 2, 2].map((v) => Math.fround(v * coef)));
  assert.deepEqual([...grads.b], [Math.fround(4 * coef), 0]);
  const small = { a: Float32Array.of(0.3, 0.4) };
  assert.ok(Math.abs(clipGradNorm(small, 1) - 0.5) < 1e-7);
  assert.deepEqual([...small.a], [Math.fround(0.3), Math.fround(0.4)], "below the norm: unchanged");
  assert.throws(() => clipGradNorm(small, 0), /Cannot clip/);
});
