/**
 * The annotators' "fake scribble" of a soft-edge map (the A1111 extension's `scribble_hed` and
 * `scribble_pidinet`, controlnet_aux's `scribble=True`): thin the edges by non-maximum suppression
 * along four directions, then thicken what is left into strokes.
 *
 * ```
 * nms(x, t=127, s=3):  x = GaussianBlur(float32(x), sigma 3)
 *                      y = x where x is the largest of itself and its two neighbours along a
 *                          horizontal, vertical or diagonal line (cv2.dilate with a 3x3 line), else 0
 *                      z = 255 where y > 127, else 0
 * scribble:            GaussianBlur(z, sigma 3) on 8 bits, 255 where > 4, else 0
 * ```
 *
 * The first blur is on float32 (lib/image/gaussian_blur.ts, within about 1e-5 relative of
 * OpenCV's, so a local maximum that OpenCV's rounding decides can differ); the second is OpenCV's
 * bit-exact 8-bit blur (lib/image/gaussian_blur_u8.ts).
 *
 * @module
 */
import { gaussianBlur } from "../image/gaussian_blur.ts";
import { gaussianBlurU8 } from "../image/gaussian_blur_u8.ts";

/** The four 3x3 line kernels of `nms`, as neighbour offsets [dx, dy] (the centre always counts). */
const LINES: ReadonlyArray<ReadonlyArray<readonly [number, number]>> = [
  [[-1, 0], [1, 0]], // f1: horizontal
  [[0, -1], [0, 1]], // f2: vertical
  [[-1, -1], [1, 1]], // f3: main diagonal
  [[1, -1], [-1, 1]], // f4: anti-diagonal
];

/**
 * The annotators' `nms(x, t, s)` on a gray 8-bit map: 255 where a blurred ridge peaks above `t`.
 *
 * @example
 * ```ts
 * import { edgeNms } from "./fake_scribble.ts";
 * // A bright vertical line keeps (thin) ridge pixels, the flat background none.
 * const w = 21, h = 21;
 * const map = new Uint8Array(w * h);
 * for (let y = 0; y < h; y++) map.fill(255, y * w + 9, y * w + 12);
 * const z = edgeNms(map, w, h);
 * console.assert(z[10 * w + 10] === 255 && z[10 * w + 2] === 0);
 * ```
 */
export function edgeNms(
  gray: Uint8Array,
  width: number,
  height: number,
  threshold = 127,
  sigma = 3,
): Uint8Array {
  const x = gaussianBlur(
    Float32Array.from(gray.subarray(0, width * height)),
    width,
    height,
    1,
    sigma,
  );
  const out = new Uint8Array(width * height);
  for (let py = 0; py < height; py++) {
    for (let px = 0; px < width; px++) {
      const v = x[py * width + px]!;
      // np.putmask(y, dilate(x, f) == x, x) for each f; then y > t. Neighbours outside the image
      // do not count (dilate's default border).
      let kept = false;
      for (const line of LINES) {
        let isMax = true;
        for (const [dx, dy] of line) {
          const nx = px + dx;
          const ny = py + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          if (x[ny * width + nx]! > v) isMax = false;
        }
        if (isMax) {
          kept = true;
          break;
        }
      }
      if (kept && v > threshold) out[py * width + px] = 255;
    }
  }
  return out;
}

/**
 * The fake scribble of a gray 8-bit soft-edge map: {@linkcode edgeNms}, then the 8-bit Gaussian
 * blur (sigma 3) and 255 where it is above 4.
 *
 * @example
 * ```ts
 * import { fakeScribble } from "./fake_scribble.ts";
 * const w = 21, h = 21;
 * const map = new Uint8Array(w * h);
 * for (let y = 0; y < h; y++) map.fill(255, y * w + 9, y * w + 12);
 * const s = fakeScribble(map, w, h);
 * console.assert(s[10 * w + 10] === 255 && s[10 * w + 0] === 0);
 * ```
 */
export function fakeScribble(gray: Uint8Array, width: number, height: number): Uint8Array {
  const blurred = gaussianBlurU8(edgeNms(gray, width, height, 127, 3), width, height, 1, 3);
  return blurred.map((v) => (v > 4 ? 255 : 0));
}
