import assert from "node:assert/strict";
import { gaussianBlurU8, gaussianKernelU8 } from "./gaussian_blur_u8.ts";

interface BlurCase {
  input: [number, number, number];
  sigma: number;
  image: string;
  output: string;
}

const REFERENCE = JSON.parse(
  Deno.readTextFileSync(new URL("./testdata/gaussian_blur_u8.json", import.meta.url)),
) as { versions: { opencv: string }; cases: BlurCase[] };

function bytes(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

Deno.test(`gaussianBlurU8() equals cv2.GaussianBlur on uint8 bit for bit, OpenCV ${REFERENCE.versions.opencv}`, () => {
  for (const c of REFERENCE.cases) {
    const [w, h, channels] = c.input;
    const out = gaussianBlurU8(bytes(c.image), w, h, channels, c.sigma);
    const ref = bytes(c.output);
    let differ = 0;
    for (let i = 0; i < ref.length; i++) differ += out[i] !== ref[i] ? 1 : 0;
    console.log(`${w}x${h}x${channels} sigma ${c.sigma}: ${differ} of ${ref.length} bytes differ`);
    assert.equal(differ, 0);
  }
});

Deno.test("gaussianKernelU8() sizes and rounds the kernel as OpenCV's 8-bit path", () => {
  // cvRound(sigma * 6 + 1) | 1 taps, 8.8 fixed point summing to 256, symmetric.
  for (const [sigma, size] of [[3, 19], [0.8, 7], [2, 13], [5, 31]] as const) {
    const k = gaussianKernelU8(sigma);
    assert.equal(k.length, size);
    assert.equal(k.reduce((a, b) => a + b, 0), 256);
    assert.deepEqual([...k], [...k].reverse());
  }
  assert.throws(() => gaussianKernelU8(0), RangeError);
});
