import assert from "node:assert/strict";
import { framesToVideo, videoToFrames } from "./frames.ts";

Deno.test("videoToFrames() lays [B, C, F, H, W] out as [B*F, C, H, W], framesToVideo() undoes it", () => {
  const shape = [2, 3, 4, 2, 5];
  const video = Float32Array.from({ length: 2 * 3 * 4 * 2 * 5 }, (_, i) => i);
  const frames = videoToFrames(video, shape);
  // frames[(b*F + f), c, y, x] == video[b, c, f, y, x]
  for (const [b, c, f, p] of [[0, 0, 0, 0], [1, 2, 3, 9], [1, 0, 2, 4], [0, 1, 3, 7]]) {
    assert.equal(
      frames[((b! * 4 + f!) * 3 + c!) * 10 + p!],
      video[((b! * 3 + c!) * 4 + f!) * 10 + p!],
    );
  }
  assert.deepEqual(framesToVideo(frames, shape), video);
  assert.throws(() => videoToFrames(video, [2, 3, 4, 10]), RangeError);
  assert.throws(() => videoToFrames(video, [2, 3, 4, 2, 4]), /the data has 240/);
});
