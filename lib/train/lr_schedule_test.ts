import assert from "node:assert/strict";
import { learningRateAt, lrFactor } from "./lr_schedule.ts";

Deno.test("lrFactor() follows Diffusers' get_scheduler lambdas", () => {
  const base = { lr: 1e-4, warmupSteps: 4, totalSteps: 20 };
  // constant ignores warm-up; constant_with_warmup ramps step / warmup.
  assert.deepEqual([0, 2, 10].map((k) => lrFactor({ ...base, name: "constant" }, k)), [1, 1, 1]);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 19].map((k) => lrFactor({ ...base, name: "constant_with_warmup" }, k)),
    [0, 0.25, 0.5, 0.75, 1, 1],
  );
  // cosine: 0.5 * (1 + cos(pi * (k - 4) / 16)) after warm-up.
  const cosine = { ...base, name: "cosine" as const };
  for (const k of [4, 8, 12, 16, 20]) {
    const want = 0.5 * (1 + Math.cos(Math.PI * (k - 4) / 16));
    assert.ok(Math.abs(lrFactor(cosine, k) - want) < 1e-15, `cosine at ${k}`);
  }
  assert.equal(lrFactor(cosine, 2), 0.5);
  // linear: (total - k) / (total - warmup)
  assert.equal(lrFactor({ ...base, name: "linear" }, 12), 8 / 16);
  assert.equal(learningRateAt(cosine, 12), 1e-4 * 0.5 * (1 + Math.cos(Math.PI / 2)));
});
