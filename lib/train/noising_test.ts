import assert from "node:assert/strict";
import { addNoisePerItem, trainingSchedule, trainingTarget, velocityPerItem } from "./noising.ts";

const SD = { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 };

Deno.test("addNoisePerItem() and velocityPerItem() use each item's own timestep", () => {
  const { alphasCumprod: acp } = trainingSchedule(SD);
  const x = Float32Array.of(1, 2, 3, 4);
  const e = Float32Array.of(-1, 0.5, 0.25, 2);
  const noisy = addNoisePerItem(acp, x, e, [10, 900]);
  const v = velocityPerItem(acp, x, e, [10, 900]);
  for (let i = 0; i < 4; i++) {
    const a = acp[i < 2 ? 10 : 900]!;
    assert.ok(Math.abs(noisy[i]! - (Math.sqrt(a) * x[i]! + Math.sqrt(1 - a) * e[i]!)) < 1e-6);
    assert.ok(Math.abs(v[i]! - (Math.sqrt(a) * e[i]! - Math.sqrt(1 - a) * x[i]!)) < 1e-6);
  }
  assert.equal(trainingTarget("epsilon", acp, x, e, [10, 900]), e);
  assert.deepEqual(trainingTarget("v_prediction", acp, x, e, [10, 900]), v);
});

Deno.test("noising rejects fractional or out-of-range timesteps and uneven batches", () => {
  const { alphasCumprod: acp } = trainingSchedule(SD);
  const x = new Float32Array(4);
  assert.throws(() => addNoisePerItem(acp, x, x, [1000]), /not an integer in \[0, 1000\)/);
  assert.throws(() => addNoisePerItem(acp, x, x, [1.5]), /not an integer/);
  assert.throws(() => addNoisePerItem(acp, x, x, [1, 2, 3]), /one per batch item/);
  assert.throws(() => trainingTarget("sample", acp, x, x, [1]), /use epsilon or v_prediction/);
  assert.equal(
    trainingSchedule({ ...SD, prediction_type: "v_prediction" }).predictionType,
    "v_prediction",
  );
});
