import assert from "node:assert/strict";
import { NumpyRandomState } from "./numpy_random_state.ts";

Deno.test("NumpyRandomState equals np.random.seed(s); np.random.random_sample / uniform", () => {
  // Reference values printed by numpy 1.24: np.random.seed(0); np.random.random_sample(5), and
  // np.random.seed(42); np.random.random_sample(3).
  assert.deepEqual([...new NumpyRandomState(0).randomSample(5)], [
    0.5488135039273248,
    0.7151893663724195,
    0.6027633760716439,
    0.5448831829968969,
    0.4236547993389047,
  ]);
  assert.deepEqual([...new NumpyRandomState(42).randomSample(3)], [
    0.3745401188473625,
    0.9507143064099162,
    0.7319939418114051,
  ]);
  // uniform(0, 1) draws the same doubles; successive calls continue one stream.
  const state = new NumpyRandomState(0);
  assert.deepEqual([...state.uniform(0, 1, 2)], [0.5488135039273248, 0.7151893663724195]);
  assert.equal(state.randomSample(1)[0], 0.6027633760716439);
  assert.equal(new NumpyRandomState(0).uniform(2, 4, 1)[0], 2 + 2 * 0.5488135039273248);
});

Deno.test("NumpyRandomState rejects seeds numpy's legacy seeding rejects", () => {
  assert.throws(() => new NumpyRandomState(-1), RangeError);
  assert.throws(() => new NumpyRandomState(2 ** 32), RangeError);
  assert.throws(() => new NumpyRandomState(1.5), RangeError);
  assert.doesNotThrow(() => new NumpyRandomState(2 ** 32 - 1));
});
