/**
 * Video latents between Diffusers' layout and the frames-as-batch layout of the motion UNet:
 * AnimateDiff pipelines hold latents as `[batch, channels, frames, h, w]` (one `randn` call
 * draws them, schedulers step them), and the UNet graph with motion modules takes
 * `[batch * frames, channels, h, w]` with each clip's frames consecutive (einops
 * `b c f h w -> (b f) c h w`, what Diffusers' UNetMotionModel does inside).
 *
 * @module
 */

function dims(shape: readonly number[], length: number): [number, number, number, number] {
  if (shape.length !== 5 || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(
      `Expected a video shape [batch, channels, frames, height, width], got [${shape.join(", ")}]`,
    );
  }
  const [b, c, f, h, w] = shape as [number, number, number, number, number];
  if (b * c * f * h * w !== length) {
    throw new RangeError(
      `A [${shape.join(", ")}] video has ${b * c * f * h * w} values, the data has ${length}`,
    );
  }
  return [b, c, f, h * w];
}

/**
 * `[B, C, F, H, W]` -> `[B*F, C, H, W]` (a new array).
 *
 * @example
 * ```ts
 * import { videoToFrames } from "./frames.ts";
 * // B=1, C=2, F=2, 1x1 pixels: channel-major [c0f0, c0f1, c1f0, c1f1] -> frame-major
 * console.assert(videoToFrames(Float32Array.of(1, 2, 3, 4), [1, 2, 2, 1, 1]).join() === "1,3,2,4");
 * ```
 */
export function videoToFrames(video: Float32Array, shape: readonly number[]): Float32Array {
  const [b, c, f, hw] = dims(shape, video.length);
  const out = new Float32Array(video.length);
  for (let i = 0; i < b; i++) {
    for (let k = 0; k < c; k++) {
      for (let j = 0; j < f; j++) {
        const from = ((i * c + k) * f + j) * hw;
        out.set(video.subarray(from, from + hw), ((i * f + j) * c + k) * hw);
      }
    }
  }
  return out;
}

/**
 * `[B*F, C, H, W]` -> `[B, C, F, H, W]` (a new array); `shape` is the video's.
 *
 * @example
 * ```ts
 * import { framesToVideo } from "./frames.ts";
 * console.assert(framesToVideo(Float32Array.of(1, 3, 2, 4), [1, 2, 2, 1, 1]).join() === "1,2,3,4");
 * ```
 */
export function framesToVideo(frames: Float32Array, shape: readonly number[]): Float32Array {
  const [b, c, f, hw] = dims(shape, frames.length);
  const out = new Float32Array(frames.length);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < f; j++) {
      for (let k = 0; k < c; k++) {
        const from = ((i * f + j) * c + k) * hw;
        out.set(frames.subarray(from, from + hw), ((i * c + k) * f + j) * hw);
      }
    }
  }
  return out;
}
