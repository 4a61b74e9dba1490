/**
 * Replays ../shared/golden/schedulers.json (Diffusers 0.27.2 on CPU): for every variant, the
 * timesteps, sigmas, init_noise_sigma and order after set_timesteps, then the full loop with the
 * fake model eps = 0.1 * x_in + 0.05 * sin(t / 100) and the img2img runs.
 *
 * Tolerances: golden floats carry 7 significant digits, so "exact" timesteps / sigmas means a
 * relative difference below 1e-6 (integer timesteps must be equal). Latents are compared with
 * |a - b| <= 1e-5 * max(1, max|golden|) over the whole array (relative to the array's scale),
 * and the reported maxdiff is that relative error.
 */
import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { createScheduler, schedulerClassNames } from "./mod.ts";
import type { NoiseGenerator } from "./scheduler.ts";
import { TorchCpuGenerator } from "../rng/mod.ts";

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
  timesteps_dtype: string;
  sigmas?: number[];
  init_noise_sigma: number;
  order: number;
  steps: GoldenStep[];
  final: number[];
}
interface GoldenImg2Img {
  num_inference_steps: number;
  strength: number;
  timesteps: number[];
  effective_num_inference_steps: number;
  add_noise: number[];
  steps: GoldenStep[];
  final: number[];
}
interface GoldenVariant {
  class: string;
  name: string;
  config: Record<string, unknown>;
  step_kwargs_extra: Record<string, unknown>;
  runs: GoldenRun[];
  img2img: GoldenImg2Img[];
  error?: string;
}
interface Golden {
  noise_seed0: number[];
  img2img_x0_seed2: number[];
  img2img_noise_seed3: number[];
  add_noise_fixed_t: { class: string; t: number; value: number[] }[];
  variants: GoldenVariant[];
}

function loadGolden(): Golden {
  // Python's json writes -Infinity (lambda_min_clipped), which JSON.parse rejects.
  const text = Deno.readTextFileSync(sharedPath("golden/schedulers.json"));
  return JSON.parse(text.replace(/:-Infinity/g, ':"-inf"')) as Golden;
}

const golden: Golden | undefined = hasShared ? loadGolden() : undefined;

/** max |a - b| / max(1, max |b|). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `length ${a.length} != ${b.length}`);
  let scale = 1;
  for (let k = 0; k < b.length; k++) scale = Math.max(scale, Math.abs(b[k]!));
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
  return m / scale;
}

/** Element-wise relative difference (for timesteps / sigmas given to 7 significant digits). */
function elementRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `length ${a.length} != ${b.length}`);
  let m = 0;
  for (let k = 0; k < a.length; k++) {
    const d = Math.abs(a[k]! - b[k]!);
    m = Math.max(m, d === 0 ? 0 : d / Math.max(Math.abs(b[k]!), 1e-30));
  }
  return m;
}

function fakeModel(xIn: Float32Array, t: number): Float32Array {
  // eps = 0.1 * x_in + 0.05 * sin(t / 100): float32 tensor ops, sin in float64.
  const c = Math.fround(0.05 * Math.sin(t / 100));
  const out = new Float32Array(xIn.length);
  for (let k = 0; k < out.length; k++) out[k] = Math.fround(0.1 * xIn[k]!) + c;
  return out;
}

const LATENT_TOL = 1e-5;
const TABLE_TOL = 1e-6;

function runLoop(
  label: string,
  s: ReturnType<typeof createScheduler>,
  start: Float32Array,
  startIndex: number,
  steps: GoldenStep[],
  final: number[],
  rng: NoiseGenerator,
): number {
  let x = start;
  let worst = 0;
  for (let k = 0; k < steps.length; k++) {
    const i = startIndex + k;
    const g = steps[k]!;
    const t = s.timesteps[i]!;
    const xIn = s.scaleModelInput(x, i);
    const dIn = relDiff(xIn.subarray(0, 8), g.x_in8);
    assert.ok(dIn <= LATENT_TOL, `${label} step ${k} x_in8 maxdiff ${dIn}`);
    x = s.step(fakeModel(xIn, t), i, x, rng);
    const d = relDiff(x.subarray(0, 8), g.latent8);
    worst = Math.max(worst, d);
    assert.ok(d <= LATENT_TOL, `${label} step ${k} latent8 maxdiff ${d}`);
  }
  const df = relDiff(x, final);
  assert.ok(df <= LATENT_TOL, `${label} final maxdiff ${df}`);
  return Math.max(worst, df);
}

