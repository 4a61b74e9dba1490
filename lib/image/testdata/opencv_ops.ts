/**
 * Test helper: loads opencv_ops.json (made with opencv-python-headless 4.14; see its "how" field)
 * and rebuilds its xorshift32 inputs.
 *
 * @module
 */
import type { RawImage } from "../codec.ts";

/** The reference file's contents. */
export interface OpencvOps {
  versions: { opencv: string; numpy: string };
  ellipses: Array<{
    center: [number, number];
    axes: [number, number];
    angle: number;
    points: Array<[number, number]>;
    filled: string;
  }>;
  circles: Array<{ center: [number, number]; radius: number; image: string }>;
  lines: Array<{
    p1: [number, number];
    p2: [number, number];
    thickness: number;
    /** One value per channel: 3 for RGB canvases, 1 for gray ones. */
    color: number[];
    image: string;
  }>;
  resizes: Array<{
    input: [number, number, number, number];
    size: [number, number];
    mode: "linear" | "area" | "lanczos4";
    output: string;
  }>;
  warps: Array<{
    input: [number, number, number];
    src: Array<[number, number]>;
    dst: Array<[number, number]>;
    size: [number, number];
    matrix: number[];
    output: string;
  }>;
}

/** The reference data. */
export const OPENCV_OPS: OpencvOps = JSON.parse(
  Deno.readTextFileSync(new URL("./opencv_ops.json", import.meta.url)),
);

/** The reference generator's `noise()`: xorshift32, low byte of each draw, HWC. */
export function noiseImage(
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
  seed: number,
): RawImage {
  let state = seed >>> 0;
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    data[i] = state & 0xff;
  }
  return { width, height, channels, data };
}

/** Base64 to bytes. */
export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));
}

/** Number of differing bytes and the largest absolute difference. */
export function differing(a: Uint8Array, b: Uint8Array): { count: number; max: number } {
  let count = 0;
  let max = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = Math.abs((a[i] ?? -999) - (b[i] ?? -999));
    if (d > 0) count++;
    max = Math.max(max, d);
  }
  return { count, max };
}
