import assert from "node:assert/strict";
import { resizeAreaAny, resizeLinear } from "./resize_linear.ts";
import { resizeLanczos4 } from "./resize_lanczos4.ts";
import { differing, fromBase64, noiseImage, OPENCV_OPS } from "./testdata/opencv_ops.ts";

const RESIZE = { linear: resizeLinear, area: resizeAreaAny, lanczos4: resizeLanczos4 };

Deno.test(
  `resizeLinear(), resizeAreaAny() and resizeLanczos4() match cv2.resize, OpenCV ${OPENCV_OPS.versions.opencv}`,
  () => {
    for (const c of OPENCV_OPS.resizes) {
      const [w, h, channels, seed] = c.input;
      const image = noiseImage(w, h, channels as 1 | 3, seed);
      const out = RESIZE[c.mode](image, c.size[0], c.size[1]);
      assert.equal(out.width, c.size[0]);
      assert.equal(out.height, c.size[1]);
      const d = differing(out.data, fromBase64(c.output));
      console.log(
        `${c.mode} ${w}x${h}x${channels} -> ${
          c.size.join("x")
        }: ${d.count} bytes differ (max ${d.max})`,
      );
      assert.equal(d.count, 0);
    }
  },
);

Deno.test("resizeLinear() returns a copy at the same size and rejects bad sizes", () => {
  const image = noiseImage(5, 4, 3, 1);
  const same = resizeLinear(image, 5, 4);
  assert.deepEqual(same.data, image.data);
  assert.notEqual(same.data, image.data);
  assert.throws(() => resizeLinear(image, 0, 4), RangeError);
  assert.throws(() => resizeLanczos4(image, 3, 0.5), RangeError);
});
