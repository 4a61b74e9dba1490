import assert from "node:assert/strict";
import type { RawImage } from "../image/codec.ts";
import { lineartStandardControl, lineartStandardPreprocessor } from "./lineart_standard.ts";

function page(lines: Array<[number, number]>): RawImage {
  const data = new Uint8Array(32 * 32 * 3).fill(240);
  for (const [x, value] of lines) {
    for (let y = 0; y < 32; y++) data.fill(value, (y * 32 + x) * 3, (y * 32 + x + 1) * 3);
  }
  return { width: 32, height: 32, channels: 3, data };
}

const at = (image: RawImage, x: number, y: number) => image.data[(y * image.width + x) * 3]!;

Deno.test("lineartStandardControl() scales the median line pixel to 127, background to 0", () => {
  // One full-height line: every line pixel has the same darkness, which is the median.
  const out = lineartStandardControl(page([[16, 20]]));
  for (let y = 0; y < 32; y++) {
    assert.equal(at(out, 16, y), 127);
    assert.equal(at(out, 4, y), 0);
  }
  // A second, fainter line of equal length: the median is the mean of the two levels, the dark
  // line lands above 127 and the faint one below.
  const two = lineartStandardControl(page([[8, 20], [24, 160]]));
  assert.ok(at(two, 8, 10) > 127 && at(two, 24, 10) < 127 && at(two, 24, 10) > 0);
});

Deno.test("lineartStandardControl() divides by 16 when nothing passes the threshold", () => {
  // A faint line: darkness ~5 (< 8) enters no median; v / 16 * 127 is then ~40.
  const faint = lineartStandardControl(page([[16, 235]]));
  const v = at(faint, 16, 3);
  assert.ok(v > 30 && v < 45, `got ${v}`);
  assert.ok(lineartStandardControl(page([])).data.every((x) => x === 0));
});

Deno.test("the lineart_standard preprocessor validates sigma and threshold", async () => {
  await assert.rejects(() => lineartStandardPreprocessor.run(page([]), { sigma: 0 }), RangeError);
  await assert.rejects(
    () => lineartStandardPreprocessor.run(page([]), { threshold: 256 }),
    RangeError,
  );
  const out = await lineartStandardPreprocessor.run(page([[16, 20]]), { sigma: 3, threshold: 20 });
  assert.equal(at(out, 16, 0), 127);
});
