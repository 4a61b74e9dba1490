/**
 * Choosing the scheduler and the noise source of a run.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { type NoiseGenerator, PhiloxGenerator, TorchCpuGenerator } from "../rng/mod.ts";
import {
  createScheduler,
  resolveSampler,
  type ScheduleName,
  type Scheduler,
} from "../schedulers/mod.ts";

/**
 * The scheduler for a run: the model's own scheduler class and config when no sampler is named
 * (exactly what a Diffusers pipeline uses), else the named sampler configured from the model's
 * scheduler_config.json plus the sampler's own keys. `schedule` picks the sigma schedule.
 */
export function makeScheduler(
  modelConfig: Record<string, unknown>,
  sampler: string | undefined,
  schedule: ScheduleName | undefined,
): Scheduler {
  const config: Record<string, unknown> = { ...modelConfig };
  let className = String(modelConfig._class_name ?? "EulerDiscreteScheduler");
  if (sampler !== undefined) {
    let resolved;
    try {
      resolved = resolveSampler(sampler);
    } catch (error) {
      throw new UsageError((error as Error).message, { hint: 'see "denoise samplers"' });
    }
    className = resolved.diffusersClass;
    Object.assign(config, resolved.configOverrides);
    if (schedule === undefined && resolved.schedule !== "default") {
      config.sigma_schedule = resolved.schedule.replace("-", "_");
    }
  }
  if (schedule !== undefined) config.sigma_schedule = schedule.replace("-", "_");
  return createScheduler(className, config);
}

/** The noise source for a seed: torch's CPU generator or A1111's NV (philox) source. */
export function makeGenerator(kind: "cpu" | "nv", seed: bigint): NoiseGenerator {
  return kind === "nv" ? new PhiloxGenerator(seed) : new TorchCpuGenerator(seed);
}

/**
 * One generator per image of a batch, as A1111 does: a draw of shape `[N, ...]` takes
 * `[1, ...]` from each image's own generator in turn. With one image this is exactly that
 * image's generator (and so Diffusers' stream); with several, image k is the image that seed
 * `seed + k` makes alone.
 */
export class BatchGenerator implements NoiseGenerator {
  readonly #generators: NoiseGenerator[];

  constructor(generators: NoiseGenerator[]) {
    if (generators.length === 0) throw new RangeError("BatchGenerator needs a generator");
    this.#generators = generators;
  }

  randn(shape: number[]): Float32Array {
    const n = this.#generators.length;
    if (n === 1) return this.#generators[0]!.randn(shape);
    if (shape[0] !== n) {
      throw new TypeError(
        `Cannot draw noise of shape [${shape}] for a batch of ${n} images: the first axis must be ${n}`,
      );
    }
    const item = [1, ...shape.slice(1)];
    const parts = this.#generators.map((g) => g.randn(item));
    const out = new Float32Array(parts.reduce((sum, p) => sum + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}

/** The generator for a batch whose images use `seeds`. */
export function batchGenerator(kind: "cpu" | "nv", seeds: readonly bigint[]): NoiseGenerator {
  return new BatchGenerator(seeds.map((s) => makeGenerator(kind, s)));
}

/** A random seed below 2^32, as A1111 draws them. */
export function randomSeed(): bigint {
  return BigInt(crypto.getRandomValues(new Uint32Array(1))[0]!);
}
