import assert from "node:assert/strict";
import { parseControlnetConfig } from "../models/controlnet_config.ts";
import { controlnetResidualSpecs } from "../models/controlnet.ts";
import { type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { controlnetHook, controlnetTileHooks, type ControlnetUnit } from "./controlnet_hook.ts";
import type { Cond, StepState, UnetInput } from "./denoise.ts";

// A tiny SD 1.x-shaped net: 2 blocks -> 4 residuals (3 down + mid).
const CONFIG = parseControlnetConfig({
  block_out_channels: [32, 64],
  down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
  layers_per_block: 1,
  cross_attention_dim: 4,
  attention_head_dim: 8,
  conditioning_embedding_out_channels: [8, 16],
});
const SPECS = controlnetResidualSpecs(CONFIG);

interface Call {
  feeds: Record<string, HostTensor>;
}

/**
 * A stand-in net whose residual k for batch row b is
 * `scales[k] * (offset + sample[b][0] + hidden[b][0])`, so a test can tell which rows and scales
 * it got.
 */
function fakeNet(offset: number, calls: Call[]): () => Promise<OnnxSession> {
  const session = {
    run: (feeds: Record<string, HostTensor>) => {
      calls.push({ feeds });
      const [batch, c, h, w] = feeds.sample!.dims as number[];
      const sample = feeds.sample!.data as Float32Array;
      const hidden = feeds.encoder_hidden_states!.data as Float32Array;
      const hiddenRow = hidden.length / batch!;
      const scales = feeds.conditioning_scales!.data as Float32Array;
      const out: Record<string, HostTensor> = {};
      SPECS.forEach((s, k) => {
        const hk = Math.ceil(h! / s.downscale);
        const wk = Math.ceil(w! / s.downscale);
        const block = s.channels * hk * wk;
        const data = new Float32Array(batch! * block);
        for (let b = 0; b < batch!; b++) {
          const v = scales[k]! * (offset + sample[b * c! * h! * w!]! + hidden[b * hiddenRow]!);
          data.fill(v, b * block, (b + 1) * block);
        }
        out[s.name] = hostTensor("float32", data, [batch!, s.channels, hk, wk]);
      });
      return Promise.resolve(out);
    },
  };
  return () => Promise.resolve(session as unknown as OnnxSession);
}

function unit(offset: number, calls: Call[], extra: Partial<ControlnetUnit> = {}): ControlnetUnit {
  return {
    config: CONFIG,
    session: fakeNet(offset, calls),
    image: (width, height) => Promise.resolve(new Float32Array(3 * width * height)),
    scale: 1,
    start: 0,
    end: 1,
    ...extra,
  };
}

/** A step of n=1 image 2x2 latents, passes [uncond (hidden 10), cond (hidden 20)]. */
function step(loopIndex: number, loopLength: number): { input: UnetInput; state: StepState } {
  const latent = Float32Array.of(1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4);
  const cond = (v: number): Cond => ({
    embedding: { data: new Float32Array(2 * 4).fill(v), tokens: 2, dim: 4 },
  });
  const hidden = new Float32Array(2 * 2 * 4);
  hidden.fill(10, 0, 8);
  hidden.fill(20, 8);
  const sample = new Float32Array(2 * 16);
  sample.set(latent, 0);
  sample.set(latent, 16);
  return {
    input: {
      sample,
      sampleShape: [2, 4, 2, 2],
      timestep: 500,
      hiddenStates: hidden,
      hiddenShape: [2, 2, 4],
      extra: {},
    },
    state: {
      i: loopIndex,
      loopIndex,
      loopLength,
      t: 500,
      n: 1,
      passes: [cond(10), cond(20)],
      withUncond: true,
      latentInput: latent,
    },
  };
}

/** The value of residual k for batch row b (the fake fills each row with one value). */
function residual(input: UnetInput, k: number, b: number): number {
  const r = input.extra[SPECS[k]!.name]!;
  const block = r.data.length / r.dims[0]!;
  return r.data[b * block]!;
}

Deno.test("controlnetHook() runs every pass and feeds scaled residuals to the residual UNet", async () => {
  const calls: Call[] = [];
  const hook = controlnetHook([unit(0, calls, { scale: 0.5 })], {
    guessMode: false,
    vaeFactor: 8,
    unet: "unet_controlnet",
  });
  const { input, state } = step(0, 4);
  const out = await hook.beforeUnet!(input, state);
  assert.equal(out.unet, "unet_controlnet");
  assert.equal(calls.length, 1);
  const feeds = calls[0]!.feeds;
  assert.deepEqual(feeds.sample!.dims, [2, 4, 2, 2]);
  assert.deepEqual(feeds.controlnet_cond!.dims, [1, 3, 16, 16]);
  assert.deepEqual([...feeds.conditioning_scales!.data], SPECS.map(() => 0.5));
  // Row 0 is the unconditional pass (hidden 10), row 1 the prompt's (hidden 20).
  for (let k = 0; k < SPECS.length; k++) {
    assert.equal(residual(out, k, 0), 0.5 * (1 + 10));
    assert.equal(residual(out, k, 1), 0.5 * (1 + 20));
  }
  // The UNet's own inputs are untouched.
  assert.equal(out.sample, input.sample);
});

Deno.test("controlnetHook() guess mode: the net sees the conditional pass only, zeros for the unconditional", async () => {
  const calls: Call[] = [];
  const hook = controlnetHook([unit(0, calls)], {
    guessMode: true,
    vaeFactor: 8,
    unet: "u",
  });
  const { input, state } = step(0, 4);
  const out = await hook.beforeUnet!(input, state);
  const feeds = calls[0]!.feeds;
  assert.deepEqual(feeds.sample!.dims, [1, 4, 2, 2]);
  assert.deepEqual(feeds.encoder_hidden_states!.dims, [1, 2, 4]);
  assert.equal((feeds.encoder_hidden_states!.data as Float32Array)[0], 20);
  const scales = feeds.conditioning_scales!.data as Float32Array;
  assert.ok(Math.abs(scales[0]! - 0.1) < 1e-7 && scales[SPECS.length - 1] === 1);
  for (let k = 0; k < SPECS.length; k++) {
    assert.equal(residual(out, k, 0), 0, "zeros for the unconditional pass");
    assert.equal(residual(out, k, 1), Math.fround(scales[k]! * (1 + 20)));
  }
});

Deno.test("controlnetHook() applies each net's keep window and sums the nets in order", async () => {
  const callsA: Call[] = [];
  const callsB: Call[] = [];
  const hook = controlnetHook([
    unit(100, callsA, { scale: 0.7 }),
    unit(1000, callsB, { scale: 0.4, end: 0.5 }),
  ], { guessMode: false, vaeFactor: 8, unet: "u" });
  // 5 timesteps (PNDM with 4 steps): net B keeps steps 0 and 1 only.
  const got: number[] = [];
  for (let i = 0; i < 5; i++) {
    const { input, state } = step(i, 5);
    const out = await hook.beforeUnet!(input, state);
    got.push(residual(out, 0, 1));
  }
  assert.equal(callsA.length, 5);
  assert.equal(callsB.length, 2);
  const a = Math.fround(0.7 * (100 + 1 + 20));
  const b = Math.fround(0.4 * (1000 + 1 + 20));
  assert.deepEqual(got, [Math.fround(a + b), Math.fround(a + b), a, a, a]);
});

Deno.test("controlnetHook() feeds zeros when no net is active at a step", async () => {
  const calls: Call[] = [];
  const hook = controlnetHook([unit(0, calls, { start: 0.5 })], {
    guessMode: false,
    vaeFactor: 8,
    unet: "u",
  });
  const { input, state } = step(0, 4);
  const out = await hook.beforeUnet!(input, state);
  assert.equal(calls.length, 0);
  assert.equal(out.unet, "u");
  for (const s of SPECS) {
    const r = out.extra[s.name]!;
    assert.deepEqual(r.dims, [
      2,
      s.channels,
      Math.ceil(2 / s.downscale),
      Math.ceil(2 / s.downscale),
    ]);
    assert.ok(r.data.every((v) => v === 0));
  }
});

Deno.test("controlnetHook() with composable prompts (a AND b): every conditional pass gets its own residuals", async () => {
  const calls: Call[] = [];
  const hook = controlnetHook([unit(0, calls)], { guessMode: true, vaeFactor: 8, unet: "u" });
  const { input, state } = step(0, 4);
  // A third pass (the second sub-prompt, hidden 30).
  const hidden = new Float32Array(3 * 8);
  hidden.set(input.hiddenStates, 0);
  hidden.fill(30, 16);
  const three: UnetInput = {
    ...input,
    sample: new Float32Array(3 * 16).map((_, i) => input.sample[i % 16]!),
    sampleShape: [3, 4, 2, 2],
    hiddenStates: hidden,
    hiddenShape: [3, 2, 4],
  };
  const out = await hook.beforeUnet!(three, {
    ...state,
    passes: [...state.passes, state.passes[1]!],
  });
  assert.deepEqual(calls[0]!.feeds.sample!.dims, [2, 4, 2, 2], "the two conditional passes");
  assert.equal(residual(out, SPECS.length - 1, 0), 0);
  assert.equal(residual(out, SPECS.length - 1, 1), 1 + 20);
  assert.equal(residual(out, SPECS.length - 1, 2), 1 + 30);
});

/**
 * A stand-in net whose residuals are local: residual k at (y, x) of row b is
 * `scales[k] * (sample[b, 0, y*d, x*d] + control[0, 0, y*d*8, x*d*8] + hidden[b][0])` (d its
 * downscale), so a tile's residuals are the crop of the whole latent's exactly when the tile's
 * latents and control image are cropped at the right place.
 */
function localNet(calls: Call[]): () => Promise<OnnxSession> {
  const session = {
    run: (feeds: Record<string, HostTensor>) => {
      calls.push({ feeds });
      const [batch, c, h, w] = feeds.sample!.dims as [number, number, number, number];
      const sample = feeds.sample!.data as Float32Array;
      const control = feeds.controlnet_cond!.data as Float32Array;
      const cw = feeds.controlnet_cond!.dims[3]!;
      const hidden = feeds.encoder_hidden_states!.data as Float32Array;
      const hiddenRow = hidden.length / batch;
      const scales = feeds.conditioning_scales!.data as Float32Array;
      const out: Record<string, HostTensor> = {};
      SPECS.forEach((s, k) => {
        const d = s.downscale;
        const hk = Math.ceil(h / d);
        const wk = Math.ceil(w / d);
        const data = new Float32Array(batch * s.channels * hk * wk);
        for (let b = 0; b < batch; b++) {
          for (let ch = 0; ch < s.channels; ch++) {
            for (let y = 0; y < hk; y++) {
              for (let x = 0; x < wk; x++) {
                const v = sample[((b * c) * h + y * d) * w + x * d]! +
                  control[(y * d * 8) * cw + x * d * 8]! + hidden[b * hiddenRow]! + ch;
                data[((b * s.channels + ch) * hk + y) * wk + x] = scales[k]! * v;
              }
            }
          }
        }
        out[s.name] = hostTensor("float32", data, [batch, s.channels, hk, wk]);
      });
      return Promise.resolve(out);
    },
  };
  return () => Promise.resolve(session as unknown as OnnxSession);
}

Deno.test("controlnetTileHooks() runs the nets per tile on the tile's latents and control crop", async () => {
  const { planTiles } = await import("../image/tiles.ts");
  const { cropNchw } = await import("./multidiffusion.ts");
  // n = 1, 2 passes (uncond, cond), a 16x24 latent (128x192 pixels), 4 latent channels.
  const [H, W] = [16, 24];
  const latent = Float32Array.from({ length: 4 * H * W }, (_, i) => Math.sin(i / 7));
  const control = Float32Array.from({ length: 3 * H * 8 * W * 8 }, (_, i) => (i % 251) / 251);
  const cond = (v: number): Cond => ({
    embedding: { data: new Float32Array(2 * 4).fill(v), tokens: 2, dim: 4 },
  });
  const hidden = new Float32Array(2 * 8);
  hidden.fill(10, 0, 8);
  hidden.fill(20, 8);
  const input: UnetInput = {
    sample: Float32Array.from({ length: 2 * latent.length }, (_, i) => latent[i % latent.length]!),
    sampleShape: [2, 4, H, W],
    timestep: 500,
    hiddenStates: hidden,
    hiddenShape: [2, 2, 4],
    extra: {},
  };
  const state: StepState = {
    i: 3,
    loopIndex: 3,
    loopLength: 4,
    t: 500,
    n: 1,
    passes: [cond(10), cond(20)],
    withUncond: true,
    latentInput: latent,
  };
  const sizes: string[] = [];
  const make = (calls: Call[]): ControlnetUnit => ({
    ...unit(0, calls, { scale: 0.5 }),
    session: localNet(calls),
    image: (width, height) => {
      sizes.push(`${width}x${height}`);
      return Promise.resolve(control);
    },
  });
  for (const controlMode of ["balanced", "control"] as const) {
    const wholeCalls: Call[] = [];
    const whole = await controlnetHook([make(wholeCalls)], {
      guessMode: false,
      controlMode,
      vaeFactor: 8,
      unet: "u",
    }).beforeUnet!(input, state);
    let released = 0;
    const tileCalls: Call[] = [];
    const { hook, tileHook } = controlnetTileHooks([make(tileCalls)], {
      guessMode: false,
      controlMode,
      vaeFactor: 8,
      unet: "u",
      onLastStep: () => Promise.resolve(void released++),
    });
    const stepped = await hook.beforeUnet!(input, state);
    assert.equal(stepped.unet, "u");
    assert.deepEqual(stepped.extra, {}, "the loop hook adds no residuals itself");
    const grid = planTiles(W, H, { tile: 8, overlap: 4, margin: 0, multiple: 4 });
    let index = 0;
    for (const rows of grid.rows.spans) {
      for (const cols of grid.columns.spans) {
        const [tw, th] = [cols.end - cols.start, rows.end - rows.start];
        const tile = {
          x: cols.start,
          y: rows.start,
          width: tw,
          height: th,
          index,
          count: grid.count,
        };
        index++;
        const tileInput: UnetInput = {
          ...input,
          sample: cropNchw(input.sample, input.sampleShape, cols.start, rows.start, tw, th),
          sampleShape: [2, 4, th, tw],
        };
        const out = await tileHook(tileInput, tile);
        assert.equal(out.unet, "u");
        for (const s of SPECS) {
          const got = out.extra[s.name]!;
          const all = whole.extra[s.name]!;
          const d = s.downscale;
          // Tiles start on the grid of 4 latents: residual k starts at x / d exactly.
          const want = cropNchw(
            all.data,
            all.dims,
            cols.start / d,
            rows.start / d,
            got.dims[3]!,
            got.dims[2]!,
          );
          assert.deepEqual(got.dims, [2, s.channels, Math.ceil(th / d), Math.ceil(tw / d)]);
          assert.deepEqual(got.data, want, `${controlMode}: tile ${tile.index}, ${s.name}`);
        }
      }
    }
    assert.equal(tileCalls.length, grid.count);
    assert.equal(released, 1, "released once, after the last tile of the last step");
    if (controlMode === "control") {
      // "ControlNet is more important": the cond pass only, soft scales, zeros for the uncond.
      assert.deepEqual(tileCalls[0]!.feeds.sample!.dims[0], 1);
      const scales = [...(tileCalls[0]!.feeds.conditioning_scales!.data as Float32Array)];
      assert.deepEqual(scales, SPECS.map((_, k) => Math.fround(0.5 * 0.825 ** (12 - k))));
      assert.equal(residual(whole, 0, 0), 0);
    }
  }
  assert.ok(sizes.every((s) => s === "192x128"), sizes.join());
});

Deno.test("controlnetHook() control modes: prompt scales every pass softly, control skips the negative pass", async () => {
  for (const [controlMode, rows] of [["prompt", 2], ["control", 1]] as const) {
    const calls: Call[] = [];
    const hook = controlnetHook([unit(0, calls)], {
      guessMode: false,
      controlMode,
      vaeFactor: 8,
      unet: "u",
    });
    const { input, state } = step(0, 4);
    const out = await hook.beforeUnet!(input, state);
    assert.equal(calls[0]!.feeds.sample!.dims[0], rows);
    const scales = calls[0]!.feeds.conditioning_scales!.data as Float32Array;
    SPECS.forEach((_, k) => assert.equal(scales[k], Math.fround(0.825 ** (12 - k))));
    const last = SPECS.length - 1;
    assert.equal(
      residual(out, last, 0),
      controlMode === "prompt" ? Math.fround(scales[last]! * 11) : 0,
    );
    assert.equal(residual(out, last, 1), Math.fround(scales[last]! * 21));
  }
});
