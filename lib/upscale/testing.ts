/**
 * Test helpers: tiny random upscalers made by the builder's own random-weight path, and seeded
 * test images.
 *
 * @module
 */
import { type UpscalerConfig, upscalerParameterShapes } from "../models/esrgan.ts";
import { memoryWeights } from "../models/layers.ts";
import { randomWeights } from "../models/random.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import type { PlanarImage } from "./tiled.ts";
import { createUpscaler, type Upscaler } from "./upscaler.ts";

/** A tiny random model made by the builder's own random-weight path. */
export async function tinyUpscaler(config: UpscalerConfig, seed = 0): Promise<Upscaler> {
  const weights = memoryWeights(randomWeights(upscalerParameterShapes(config), seed));
  return await createUpscaler(config, weights, { threads: 1 });
}

/** A smooth gradient with seeded noise, [3, H, W] in [0, 1]. */
export function testImage(width: number, height: number, planes = 3, seed = 5): PlanarImage {
  const noise = new TorchCpuGenerator(seed).rand([planes * width * height]);
  const data = new Float32Array(planes * width * height);
  for (let c = 0; c < planes; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = c * width * height + y * width + x;
        const g = (x / width + y / height + c / 3) / 3;
        data[i] = 0.7 * g + 0.3 * noise[i]!;
      }
    }
  }
  return { width, height, data };
}
