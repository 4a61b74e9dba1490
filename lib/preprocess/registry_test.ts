import assert from "node:assert/strict";
import fc from "fast-check";
import type { RawImage } from "../image/codec.ts";
import {
  getPreprocessor,
  isPreprocessorKind,
  preprocess,
  PREPROCESSOR_KINDS,
  PREPROCESSORS,
  resolvePreprocessOptions,
} from "./registry.ts";

Deno.test("the registry lists every kind with a summary and its options", () => {
  assert.deepEqual(PREPROCESSOR_KINDS, [
    "canny",
    "tile",
    "shuffle",
    "scribble_xdog",
    "lineart_standard",
    "invert",
    "depth",
    "openpose",
    "softedge",
    "lineart",
  ]);
  for (const kind of PREPROCESSOR_KINDS) {
    const p = PREPROCESSORS[kind];
    assert.equal(p.kind, kind);
    assert.ok(p.summary.length > 0 && p.reference.length > 0);
    // Every default is valid.
    assert.doesNotThrow(() => resolvePreprocessOptions(kind));
    for (const o of p.options) assert.ok(o.description.length > 0, `${kind}.${o.name}`);
  }
  assert.ok(isPreprocessorKind("shuffle"));
  assert.ok(!isPreprocessorKind("toString"));
});

Deno.test("getPreprocessor() names the known kinds when the kind is unknown", () => {
  assert.throws(() => getPreprocessor("hed"), {
    name: "RangeError",
    message:
      'Unknown preprocessor "hed": use one of canny, tile, shuffle, scribble_xdog, lineart_standard, invert, depth, openpose, softedge, lineart',
  });
  assert.throws(() =>
    preprocess({ width: 1, height: 1, channels: 1, data: new Uint8Array(1) }, "x")
  );
});

Deno.test("resolvePreprocessOptions() returns every option with defaults (what a Job records)", () => {
  assert.deepEqual(resolvePreprocessOptions("canny", { high: 150 }), {
    low: 100,
    high: 150,
    l2: false,
    gray: false,
  });
  assert.deepEqual(resolvePreprocessOptions("shuffle"), { seed: 0, f: 256 });
  assert.deepEqual(resolvePreprocessOptions("invert"), {});
  assert.throws(() => resolvePreprocessOptions("tile", { rate: 2 }), RangeError);
});

Deno.test("every preprocessor returns 8-bit RGB of the input's size for 1 to 4 channels", async () => {
  await fc.assert(
    fc.asyncProperty(
      // Model-based kinds are run end to end in depth_test.ts, openpose_test.ts, softedge_test.ts
      // and lineart_test.ts.
      fc.constantFrom(...PREPROCESSOR_KINDS.filter((k) => PREPROCESSORS[k].model === undefined)),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 0, max: 2 ** 31 }),
      async (kind, channels, width, height, seed) => {
        const data = new Uint8Array(width * height * channels);
        let s = seed;
        for (let i = 0; i < data.length; i++) {
          s = (Math.imul(s, 1103515245) + 12345) >>> 0;
          data[i] = s >>> 24;
        }
        const image: RawImage = { width, height, channels: channels as RawImage["channels"], data };
        const out = await preprocess(image, kind);
        assert.deepEqual([out.width, out.height, out.channels], [width, height, 3]);
        assert.equal(out.data.length, width * height * 3);
      },
    ),
    { numRuns: 60 },
  );
});
