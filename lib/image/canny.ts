/**
 * OpenCV's Canny edge detector, `cv2.Canny(image, low, high, apertureSize=3, L2gradient)`, in
 * TypeScript with the same integer arithmetic, so edge maps are equal pixel for pixel.
 *
 * Source: OpenCV 4.6.0 `modules/imgproc/src/canny.cpp` (`cv::Canny`, `parallelCanny`, `finalPass`)
 * and `deriv.cpp` (`cv::Sobel`), as built without IPP (Debian's python3-opencv, which made
 * ../shared/golden/canny). The steps, each as OpenCV does them:
 *
 * 1. Thresholds: swapped when `low > high`; with `L2gradient` each is clamped to 32767 and squared
 *    when positive; then floored to integers (`cvFloor`).
 * 2. Gradients: 3x3 Sobel per channel into int16 with `BORDER_REPLICATE`:
 *    dx = [-1 0 1; -2 0 2; -1 0 1], dy its transpose (right minus left, bottom minus top).
 * 3. Magnitude per channel: `|dx| + |dy|`, or `dx² + dy²` with `L2gradient`. With several channels
 *    each pixel keeps the channel of largest magnitude (the first on ties) and that channel's
 *    dx and dy. Magnitudes outside the image count as 0.
 * 4. Non-maximum suppression along the gradient, sectors from tan(22.5°) in 15-bit fixed point
 *    (`TG22 = 13573`): with x = |dx|, y = |dy| · 2^15, horizontal if y < 13573 x (m > left and
 *    m >= right), vertical if y > 13573 x + 2^16 x (m > above and m >= below), otherwise
 *    diagonal (m > both neighbours, up-left/down-right when dx and dy have the same sign,
 *    up-right/down-left otherwise). Only pixels with m > low are considered.
 * 5. Hysteresis: maxima with m > high are edges; maxima with m > low become edges when
 *    8-connected to an edge through such pixels. Edges are 255, the rest 0.
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import { checkPixels } from "./gray.ts";

/** Options for {@linkcode canny}. */
export interface CannyOptions {
  /** `threshold1` of cv2.Canny, default 100 (controlnet_aux's). */
  low?: number;
  /** `threshold2` of cv2.Canny, default 200 (controlnet_aux's). */
  high?: number;
  /** cv2's `L2gradient`: compare √(dx² + dy²) instead of |dx| + |dy|. Default false. */
  l2Gradient?: boolean;
}

/** TG22 = round(tan(22.5°) · 2^15), as canny.cpp has it. */
const TG22 = 13573;

/** Largest magnitude of a threshold cvFloor turns into an int without overflow. */
const INT_LIMIT = 2 ** 31;

/**
 * Edge map of an 8-bit image (1 to 4 interleaved channels, any order: OpenCV does not care),
 * equal pixel for pixel to `cv2.Canny(image, low, high, L2gradient=l2Gradient)` with the default
 * `apertureSize=3`. Returns one byte per pixel, row-major: 255 on edges, 0 elsewhere.
 *
 * Throws TypeError for a malformed image and RangeError for a threshold that is not a finite
 * number within ±2^31 (where OpenCV's int conversion overflows; with `l2Gradient` large positive
 * values are fine, being clamped to 32767 first).
 *
 * @example
 * ```ts
 * import { canny } from "./canny.ts";
 * // A vertical step from black to white: OpenCV marks the last dark column.
 * const data = Uint8Array.from({ length: 16 }, (_, i) => (i % 4 >= 2 ? 255 : 0));
 * const edges = canny({ width: 4, height: 4, channels: 1, data }, { low: 100, high: 200 });
 * console.assert(edges.join() === "0,255,0,0,0,255,0,0,0,255,0,0,0,255,0,0");
 * ```
 */
