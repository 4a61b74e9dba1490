import assert from "node:assert/strict";
import fc from "fast-check";
import type { RawImage } from "./codec.ts";
import { rgbToGray, toRgb } from "./gray.ts";

Deno.test("rgbToGray() is OpenCV's 15-bit fixed-point BT.601 formula", () => {
  const image: RawImage = {
    width: 4,
    height: 1,
    channels: 3,
    data: Uint8Array.of(255, 255, 255, 255, 0, 0, 0, 0, 255, 10, 20, 30),
  };
  // (9798 R + 19235 G + 3735 B + 16384) >> 15
  assert.deepEqual([...rgbToGray(image).data], [255, 76, 29, 18]);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), (v) => {
      // Gray stays gray: the weights sum to 2^15.
      const grey = rgbToGray({ width: 1, height: 1, channels: 3, data: Uint8Array.of(v, v, v) });
      assert.equal(grey.data[0], v);
    }),
  );
  // Alpha is ignored (COLOR_RGBA2GRAY); 1 channel is copied; 2 channels are refused.
  const rgba: RawImage = { width: 1, height: 1, channels: 4, data: Uint8Array.of(10, 20, 30, 0) };
  assert.equal(rgbToGray(rgba).data[0], 18);
  const one = rgbToGray({ width: 1, height: 1, channels: 1, data: Uint8Array.of(9) });
  assert.deepEqual([...one.data], [9]);
  assert.throws(
    () => rgbToGray({ width: 1, height: 1, channels: 2, data: new Uint8Array(2) }),
    TypeError,
  );
});

Deno.test("toRgb() repeats gray, copies RGB and composites alpha onto white like HWC3", () => {
  assert.deepEqual(
    [...toRgb({ width: 2, height: 1, channels: 1, data: Uint8Array.of(3, 200) }).data],
    [3, 3, 3, 200, 200, 200],
  );
  const rgba: RawImage = {
    width: 3,
    height: 1,
    channels: 4,
    data: Uint8Array.of(0, 0, 0, 0, 100, 50, 0, 255, 0, 0, 0, 128),
  };
  // alpha 128/255: 255 * (1 - 0.50196) = 127.0 (float32 rounding keeps it just under 127).
  assert.deepEqual([...toRgb(rgba).data], [255, 255, 255, 100, 50, 0, 126, 126, 126]);
  const rgb: RawImage = { width: 1, height: 1, channels: 3, data: Uint8Array.of(1, 2, 3) };
  const copy = toRgb(rgb);
  assert.deepEqual([...copy.data], [1, 2, 3]);
  assert.notEqual(copy.data, rgb.data);
});
