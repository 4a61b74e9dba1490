import assert from "node:assert/strict";
import { resizeLinearFloat } from "./resize_linear_float.ts";

interface ResizeCase {
  input: [number, number];
  size: [number, number];
  plane: string;
  output: string;
}

const REFERENCE = JSON.parse(
  Deno.readTextFileSync(new URL("./testdata/resize_linear_float.json", import.meta.url)),
) as { versions: { opencv: string }; cases: ResizeCase[] };

function floats(text: string): Float32Array {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

Deno.test(`resizeLinearFloat() matches cv2.resize INTER_LINEAR on float32, OpenCV ${REFERENCE.versions.opencv}`, () => {
  for (const c of REFERENCE.cases) {
    const [w, h] = c.input;
    const [ow, oh] = c.size;
    const out = resizeLinearFloat(floats(c.plane), w, h, ow, oh);
    const ref = floats(c.output);
    assert.equal(out.length, ref.length);
    let maxdiff = 0;
    for (let i = 0; i < ref.length; i++) maxdiff = Math.max(maxdiff, Math.abs(out[i]! - ref[i]!));
    console.log(`${w}x${h} -> ${ow}x${oh}: maxdiff ${maxdiff}`);
    // Bit for bit (float64 rounding of a multiply-add may differ from a fused one in a tie).
    assert.equal(maxdiff, 0);
  }
});

Deno.test("resizeLinearFloat() interpolates at half-pixel centres and rejects bad sizes", () => {
  // 2 -> 4: centres at -0.25 (clamped to the first), 0.25, 0.75, 1.25 (clamped to the last).
  assert.deepEqual([...resizeLinearFloat(Float32Array.of(0, 1), 2, 1, 4, 1)], [0, 0.25, 0.75, 1]);
  // Vertical: the same rule on rows.
  assert.deepEqual([...resizeLinearFloat(Float32Array.of(0, 8), 1, 2, 1, 4)], [0, 2, 6, 8]);
  // An exact 2x shrink blends each 2x2 block half and half.
  assert.deepEqual([...resizeLinearFloat(Float32Array.of(1, 2, 3, 4), 2, 2, 1, 1)], [2.5]);
  const same = Float32Array.of(1, 2, 3);
  const copy = resizeLinearFloat(same, 3, 1, 3, 1);
  assert.deepEqual(copy, same);
  assert.notEqual(copy, same);
  assert.throws(() => resizeLinearFloat(same, 3, 1, 0, 1), RangeError);
  assert.throws(() => resizeLinearFloat(same, 4, 1, 2, 1), TypeError);
});
