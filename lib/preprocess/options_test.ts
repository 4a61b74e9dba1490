import assert from "node:assert/strict";
import { type OptionSpec, resolveOptions } from "./options.ts";

const SPECS: OptionSpec[] = [
  { name: "low", type: "number", default: 100, min: 0, max: 1000, description: "low" },
  { name: "seed", type: "integer", default: 0, min: 0, description: "seed" },
  { name: "l2", type: "boolean", default: false, description: "l2" },
];

Deno.test("resolveOptions() fills in defaults and keeps given values", () => {
  assert.deepEqual(resolveOptions("k", SPECS), { low: 100, seed: 0, l2: false });
  assert.deepEqual(resolveOptions("k", SPECS, { low: 5.5, l2: true }), {
    low: 5.5,
    seed: 0,
    l2: true,
  });
  // undefined means "not given".
  assert.deepEqual(resolveOptions("k", SPECS, { low: undefined }), {
    low: 100,
    seed: 0,
    l2: false,
  });
});

Deno.test("resolveOptions() rejects unknown names, wrong types and out-of-range values", () => {
  assert.throws(() => resolveOptions("canny", SPECS, { lo: 1 }), {
    name: "RangeError",
    message: 'canny has no option "lo": use low, seed, l2',
  });
  assert.throws(() => resolveOptions("invert", [], { x: 1 }), /takes no options/);
  assert.throws(() => resolveOptions("k", SPECS, { low: "5" }), TypeError);
  assert.throws(() => resolveOptions("k", SPECS, { l2: 1 }), TypeError);
  assert.throws(() => resolveOptions("k", SPECS, { low: -1 }), {
    name: "RangeError",
    message: "k option low is -1, out of range: use a value from 0 to 1000",
  });
  assert.throws(() => resolveOptions("k", SPECS, { low: Number.NaN }), RangeError);
  assert.throws(() => resolveOptions("k", SPECS, { seed: 1.5 }), /whole number of at least 0/);
  assert.throws(
    () => resolveOptions("k", SPECS, null as unknown as Record<string, unknown>),
    TypeError,
  );
});
