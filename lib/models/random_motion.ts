/**
 * Random-weight AnimateDiff motion modules (Diffusers MotionAdapter folders) for tests and tiny
 * models, made from the same config the builders read: names and shapes come from
 * {@linkcode motionParameterShapes}, so a random adapter always loads. The position tables get
 * their real sinusoidal values, as Diffusers' `save_pretrained` writes them.
 *
 * @module
 */
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { writeSafetensors } from "../weights/safetensors.ts";
import {
  MOTION_ADAPTER_DEFAULTS,
  type MotionConfig,
  motionParameterShapes,
  parseMotionConfig,
  sinusoidalPositions,
} from "./motion.ts";
import { type RandomTensor, randomWeights } from "./random.ts";

/**
 * Random weights for every tensor of a MotionAdapter with this config (Diffusers names),
 * drawn as {@linkcode randomWeights} draws them; `pos_embed.pe` tables hold the sinusoids.
 * `proj_out` is random too (Diffusers 0.27 does not zero it), so the modules change the output.
 *
 * @example
 * ```ts
 * import { parseMotionConfig } from "./motion.ts";
 * import { randomMotionWeights } from "./random_motion.ts";
 * const w = randomMotionWeights(parseMotionConfig({ block_out_channels: [8, 16],
 *   motion_num_attention_heads: 2, motion_max_seq_length: 4 }), 0);
 * console.assert(w.get("mid_block.motion_modules.0.proj_in.weight")?.shape.join() === "16,16");
 * ```
 */
export function randomMotionWeights(config: MotionConfig, seed: number): Map<string, RandomTensor> {
  const shapes = motionParameterShapes(config);
  const tables = [...shapes].filter(([k]) => k.endsWith(".pos_embed.pe"));
  for (const [k] of tables) shapes.delete(k);
  const weights = randomWeights(shapes, seed);
  // [1, maxSeqLength, C]
  for (const [name, shape] of tables) {
    weights.set(name, { shape, data: sinusoidalPositions(shape[1]!, shape[2]!) });
  }
  return weights;
}

/** Options of {@linkcode createRandomMotionAdapter}. */
export interface CreateRandomMotionAdapterOptions {
  /** Seed of torch's CPU generator (default 0). */
  seed?: number;
}

/**
 * Writes a Diffusers MotionAdapter folder with random weights to `outDir`: `config.json`
 * (Diffusers 0.27 defaults filled in, keys sorted) and `diffusion_pytorch_model.safetensors`.
 *
 * @example
 * ```ts ignore
 * await createRandomMotionAdapter({ block_out_channels: [32, 32, 32, 64],
 *   motion_max_seq_length: 32 }, "/tmp/tiny_motion_adapter", { seed: 0 });
 * ```
 */
export async function createRandomMotionAdapter(
  json: unknown,
  outDir: string,
  options: CreateRandomMotionAdapterOptions = {},
): Promise<void> {
  const config = parseMotionConfig(json);
  const given = Object.fromEntries(
    Object.entries(json as Record<string, unknown>).filter(([k]) => !k.startsWith("_")),
  );
  const full: Record<string, unknown> = {
    _class_name: "MotionAdapter",
    _diffusers_version: "0.27.2",
    ...MOTION_ADAPTER_DEFAULTS,
    ...given,
  };
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(full).sort()) sorted[k] = full[k];
  await fsp.mkdir(outDir, { recursive: true });
  await fsp.writeFile(join(outDir, "config.json"), JSON.stringify(sorted, null, 2) + "\n");
  const weights = randomMotionWeights(config, options.seed ?? 0);
  await writeSafetensors(
    join(outDir, "diffusion_pytorch_model.safetensors"),
    [...weights].map(([name, t]) => ({
      name,
      dtype: "F32" as const,
      shape: t.shape,
      data: t.data,
    })),
    { format: "pt" },
  );
}
