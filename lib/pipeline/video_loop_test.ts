import assert from "node:assert/strict";
import { TorchCpuGenerator } from "../rng/mod.ts";
import type { NoiseGenerator } from "../rng/mod.ts";
import { createScheduler, type Scheduler } from "../schedulers/mod.ts";
import { contextWindows } from "./context_windows.ts";
import type { Cond, UnetInput } from "./denoise.ts";
import { denoiseVideo, type VideoStepConditioning } from "./video_loop.ts";

const C = 2;
const H = 2;
const W = 3;
const PLANE = H * W;

function cond(value: number): Cond {
  return { embedding: { data: new Float32Array(4).fill(value), tokens: 2, dim: 2 } };
}

function shared(uncond: Cond, c: Cond): () => VideoStepConditioning {
  return () => ({ uncond, conds: [{ weight: 1, frames: [c] }] });
}

/** A one-step scheduler whose step returns the model output: the loop's prediction comes out. */
function identityScheduler(): Scheduler {
  return {
    timesteps: Float64Array.of(500),
    initNoiseSigma: 1,
    order: 1,
    setTimesteps() {},
    scaleModelInput: (x) => x,
    step: (eps) => eps,
    addNoise: (x) => x,
    img2imgTimesteps: () => ({ timesteps: new Float64Array(), startIndex: 0 }),
  };
}

function video(frames: number): Float32Array {
  // [1, C, F, H, W]: value = 100 * c + frame + pixel / 10
  const out = new Float32Array(C * frames * PLANE);
  for (let c = 0; c < C; c++) {
    for (let f = 0; f < frames; f++) {
      for (let p = 0; p < PLANE; p++) out[(c * frames + f) * PLANE + p] = 100 * c + f + p / 10;
    }
  }
  return out;
}

Deno.test("denoiseVideo() fuses overlapping windows as the mean of each frame's predictions", async () => {
  const frames = 24;
  const calls: UnetInput[] = [];
  // Each clip's prediction for a frame: its input plus the clip's first input value, so a frame
  // in two windows gets two different predictions.
  const unet = (input: UnetInput) => {
    calls.push(input);
    const [batch, , ,] = input.sampleShape;
    const length = input.extra.num_frames!.data[0]!;
    const out = new Float32Array(input.sample.length);
    const frameSize = C * PLANE;
    for (let b = 0; b < batch; b++) {
      const clipStart = Math.floor(b / length) * length * frameSize;
      for (let k = 0; k < frameSize; k++) {
        out[b * frameSize + k] = input.sample[b * frameSize + k]! + input.sample[clipStart]!;
      }
    }
    return Promise.resolve(out);
  };
  const x = video(frames);
  const context = { length: 16, overlap: 4 };
  const out = await denoiseVideo({
    scheduler: identityScheduler(),
    latents: x,
    shape: [1, C, frames, H, W],
    conditioning: shared(cond(0), cond(1)),
    guidanceScale: 1,
    unet,
    rng: new TorchCpuGenerator(0),
    maxFrames: 16,
    context,
  });
  const windows = contextWindows(frames, 0, context);
  assert.deepEqual(windows.map((w) => w[0]), [0, 8]);
  // 24 frames in 16-frame windows: one window per call by default.
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[0]!.sampleShape, [16, C, H, W]);
  assert.deepEqual(calls[0]!.hiddenShape, [1, 2, 2], "one conditioning row per clip");
  for (let c = 0; c < C; c++) {
    for (let f = 0; f < frames; f++) {
      const holders = windows.filter((w) => w.includes(f));
      for (let p = 0; p < PLANE; p++) {
        const at = (c * frames + f) * PLANE + p;
        // Window starting at frame s adds x[channel 0, frame s, pixel 0] = s.
        const expected = holders.reduce((sum, w) => sum + x[at]! + w[0]!, 0) / holders.length;
        assert.ok(
          Math.abs(out[at]! - expected) < 1e-4,
          `c${c} f${f} p${p}: ${out[at]} vs ${expected}`,
        );
      }
    }
  }
});

