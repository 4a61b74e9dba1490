/**
 * Replays ../shared/golden/schedulers.json (Diffusers 0.27.2) for the DPM-Solver family:
 * the fake model eps = 0.1 * x_in + 0.05 * sin(t / 100) run through full loops and img2img loops.
 * Tolerances: timesteps exact, sigmas 1e-6 relative, latents 1e-5 relative (+1e-6 absolute).
 */
import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import type { Scheduler } from "./scheduler.ts";
import { DPMSolverMultistepScheduler } from "./dpm_solver_multistep.ts";
import { DPMSolverSinglestepScheduler } from "./dpm_solver_singlestep.ts";
import { DEISMultistepScheduler } from "./deis.ts";
import { UniPCMultistepScheduler } from "./unipc.ts";

interface GoldenStep {
  i: number;
  t: number;
  x_in8: number[];
  latent8: number[];
  sum: number;
  abs_sum: number;
}
interface GoldenRun {
  num_inference_steps: number;
  timesteps: number[];
  init_noise_sigma: number;
  order: number;
  sigmas?: number[];
  steps: GoldenStep[];
  final: number[];
}
interface GoldenImg2Img {
  num_inference_steps: number;
  strength: number;
  timesteps: number[];
  begin_index: number;
  add_noise: number[];
  steps: GoldenStep[];
  final: number[];
}
interface GoldenVariant {
  class: string;
  name: string;
  config: Record<string, unknown>;
  runs: GoldenRun[];
  img2img: GoldenImg2Img[];
  error?: string;
}
interface GoldenFile {
  noise_seed0: number[];
  img2img_x0_seed2: number[];
  img2img_noise_seed3: number[];
  variants: GoldenVariant[];
}

const f = Math.fround;

/** The golden fake model, in float32 like the torch expression. */
export function fakeModel(xIn: Float32Array, t: number): Float32Array {
  const c = f(0.05 * Math.sin(t / 100));
  const k = f(0.1);
  return xIn.map((v) => f(v * k) + c);
}

function maxRelDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  for (let j = 0; j < expected.length; j++) {
    const e = expected[j]!;
    const d = Math.abs(actual[j]! - e) / (Math.abs(e) + 0.1);
    if (d > worst) worst = d;
  }
  return worst;
}

function assertClose(
  what: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol: number,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let maxdiff = 0;
  let bad = -1;
  for (let j = 0; j < expected.length; j++) {
    const d = Math.abs(actual[j]! - expected[j]!);
    if (d > maxdiff) maxdiff = d;
    if (d > atol + rtol * Math.abs(expected[j]!) && bad < 0) bad = j;
  }
  assert.ok(
    bad < 0,
    `${what}: maxdiff ${maxdiff.toExponential(3)} (first bad index ${bad}: ` +
      `${actual[bad]} vs ${expected[bad]})`,
  );
}

/** Runs one golden loop and compares every recorded value. Returns the final latent's diff. */
export function replayRun(make: () => Scheduler, run: GoldenRun, noise: number[]): number {
  const s = make();
  s.setTimesteps(run.num_inference_steps);
  assert.deepEqual(Array.from(s.timesteps), run.timesteps, "timesteps");
  assert.equal(s.order, run.order, "order");
  assert.ok(Math.abs(s.initNoiseSigma - run.init_noise_sigma) <= 1e-6 * run.init_noise_sigma);
  if (run.sigmas !== undefined) {
    assert.ok(s.sigmas !== undefined, "sigmas");
    assertClose("sigmas", s.sigmas, run.sigmas, 1e-6, 1e-9);
  }
  let x: Float32Array = Float32Array.from(noise, (v) => f(v * f(s.initNoiseSigma)));
  for (let i = 0; i < s.timesteps.length; i++) {
    const t = s.timesteps[i]!;
    const xIn = s.scaleModelInput(x, i);
    x = s.step(fakeModel(xIn, t), i, x);
    const g = run.steps[i]!;
    assertClose(`step ${i} x_in8`, xIn.subarray(0, 8), g.x_in8, 1e-5, 1e-6);
    assertClose(`step ${i} latent8`, x.subarray(0, 8), g.latent8, 1e-5, 1e-6);
  }
  assertClose("final", x, run.final, 1e-5, 1e-6);
  return maxRelDiff(x, run.final);
}

/** Runs one golden img2img loop (strength slicing, add_noise, truncated loop). */
export function replayImg2Img(
  make: () => Scheduler,
  run: GoldenImg2Img,
  x0: number[],
  noise: number[],
): number {
  const s = make();
  const { timesteps, startIndex } = s.img2imgTimesteps(run.num_inference_steps, run.strength);
  assert.deepEqual(Array.from(timesteps), run.timesteps, "img2img timesteps");
  assert.equal(startIndex, run.begin_index, "begin index");
  let x: Float32Array = s.addNoise(Float32Array.from(x0), Float32Array.from(noise), startIndex);
  assertClose("add_noise", x, run.add_noise, 1e-5, 1e-6);
  for (let i = startIndex; i < s.timesteps.length; i++) {
    const xIn = s.scaleModelInput(x, i);
    x = s.step(fakeModel(xIn, s.timesteps[i]!), i, x);
  }
  assertClose("img2img final", x, run.final, 1e-5, 1e-6);
  return maxRelDiff(x, run.final);
}

const CLASSES: Record<string, (config: Record<string, unknown>) => Scheduler> = {
  DPMSolverMultistepScheduler: (c) => new DPMSolverMultistepScheduler(c),
  DPMSolverSinglestepScheduler: (c) => new DPMSolverSinglestepScheduler(c),
  DEISMultistepScheduler: (c) => new DEISMultistepScheduler(c),
  UniPCMultistepScheduler: (c) => new UniPCMultistepScheduler(c),
};

/** Python's json writes -inf as `-Infinity`; read it as the "-inf" string Diffusers configs use. */
function readGolden(): GoldenFile {
  const text = Deno.readTextFileSync(sharedPath("golden/schedulers.json"));
  return JSON.parse(text.replace(/-Infinity/g, '"-inf"').replace(/\bNaN\b/g, "null"));
}

const golden: GoldenFile | undefined = hasShared ? readGolden() : undefined;

for (const className of Object.keys(CLASSES)) {
  Deno.test({
    name: `${className} matches Diffusers 0.27 golden loops (4 and 20 steps, img2img)`,
    ignore: !hasShared,
    fn() {
      const variants = golden!.variants.filter((v) => v.class === className);
      assert.ok(variants.length > 0, `no golden variant for ${className}`);
      for (const v of variants) {
        const make = () => CLASSES[className]!(v.config);
        for (const run of v.runs) {
          const d = replayRun(make, run, golden!.noise_seed0);
          assert.ok(d < 1e-5, `${v.name} ${run.num_inference_steps} steps: rel diff ${d}`);
        }
        for (const run of v.img2img) {
          replayImg2Img(make, run, golden!.img2img_x0_seed2, golden!.img2img_noise_seed3);
        }
      }
    },
  });
}
