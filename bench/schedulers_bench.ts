/**
 * Scheduler overhead of a 30-step loop on an SDXL-sized latent [1, 4, 128, 128] (65,536 values):
 * setTimesteps, scaleModelInput and step, with a cheap fake model (eps = 0.1 * x_in) so only the
 * scheduler arithmetic (and, for euler-a, the torch-compatible noise) is measured.
 * Run: deno bench --allow-all bench/schedulers_bench.ts
 */
import { createScheduler } from "../lib/schedulers/mod.ts";
import { TorchCpuGenerator } from "../lib/rng/mod.ts";

const SD15 = {
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  beta_end: 0.012,
  steps_offset: 1,
};
const N = 4 * 128 * 128;
const start = new TorchCpuGenerator(0).randn([1, 4, 128, 128]);

function loop(name: string): void {
  const s = createScheduler(name, SD15);
  s.setTimesteps(30);
  const rng = new TorchCpuGenerator(1);
  let x: Float32Array = start.map((v) => v * s.initNoiseSigma);
  const eps = new Float32Array(N);
  for (let i = 0; i < s.timesteps.length; i++) {
    const xIn = s.scaleModelInput(x, i);
    for (let k = 0; k < N; k++) eps[k] = 0.1 * xIn[k]!;
    x = s.step(eps, i, x, rng);
  }
}

for (const name of ["euler", "euler-a", "dpm++2m"]) {
  Deno.bench(`${name}: 30-step loop, [1,4,128,128]`, { group: "30 steps" }, () => loop(name));
}
