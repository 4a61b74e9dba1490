import assert from "node:assert/strict";
import { numpyArange, roundHalfEven } from "./numpy.ts";
import { img2imgSlice, spacedTimesteps } from "./timesteps.ts";

Deno.test("spacedTimesteps() follows numpy for leading / linspace / trailing", () => {
  assert.deepEqual(Array.from(spacedTimesteps("leading", 1000, 4, 1)), [751, 501, 251, 1]);
  assert.deepEqual(Array.from(spacedTimesteps("linspace", 1000, 4, 0)), [999, 666, 333, 0]);
  assert.deepEqual(Array.from(spacedTimesteps("trailing", 1000, 4, 0)), [999, 749, 499, 249]);
  // 1000 / 16 = 62.5: numpy rounds 937.5 to 938 and 812.5 to 812 (half to even).
  const t16 = spacedTimesteps("trailing", 1000, 16, 0);
  assert.deepEqual(Array.from(t16.slice(0, 4)), [999, 937, 874, 811]);
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(-0.5), -0);
  assert.deepEqual(Array.from(numpyArange(10, 0, -2.5)), [10, 7.5, 5, 2.5]);
});

Deno.test("img2imgSlice() equals get_timesteps", () => {
  const ts = new Float64Array([9, 8, 8, 7, 7, 6]);
  const r = img2imgSlice(ts, 3, 0.75, 2);
  assert.equal(r.startIndex, 2);
  assert.deepEqual(Array.from(r.timesteps), [8, 7, 7, 6]);
  assert.throws(() => img2imgSlice(ts, 3, 1.5, 2), RangeError);
});
