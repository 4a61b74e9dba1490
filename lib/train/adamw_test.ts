import assert from "node:assert/strict";
import { AdamW } from "./adamw.ts";

/** torch.optim.AdamW's update in float64 (the reference formula). */
function reference(
  p: number[],
  grads: number[][],
  lr: number,
  [b1, b2]: [number, number],
  eps: number,
  wd: number,
): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const out = [...p];
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < out.length; i++) {
      out[i] = out[i]! * (1 - lr * wd);
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! ** 2;
      const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - b2 ** t) + eps;
      out[i] = out[i]! - (lr / (1 - b1 ** t)) * (m[i]! / denom);
    }
  });
  return out;
}

Deno.test("AdamW.step() follows torch.optim.AdamW (decoupled decay, bias corrections, eps) over 5 steps", () => {
  const init = [0.5, -0.25, 1e-3, 2, 0];
  const grads = [
    [0.1, -0.2, 1e-9, 3, 0],
    [0.05, 0.1, -2e-9, -1, 0],
    [-0.3, 0.0, 5e-9, 0.5, 0],
    [0.2, -0.1, 0, 0.25, 0],
    [0.01, 0.4, 1e-8, -2, 0],
  ];
  const opt = new AdamW({ lr: 1e-2, betas: [0.8, 0.99], eps: 1e-8, weightDecay: 0.1 });
  const params = { w: Float32Array.from(init), untouched: Float32Array.of(7) };
  for (const g of grads) opt.step(params, { w: Float32Array.from(g) });
  const want = reference(init, grads, 1e-2, [0.8, 0.99], 1e-8, 0.1);
  let diff = 0;
  want.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - params.w[i]!))));
  console.log(
    `AdamW vs float64 formula after 5 steps: maxdiff ${diff.toExponential(2)} (tolerance 1e-6)`,
  );
  assert.ok(diff <= 1e-6);
  assert.equal(params.untouched[0], 7, "a parameter without a gradient is left alone");
  assert.equal(opt.stateOf("w")?.step, 5);
  assert.equal(opt.stateOf("untouched"), undefined);
});

Deno.test("AdamW state round-trips through stateDict() and rejects mismatched inputs", () => {
  const a = new AdamW({ lr: 1e-3 });
  const p1 = { w: Float32Array.of(1, 2) };
  a.step(p1, { w: Float32Array.of(0.1, -0.1) });
  const b = new AdamW({ lr: 1e-3 });
  b.loadStateDict(a.stateDict());
  const p2 = { w: p1.w.slice() };
  a.step(p1, { w: Float32Array.of(0.3, 0.2) });
  b.step(p2, { w: Float32Array.of(0.3, 0.2) });
  assert.deepEqual(p1.w, p2.w);
  assert.throws(() => a.step(p1, { v: Float32Array.of(1) }), /has no parameter/);
  assert.throws(() => a.step(p1, { w: Float32Array.of(1) }), /2 values but its gradient 1/);
  assert.throws(() => new AdamW({ lr: -1 }), /lr must be >= 0/);
});
