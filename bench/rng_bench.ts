/**
 * Noise generation speed for one SDXL-sized latent, [1, 4, 128, 128] (65,536 values).
 * Run: deno bench --allow-all bench/rng_bench.ts
 */
import { PhiloxGenerator, TorchCpuGenerator } from "../lib/rng/mod.ts";

const shape = [1, 4, 128, 128];

Deno.bench("torch CPU randn [1,4,128,128]", { group: "randn", baseline: true }, () => {
  new TorchCpuGenerator(42).randn(shape);
});

Deno.bench("A1111 NV philox randn [1,4,128,128]", { group: "randn" }, () => {
  new PhiloxGenerator(42).randn(shape);
});

Deno.bench("torch CPU rand [1,4,128,128]", () => {
  new TorchCpuGenerator(42).rand(shape);
});

Deno.bench("torch CPU randn float64 [1,4,128,128]", () => {
  new TorchCpuGenerator(42).randnFloat64(shape);
});