for (const v of golden?.variants ?? [{ name: "schedulers.json", class: "" } as GoldenVariant]) {
  const known = golden === undefined || schedulerClassNames().includes(v.class);
  Deno.test({
    name: `${v.class || "Schedulers"} (${v.name}) matches Diffusers 0.27 golden runs` +
      (known ? "" : " [not registered yet]"),
    ignore: !hasShared || !known || v.error !== undefined,
    fn() {
      const config = { ...v.config, ...v.step_kwargs_extra };
      for (const run of v.runs) {
        const label = `${v.name} N=${run.num_inference_steps}`;
        const s = createScheduler(v.class, config);
        s.setTimesteps(run.num_inference_steps);
        const dt = elementRel(s.timesteps, run.timesteps);
        assert.ok(dt <= TABLE_TOL, `${label} timesteps maxdiff ${dt}`);
        if (run.timesteps_dtype === "int64") {
          assert.deepEqual(Array.from(s.timesteps), run.timesteps, `${label} timesteps`);
        }
        if (run.sigmas !== undefined) {
          assert.ok(s.sigmas !== undefined, `${label}: scheduler has no sigmas`);
          const ds = elementRel(s.sigmas, run.sigmas);
          assert.ok(ds <= TABLE_TOL, `${label} sigmas maxdiff ${ds}`);
        }
        const dn = elementRel([s.initNoiseSigma], [run.init_noise_sigma]);
        assert.ok(dn <= TABLE_TOL, `${label} init_noise_sigma ${s.initNoiseSigma}`);
        assert.equal(s.order, run.order, `${label} order`);
        const noise = Float32Array.from(golden!.noise_seed0);
        const sigma0 = Math.fround(s.initNoiseSigma);
        const x0 = noise.map((n) => n * sigma0);
        runLoop(label, s, x0, 0, run.steps, run.final, new TorchCpuGenerator(1));
      }
      for (const r of v.img2img) {
        const label = `${v.name} img2img N=${r.num_inference_steps} strength=${r.strength}`;
        const s = createScheduler(v.class, config);
        const { timesteps, startIndex } = s.img2imgTimesteps(r.num_inference_steps, r.strength);
        const dt = elementRel(timesteps, r.timesteps);
        assert.ok(dt <= TABLE_TOL, `${label} timesteps maxdiff ${dt}`);
        const x0 = Float32Array.from(golden!.img2img_x0_seed2);
        const noise = Float32Array.from(golden!.img2img_noise_seed3);
        const noisy = s.addNoise(x0, noise, startIndex);
        const da = relDiff(noisy, r.add_noise);
        assert.ok(da <= LATENT_TOL, `${label} add_noise maxdiff ${da}`);
        assert.equal(r.steps.length, timesteps.length, `${label} step count`);
        runLoop(label, s, noisy, startIndex, r.steps, r.final, new TorchCpuGenerator(1));
      }
    },
  });
}

Deno.test({
  name: "addNoiseAtTimestep() matches Diffusers add_noise at fixed t for the DDPM family",
  ignore: !hasShared,
  fn() {
    const x0 = Float32Array.from(golden!.img2img_x0_seed2);
    const noise = Float32Array.from(golden!.img2img_noise_seed3);
    const config = golden!.variants.find((v) => v.class === "DDIMScheduler")!.config;
    let worst = 0;
    for (const c of golden!.add_noise_fixed_t) {
      if (!schedulerClassNames().includes(c.class)) {
        console.warn(`note: ${c.class} is not registered yet; its add_noise cases are skipped`);
        continue;
      }
      const s = createScheduler(c.class, config);
      assert.ok("addNoiseAtTimestep" in s, `${c.class} lacks addNoiseAtTimestep`);
      const out = (s as unknown as {
        addNoiseAtTimestep(a: Float32Array, b: Float32Array, t: number): Float32Array;
      }).addNoiseAtTimestep(x0, noise, c.t);
      const d = relDiff(out, c.value);
      worst = Math.max(worst, d);
      assert.ok(d <= LATENT_TOL, `${c.class} t=${c.t} maxdiff ${d}`);
    }
  },
});
