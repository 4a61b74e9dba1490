import assert from "node:assert/strict";
import { nearestSourceIndices } from "./resize_vjp.ts";
import { checkGradients, logReport } from "./testing.ts";

Deno.test("nearestSourceIndices() follows PyTorch nearest (asymmetric, floor)", () => {
  assert.deepEqual(nearestSourceIndices(3, 6, 2, "asymmetric", "floor"), [0, 0, 1, 1, 2, 2]);
  // upsampling 3 -> 5 (the UNet's odd sizes): floor(x * 3 / 5)
  assert.deepEqual(nearestSourceIndices(3, 5, 5 / 3, "asymmetric", "floor"), [0, 0, 1, 1, 2]);
});

const cases = [
  { name: "x2 by scales (the UNet's upsampler)", x: [1, 2, 3, 4], scales: [1, 1, 2, 2] },
  { name: "to skip size 5x7 by sizes", x: [2, 1, 3, 4], sizes: [2, 1, 5, 7] },
  {
    name: "half_pixel round_prefer_floor x2",
    x: [1, 1, 3, 3],
    scales: [1, 1, 2, 2],
    mode: "half_pixel",
  },
];
for (const c of cases) {
  Deno.test(`Resize (nearest) VJP matches finite differences: ${c.name} (float32)`, async () => {
    logReport(
      `Resize ${c.name}`,
      await checkGradients({
        dtype: "float32",
        inputs: { x: { shape: c.x } },
        build: (g, { x }) => {
          const attrs = c.mode === undefined
            ? {
              mode: "nearest",
              coordinate_transformation_mode: "asymmetric",
              nearest_mode: "floor",
            }
            : { mode: "nearest", coordinate_transformation_mode: c.mode };
          return c.sizes === undefined
            ? g.op("Resize", [x!, null, g.constant(c.scales!, "float32", [4])], attrs)
            : g.op("Resize", [x!, null, null, g.ints(c.sizes)], attrs);
        },
      }),
    );
  });
}
