import assert from "node:assert/strict";
import { invertControl, invertPreprocessor } from "./invert.ts";

Deno.test("invertControl() is 255 - HWC3(image)", async () => {
  const rgb = {
    width: 2,
    height: 1,
    channels: 3 as const,
    data: Uint8Array.of(0, 1, 2, 253, 254, 255),
  };
  assert.deepEqual([...invertControl(rgb).data], [255, 254, 253, 2, 1, 0]);
  assert.deepEqual([...rgb.data], [0, 1, 2, 253, 254, 255]); // the input is left alone
  const gray = { width: 1, height: 1, channels: 1 as const, data: Uint8Array.of(55) };
  assert.deepEqual([...(await invertPreprocessor.run(gray)).data], [200, 200, 200]);
  await assert.rejects(() => invertPreprocessor.run(gray, { strength: 1 }), RangeError);
});
