/**
 * Noise generators: a bit-exact copy of torch's CPU generator (what Diffusers uses with
 * `torch.Generator("cpu").manual_seed(seed)`) and AUTOMATIC1111's "NV" Philox source.
 *
 * @example
 * ```ts
 * import { type NoiseGenerator, PhiloxGenerator, TorchCpuGenerator } from "./mod.ts";
 * const torchLike: NoiseGenerator = new TorchCpuGenerator(42);
 * const a1111Nv: NoiseGenerator = new PhiloxGenerator(42);
 * const latents = torchLike.randn([1, 4, 64, 64]);
 * ```
 *
 * @module
 */

export { type NoiseGenerator, shapeSize } from "./noise_generator.ts";
export { TorchCpuGenerator } from "./torch_cpu_generator.ts";
export { PhiloxGenerator } from "./philox.ts";
export { MAX_SEED, Mt19937, normalizeSeed } from "./mt19937.ts";
export { NumpyRandomState } from "./numpy_random_state.ts";
