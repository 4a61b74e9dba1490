import assert from "node:assert/strict";
import { TorchCpuGenerator } from "../rng/mod.ts";
import { LCMScheduler } from "../schedulers/mod.ts";
import {
  type Cond,
  denoiseLatents,
  passRowsHook,
  type StepConditioning,
  type UnetCall,
} from "./denoise.ts";
import { guidanceScaleEmbedding } from "./lcm.ts";

/**
 * The formula of Diffusers' `get_guidance_scale_embedding` in float64, written out here
 * independently of the code under test.
 */
function reference(scale: number, dim: number): { values: number[]; args: number[] } {
  const half = Math.floor(dim / 2);
  const w = (scale - 1) * 1000;
  const args = Array.from(
    { length: half },
    (_, j) => w * Math.exp((-j * Math.log(10000)) / (half - 1)),
  );
  const values = [...args.map(Math.sin), ...args.map(Math.cos)];
  if (dim % 2 === 1) values.push(0);
  return { values, args: [...args, ...args, 0] };
}

Deno.test("guidanceScaleEmbedding() matches the float64 formula within float32 argument rounding", () => {
  // float32 rounds w, the frequencies and w * f_j to a few ulps, so sin/cos move by up to
  // |arg| times a few 2^-24 (the exponent reaches ln(10000) ~ 9.2, which multiplies the relative
  // error of exp's argument). Tolerance 1e-6 * |arg| + 1e-6 per element; measured: at most 0.5
  // of it (5.3e-4 absolute at |arg| = 14000, scale 15).
  for (const dim of [256, 32, 33, 5]) {
    const scales = [8.5, 1, 0, 2.25, 15];
    const emb = guidanceScaleEmbedding(scales, dim);
    assert.equal(emb.length, scales.length * dim);
    let worst = 0;
    scales.forEach((s, k) => {
      const ref = reference(s, dim);
      for (let j = 0; j < dim; j++) {
        const got = emb[k * dim + j]!;
        const tol = 1e-6 * Math.abs(ref.args[j]!) + 1e-6;
        const d = Math.abs(got - ref.values[j]!);
        worst = Math.max(worst, d / tol);
        assert.ok(
          d <= tol,
          `dim ${dim} scale ${s} [${j}]: got ${got}, want ${ref.values[j]} (maxdiff ${d} > ${tol})`,
        );
      }
    });
    assert.ok(worst <= 1, `dim ${dim}: worst error ${worst} of the tolerance`);
  }
});

Deno.test("guidanceScaleEmbedding() at scale 1 is [0...0, 1...1]; odd dims end in a zero", () => {
  // w = 0: sin 0 = 0 and cos 0 = 1, exactly.
  const emb = guidanceScaleEmbedding([1], 8);
  assert.deepEqual([...emb], [0, 0, 0, 0, 1, 1, 1, 1]);
  const odd = guidanceScaleEmbedding([8.5, 3], 7);
  assert.equal(odd[6], 0);
  assert.equal(odd[13], 0);
  // The first frequency is exp(0) = 1: sin(w) with w = 7500 for scale 8.5.
  assert.ok(Math.abs(odd[0]! - Math.sin(7500)) < 1e-6, `sin(7500): got ${odd[0]}`);
  assert.ok(Math.abs(odd[3]! - Math.cos(7500)) < 1e-6, `cos(7500): got ${odd[3]}`);
  // Rows are per image.
  assert.ok(Math.abs(odd[7]! - Math.sin(2000)) < 1e-6, `sin(2000): got ${odd[7]}`);
});

Deno.test("guidanceScaleEmbedding() refuses dims below 4 and non-finite scales", () => {
  assert.throws(() => guidanceScaleEmbedding([8.5], 2), RangeError);
  assert.throws(() => guidanceScaleEmbedding([8.5], 4.5), RangeError);
  assert.throws(() => guidanceScaleEmbedding([NaN], 8), RangeError);
});

Deno.test("denoiseLatents() with an embedded guidance: one pass per sub-prompt, no uncond, rows per image", async () => {
  const n = 2;
  const dim = 8;
  const shape: [number, number, number, number] = [n, 4, 2, 2];
  const emb = guidanceScaleEmbedding([8.5, 8.5], dim);
  const cond = (v: number): Cond => ({
    embedding: { data: new Float32Array(3 * 4).fill(v), tokens: 3, dim: 4 },
  });
  const calls: Array<{ batch: number; timestepCond?: Float32Array; hidden: Float32Array }> = [];
  const unet: UnetCall = (input) => {
    calls.push({
      batch: input.sampleShape[0],
      hidden: input.hiddenStates,
      ...(input.extra.timestep_cond ? { timestepCond: input.extra.timestep_cond.data } : {}),
    });
    return Promise.resolve(new Float32Array(input.sample.length).fill(0.1));
  };
  const run = async (conds: StepConditioning["conds"]) => {
    calls.length = 0;
    const scheduler = new LCMScheduler({ num_train_timesteps: 1000 });
    scheduler.setTimesteps(2);
    return await denoiseLatents({
      scheduler,
      latents: new Float32Array(2 * 4 * 2 * 2).fill(0.5),
      shape,
      conditioning: () => ({ uncond: cond(-1), conds }),
      guidanceScale: 8.5,
      guidance: "embedded",
      hooks: [passRowsHook("timestep_cond", emb, dim)],
      unet,
      rng: new TorchCpuGenerator(0),
    });
  };
  await run([{ cond: cond(1), weight: 1 }]);
  assert.equal(calls.length, 2);
  for (const c of calls) {
    // Only the prompt's pass: n items, and the uncond embedding (-1) never goes in.
    assert.equal(c.batch, n);
    assert.ok(c.hidden.every((v) => v === 1));
    assert.deepEqual(c.timestepCond, emb);
  }
  // AND: two passes, each with the images' rows.
  await run([{ cond: cond(1), weight: 1 }, { cond: cond(2), weight: 0.5 }]);
  for (const c of calls) {
    assert.equal(c.batch, 2 * n);
    assert.ok(!c.hidden.some((v) => v === -1));
    assert.deepEqual(c.timestepCond, Float32Array.from([...emb, ...emb]));
  }
});

Deno.test("LCMScheduler.setTimesteps(steps, strength) follows Diffusers' LCM img2img schedule", () => {
  // Diffusers set_timesteps(4, strength=0.5), original 50: k = 20, the first int(50 * 0.5) = 25
  // distillation timesteps 19..499 from the top, indices floor(linspace(0, 25, 4, endpoint=False))
  // = [0, 6, 12, 18] -> 499 - 20 * idx.
  const s = new LCMScheduler({ num_train_timesteps: 1000, original_inference_steps: 50 });
  s.setTimesteps(4, 0.5);
  assert.deepEqual([...s.timesteps], [499, 379, 259, 139]);
  // int(50 * 0.58) is 28 in Python (the double product is 28.999...): timesteps 19..559,
  // idx [0, 7, 14, 21] (checked with NumPy).
  s.setTimesteps(4, 0.58);
  assert.deepEqual([...s.timesteps], [559, 419, 279, 139]);
  // Strength 1 is the txt2img schedule.
  s.setTimesteps(4, 1);
  assert.deepEqual([...s.timesteps], [999, 759, 499, 259]);
  // Diffusers: skipping_step = 25 // 26 < 1 raises.
  assert.throws(() => s.setTimesteps(26, 0.5), RangeError);
});
