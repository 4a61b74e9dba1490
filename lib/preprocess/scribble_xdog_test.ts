import assert from "node:assert/strict";
import type { RawImage } from "../image/codec.ts";
import { scribbleXdogControl, scribbleXdogPreprocessor } from "./scribble_xdog.ts";

/** White 24x24 with a vertical one-pixel line of `value` at x = 12. */
function line(value: number): RawImage {
  const data = new Uint8Array(24 * 24 * 3).fill(255);
  for (let y = 0; y < 24; y++) data.fill(value, (y * 24 + 12) * 3, (y * 24 + 13) * 3);
  return { width: 24, height: 24, channels: 3, data };
}

const at = (image: RawImage, x: number, y: number) => image.data[(y * image.width + x) * 3]!;

Deno.test("scribbleXdogControl() turns a dark line into a one-pixel white stroke", () => {
  const out = scribbleXdogControl(line(128));
  for (let y = 0; y < 24; y++) {
    assert.equal(at(out, 12, y), 255);
    assert.equal(at(out, 11, y), 0);
    assert.equal(at(out, 13, y), 0);
  }
  assert.ok(out.data.every((v) => v === 0 || v === 255));
  // All three channels are the same mask.
  for (let i = 0; i < 24 * 24; i++) {
    assert.equal(out.data[i * 3], out.data[i * 3 + 1]);
    assert.equal(out.data[i * 3], out.data[i * 3 + 2]);
  }
  // A blank image has no strokes.
  const blank: RawImage = { width: 8, height: 8, channels: 3, data: new Uint8Array(192).fill(90) };
  assert.ok(scribbleXdogControl(blank).data.every((v) => v === 0));
});

Deno.test("scribbleXdogControl() keeps the extension's uint8 wrap of 2 * (255 - dog)", () => {
  // On a black line, 255 - dog is about 181: 2 * 181 = 362 wraps to 106 in uint8. So the
  // stroke survives a threshold of 100 but not 110, although 362 > 110.
  assert.equal(at(scribbleXdogControl(line(0), { threshold: 100 }), 12, 5), 255);
  assert.equal(at(scribbleXdogControl(line(0), { threshold: 110 }), 12, 5), 0);
  // The grey line's 2 * (255 - dog) is about 180 with no wrap: kept at 110, dropped at 190.
  assert.equal(at(scribbleXdogControl(line(128), { threshold: 110 }), 12, 5), 255);
  assert.equal(at(scribbleXdogControl(line(128), { threshold: 190 }), 12, 5), 0);
});

Deno.test("the scribble_xdog preprocessor validates its threshold", async () => {
  await assert.rejects(() => scribbleXdogPreprocessor.run(line(0), { threshold: -1 }), RangeError);
  await assert.rejects(() => scribbleXdogPreprocessor.run(line(0), { threshold: 300 }), RangeError);
  await assert.rejects(() => scribbleXdogPreprocessor.run(line(0), { sigma: 1 }), RangeError);
});
