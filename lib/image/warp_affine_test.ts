import assert from "node:assert/strict";
import { getAffineTransform, warpAffine } from "./warp_affine.ts";
import { differing, fromBase64, noiseImage, OPENCV_OPS } from "./testdata/opencv_ops.ts";

Deno.test(
  `getAffineTransform() and warpAffine() match OpenCV ${OPENCV_OPS.versions.opencv}`,
  () => {
    for (const c of OPENCV_OPS.warps) {
      const m = getAffineTransform(c.src, c.dst);
      const maxdiff = Math.max(...m.map((v, i) => Math.abs(v - c.matrix[i]!)));
      console.log(`matrix ${c.src.flat()}: maxdiff ${maxdiff}`);
      assert.ok(maxdiff <= 1e-12, `matrix ${m} vs ${c.matrix}`);
      const [w, h, seed] = c.input;
      const out = warpAffine(noiseImage(w, h, 3, seed), m, c.size[0], c.size[1]);
      const d = differing(out.data, fromBase64(c.output));
      console.log(`warp ${w}x${h} -> ${c.size.join("x")}: ${d.count} bytes differ (max ${d.max})`);
      assert.equal(d.count, 0);
    }
  },
);

Deno.test("getAffineTransform() rejects collinear points", () => {
  assert.throws(() => getAffineTransform([[0, 0], [1, 1], [2, 2]], [[0, 0], [1, 0], [0, 1]]), {
    name: "RangeError",
    message: /collinear/,
  });
});
