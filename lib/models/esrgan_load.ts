/**
 * Reading an ESRGAN-family weight file as users download it: `.pth` (torch.save, through the
 * restricted unpickler; `{'params_ema': state_dict}`, `{'params': ...}` or a bare state_dict) or
 * `.safetensors`, in any key layout esrgan_keys.ts knows, with the config detected from the
 * weights. The format is told from the file's first bytes, never from its name.
 *
 * @module
 */
import type { TensorSource } from "../onnx/graph.ts";
import { openWeights, type OpenWeightsOptions } from "../weights/weight_source.ts";
import type { UpscalerConfig } from "./esrgan.ts";
import { detectUpscalerConfig } from "./esrgan_detect.ts";
import { normalizeUpscalerKeys, type UpscalerKeyLayout } from "./esrgan_keys.ts";

/** An upscaler file, read: its detected config and float32 weights under Real-ESRGAN names. */
export interface UpscalerWeights {
  /** The file. */
  path: string;
  /** What the weights describe. */
  config: UpscalerConfig;
  /** The file's key layout (informational; the weights are already renamed). */
  layout: UpscalerKeyLayout;
  /** The weights, float32, for {@linkcode buildUpscaler}. */
  weights: Map<string, TensorSource>;
}

/**
 * Opens an upscaler file and detects its config. float32 tensors stored contiguously (every
 * safetensors file, torch.save's uncompressed storages) stay in the file and are referenced in
 * place; others (fp16 files) are converted to float32 in memory. The file is closed on return.
 *
 * Throws a TypeError when the file is not an ESRGAN-family upscaler, and the unpickler's
 * `UnsafePickleError` (a RangeError) when a .pth asks for globals a weight file never needs.
 *
 * @example
 * ```ts ignore
 * import { loadUpscalerWeights } from "./esrgan_load.ts";
 * import { buildUpscaler } from "./esrgan.ts";
 * const { config, weights } = await loadUpscalerWeights("4x-UltraSharp.pth");
 * const model = buildUpscaler(config, weights, { source: "4x-UltraSharp.pth" });
 * ```
 */
export async function loadUpscalerWeights(
  path: string,
  options: OpenWeightsOptions = {},
): Promise<UpscalerWeights> {
  const file = await openWeights(path, options);
  try {
    const keys = normalizeUpscalerKeys(file.names());
    const shapes = new Map<string, number[]>();
    for (const [stored, name] of keys.rename) shapes.set(name, file.info(stored).shape);
    const config = detectUpscalerConfig(shapes, { source: path });
    const weights = new Map<string, TensorSource>();
    for (const [stored, name] of keys.rename) {
      const info = file.info(stored);
      const shape = info.shape;
      const location = info.dtype === "F32" ? await file.location(stored) : undefined;
      weights.set(
        name,
        location !== undefined
          ? {
            dtype: "float32",
            shape,
            file: location.path,
            offset: location.byteOffset,
            length: location.byteLength,
          }
          : { dtype: "float32", shape, data: await file.readFloat32(stored) },
      );
    }
    return { path, config, layout: keys.layout, weights };
  } finally {
    file.close();
  }
}