Deno.test("denoiseVideo() puts several windows in one call as separate clips when asked", async () => {
  const frames = 24;
  const run = async (windowsPerCall: number) => {
    const shapes: number[][] = [];
    const out = await denoiseVideo({
      scheduler: identityScheduler(),
      latents: video(frames),
      shape: [1, C, frames, H, W],
      conditioning: shared(cond(0), cond(1)),
      guidanceScale: 3,
      unet: (input) => {
        shapes.push([...input.sampleShape, input.hiddenShape[0]]);
        // Per clip: the clip's mean input value, so clips must stay separate to match.
        const length = input.extra.num_frames!.data[0]!;
        const clipSize = length * C * PLANE;
        const out = new Float32Array(input.sample.length);
        for (let at = 0; at < out.length; at += clipSize) {
          const clip = input.sample.subarray(at, at + clipSize);
          out.fill(clip.reduce((a, b) => a + b, 0) / clip.length, at, at + clipSize);
        }
        return Promise.resolve(out);
      },
      rng: new TorchCpuGenerator(0),
      maxFrames: 16,
      context: { length: 8, overlap: 2 },
      windowsPerCall,
    });
    return { out, shapes };
  };
  const one = await run(1);
  const three = await run(3);
  assert.deepEqual(one.shapes.map((s) => s[0]), [16, 16, 16, 16]);
  // Guidance doubles each window: 3 windows x 2 passes x 8 frames, one hidden row per clip.
  assert.deepEqual(three.shapes, [[48, C, H, W, 6], [16, C, H, W, 2]]);
  assert.deepEqual(three.out, one.out);
});

Deno.test("denoiseVideo() feeds per-frame conditioning rows, uncond clip first, for prompt travel", async () => {
  const frames = 4;
  const calls: UnetInput[] = [];
  const unet = (input: UnetInput) => {
    calls.push(input);
    return Promise.resolve(new Float32Array(input.sample.length));
  };
  const perFrame = [0, 1, 2, 3].map((f) => cond(10 + f));
  await denoiseVideo({
    scheduler: identityScheduler(),
    latents: video(frames),
    shape: [1, C, frames, H, W],
    conditioning: () => ({ uncond: cond(-1), conds: [{ weight: 1, frames: perFrame }] }),
    guidanceScale: 7.5,
    unet,
    rng: new TorchCpuGenerator(0),
    maxFrames: 16,
  });
  assert.equal(calls.length, 1);
  const call = calls[0]!;
  assert.deepEqual(call.sampleShape, [2 * frames, C, H, W]);
  assert.deepEqual(call.hiddenShape, [2 * frames, 2, 2]);
  // Rows: 4 unconditional frames, then the 4 frames' own conditionings.
  const firsts = Array.from({ length: 8 }, (_, r) => call.hiddenStates[r * 4]);
  assert.deepEqual(firsts, [-1, -1, -1, -1, 10, 11, 12, 13]);
  assert.deepEqual([...call.extra.num_frames!.data], [4]);
  // Frames as batch: row b = frame b % F of the video layout (channel 0, pixel 0 = frame).
  const frameSize = C * PLANE;
  assert.deepEqual(
    Array.from({ length: 8 }, (_, b) => call.sample[b * frameSize]),
    [0, 1, 2, 3, 0, 1, 2, 3],
  );
});

Deno.test("denoiseVideo() draws ancestral noise in the video's [1, C, F, h, w] shape", async () => {
  const shapes: number[][] = [];
  const inner = new TorchCpuGenerator(5);
  const rng: NoiseGenerator = {
    randn: (shape: number[]) => {
      shapes.push([...shape]);
      return inner.randn(shape);
    },
  };
  const scheduler = createScheduler("euler-a", { beta_schedule: "scaled_linear" });
  scheduler.setTimesteps(3);
  await denoiseVideo({
    scheduler,
    latents: video(5),
    shape: [1, C, 5, H, W],
    conditioning: shared(cond(0), cond(1)),
    guidanceScale: 2,
    unet: (input) => Promise.resolve(input.sample.map((v) => 0.1 * v)),
    rng,
    maxFrames: 8,
  });
  assert.ok(shapes.length >= 2, `${shapes.length} draws`);
  for (const s of shapes) assert.deepEqual(s, [1, C, 5, H, W]);
});

Deno.test("denoiseVideo() refuses a clip longer than the motion module, naming --context-length", async () => {
  await assert.rejects(
    () =>
      denoiseVideo({
        scheduler: identityScheduler(),
        latents: video(20),
        shape: [1, C, 20, H, W],
        conditioning: shared(cond(0), cond(1)),
        guidanceScale: 1,
        unet: (input) => Promise.resolve(input.sample),
        rng: new TorchCpuGenerator(0),
        maxFrames: 16,
      }),
    /pass --context-length 16/,
  );
});
