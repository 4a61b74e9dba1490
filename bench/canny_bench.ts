/**
 * Canny on a 1024x1024 RGB image with many edges and long hysteresis chains (OpenCV's
 * cv2.Canny semantics, lib/image/canny.ts).
 */
import { canny } from "../lib/image/canny.ts";
import type { RawImage } from "../lib/image/codec.ts";

const size = 1024;
const data = new Uint8Array(size * size * 3);
let s = 1;
for (let i = 0; i < data.length; i++) {
  // Smooth shapes plus noise.
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  const p = Math.floor(i / 3);
  const x = p % size;
  const y = Math.floor(p / size);
  data[i] = (((x >> 5) ^ (y >> 5)) & 1 ? 200 : 40) + (s >>> 28);
}
const image: RawImage = { width: size, height: size, channels: 3, data };

Deno.bench({
  name: "canny 1024x1024 RGB (low 100, high 200)",
  fn() {
    canny(image, { low: 100, high: 200 });
  },
});
