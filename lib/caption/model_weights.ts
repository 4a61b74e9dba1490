/**
 * The weights of a transformers model folder as graph initializer sources: `model.safetensors`
 * (referenced in place) or `pytorch_model.bin` through the restricted unpickler (float32
 * tensors stored contiguously are referenced in place too; others are read and converted to
 * float32 when the graph is written).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelNotFoundError } from "../errors.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { openWeights } from "../weights/weight_source.ts";

/** An open weight file of a model folder. */
export interface ModelWeights {
  /** The file read. */
  path: string;
  /** Float32 sources by parameter name, as stored. */
  sources: Map<string, TensorSource>;
  /** Releases the file (after the graphs are written or serialised). */
  close(): void;
}

const INT_DTYPES: Record<string, TensorSource["dtype"]> = {
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U8: "uint8",
  BOOL: "bool",
};

/**
 * Opens `model.safetensors`, else `pytorch_model.bin`, of a transformers folder. Sharded
 * checkpoints (`*.index.json`) are refused with a hint.
 *
 * @example
 * ```ts ignore
 * const weights = await openModelWeights("blip-image-captioning-base");
 * console.log(weights.path, weights.sources.size);
 * weights.close();
 * ```
 */
export async function openModelWeights(dir: string): Promise<ModelWeights> {
  const safetensors = join(dir, "model.safetensors");
  if (existsSync(safetensors)) {
    const file = await SafetensorsFile.open(safetensors);
    return { path: safetensors, sources: tensorSources(file), close: () => file.close() };
  }
  const bin = join(dir, "pytorch_model.bin");
  if (existsSync(bin)) {
    const source = await openWeights(bin);
    const sources = new Map<string, TensorSource>();
    try {
      for (const name of source.names()) {
        const { dtype, shape } = source.info(name);
        const intType = INT_DTYPES[dtype];
        if (intType !== undefined) {
          sources.set(name, {
            dtype: intType,
            shape,
            load: async () => (await source.read(name)).data,
          });
          continue;
        }
        const where = dtype === "F32" ? await source.location(name) : undefined;
        sources.set(
          name,
          where !== undefined
            ? {
              dtype: "float32",
              shape,
              file: where.path,
              offset: where.byteOffset,
              length: where.byteLength,
            }
            : { dtype: "float32", shape, load: () => source.readFloat32(name) },
        );
      }
    } catch (error) {
      source.close();
      throw error;
    }
    return { path: bin, sources, close: () => source.close() };
  }
  const sharded = ["model.safetensors.index.json", "pytorch_model.bin.index.json"]
    .some((f) => existsSync(join(dir, f)));
  throw new ModelNotFoundError(
    `Cannot find the weights in "${dir}": no model.safetensors or pytorch_model.bin`,
    {
      hint: sharded
        ? "sharded checkpoints are not supported; save the model as one file"
        : "pass the folder that transformers' save_pretrained wrote",
    },
  );
}