export function canny(image: RawImage, options: CannyOptions = {}): Uint8Array {
  checkPixels(image, "canny");
  const l2 = options.l2Gradient ?? false;
  if (typeof l2 !== "boolean") {
    throw new TypeError(`canny: l2Gradient must be a boolean, got ${typeof l2}`);
  }
  let lowT = checkThreshold(options.low ?? 100, "low", l2);
  let highT = checkThreshold(options.high ?? 200, "high", l2);
  // 1. Thresholds, as cv::Canny prepares them.
  if (lowT > highT) [lowT, highT] = [highT, lowT];
  if (l2) {
    lowT = Math.min(32767, lowT);
    highT = Math.min(32767, highT);
    if (lowT > 0) lowT *= lowT;
    if (highT > 0) highT *= highT;
  }
  const low = Math.floor(lowT);
  const high = Math.floor(highT);

  const { width, height } = image;
  // 2 and 3. Per pixel: the winning channel's dx, dy and magnitude.
  const { dx, dy, mag } = gradients(image, l2);

  // 4. Non-maximum suppression into a map with a one-pixel frame:
  //    0 = may be an edge, 1 = cannot be, 2 = is an edge.
  const mapStep = width + 2;
  const map = new Uint8Array(mapStep * (height + 2)).fill(1);
  const stack = new Int32Array(width * height);
  let top = 0;
  for (let i = 0; i < height; i++) {
    const row = (i + 1) * mapStep + 1;
    for (let j = 0; j < width; j++) {
      const k = row + j;
      const m = mag[k]!;
      if (m <= low) continue;
      const xs = dx[i * width + j]!;
      const ys = dy[i * width + j]!;
      const x = xs < 0 ? -xs : xs;
      const y = (ys < 0 ? -ys : ys) * 32768;
      const tg22x = x * TG22;
      let isMax: boolean;
      if (y < tg22x) {
        isMax = m > mag[k - 1]! && m >= mag[k + 1]!;
      } else if (y > tg22x + x * 65536) {
        isMax = m > mag[k - mapStep]! && m >= mag[k + mapStep]!;
      } else {
        const s = (xs ^ ys) < 0 ? -1 : 1;
        isMax = m > mag[k - mapStep - s]! && m > mag[k + mapStep + s]!;
      }
      if (!isMax) continue;
      if (m > high) {
        map[k] = 2;
        stack[top++] = k;
      } else {
        map[k] = 0;
      }
    }
  }

  // 5. Hysteresis: grow edges through 8-connected candidates (the frame of 1s stops it). Each
  //    pixel is pushed at most once, so the stack never outgrows width x height.
  const around = Int32Array.of(
    -mapStep - 1,
    -mapStep,
    -mapStep + 1,
    -1,
    1,
    mapStep - 1,
    mapStep,
    mapStep + 1,
  );
  while (top > 0) {
    const k = stack[--top]!;
    for (let n = 0; n < 8; n++) {
      const q = k + around[n]!;
      if (map[q] === 0) {
        map[q] = 2;
        stack[top++] = q;
      }
    }
  }

  const out = new Uint8Array(width * height);
  for (let i = 0; i < height; i++) {
    const row = (i + 1) * mapStep + 1;
    for (let j = 0; j < width; j++) out[i * width + j] = map[row + j] === 2 ? 255 : 0;
  }
  return out;
}

function checkThreshold(value: unknown, name: string, l2: boolean): number {
  if (typeof value !== "number") {
    throw new TypeError(`canny: the ${name} threshold must be a number, got ${typeof value}`);
  }
  // cvFloor of a value outside the int range gives INT_MIN on x86 (every maximum an edge);
  // refuse such values rather than copy that. With L2 large values are clamped to 32767 first.
  if (!Number.isFinite(value) || value <= -INT_LIMIT || (!l2 && value >= INT_LIMIT)) {
    throw new RangeError(
      `canny: the ${name} threshold ${value} is out of range: use a finite number, ` +
        `typically 0 to 255 (gradients reach 2040 with |dx| + |dy|)`,
    );
  }
  return value;
}

/**
 * Sobel dx, dy (3x3, BORDER_REPLICATE) of every channel, reduced per pixel to the channel with
 * the largest magnitude. `mag` is framed by one zero pixel on every side (stride width + 2).
 */
function gradients(
  image: RawImage,
  l2: boolean,
): { dx: Int16Array; dy: Int16Array; mag: Int32Array } {
  const { width: w, height: h, channels: cn, data } = image;
  const dx = new Int16Array(w * h);
  const dy = new Int16Array(w * h);
  const mapStep = w + 2;
  const mag = new Int32Array(mapStep * (h + 2));
  const stride = w * cn;
  for (let i = 0; i < h; i++) {
    const up = (i > 0 ? i - 1 : 0) * stride;
    const mid = i * stride;
    const down = (i < h - 1 ? i + 1 : i) * stride;
    const magRow = (i + 1) * mapStep + 1;
    for (let j = 0; j < w; j++) {
      const left = (j > 0 ? j - 1 : 0) * cn;
      const centre = j * cn;
      const right = (j < w - 1 ? j + 1 : j) * cn;
      let bestMag = -1;
      let bestDx = 0;
      let bestDy = 0;
      for (let c = 0; c < cn; c++) {
        const ul = data[up + left + c]!;
        const uc = data[up + centre + c]!;
        const ur = data[up + right + c]!;
        const ml = data[mid + left + c]!;
        const mr = data[mid + right + c]!;
        const dl = data[down + left + c]!;
        const dc = data[down + centre + c]!;
        const dr = data[down + right + c]!;
        const gx = ur - ul + 2 * (mr - ml) + dr - dl;
        const gy = dl - ul + 2 * (dc - uc) + dr - ur;
        const m = l2 ? gx * gx + gy * gy : (gx < 0 ? -gx : gx) + (gy < 0 ? -gy : gy);
        // Strictly greater: the first channel wins ties, as canny.cpp's maxIdx loop.
        if (m > bestMag) {
          bestMag = m;
          bestDx = gx;
          bestDy = gy;
        }
      }
      dx[i * w + j] = bestDx;
      dy[i * w + j] = bestDy;
      mag[magRow + j] = bestMag;
    }
  }
  return { dx, dy, mag };
}
