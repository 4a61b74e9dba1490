/**
 * Weight files: safetensors read/write, torch.save checkpoints through a restricted unpickler,
 * and {@linkcode openWeights}, which reads either behind one interface.
 *
 * @example
 * ```ts
 * import { encodeSafetensors, SafetensorsFile } from "./mod.ts";
 * const bytes = encodeSafetensors({ w: { dtype: "F16", shape: [2], data: new Float32Array([1, 2]) } });
 * const file = SafetensorsFile.fromBytes(bytes);
 * console.assert(file.tensors.get("w")?.byteLength === 4);
 * ```
 *
 * @module
 */

export {
  type Dtype,
  encodeSafetensors,
  MAX_HEADER_BYTES,
  SafetensorsFile,
  type TensorInfo,
  type TensorsToWrite,
  type TensorToWrite,
  writeSafetensors,
} from "./safetensors.ts";
export {
  isTensor,
  loadTorchFile,
  loadTorchStateDict,
  StorageRef,
  TensorRef,
  TorchArchive,
  type TorchLoadOptions,
} from "./torch_zip.ts";
export {
  isTuple,
  type PickleDict,
  PickleGlobal,
  PickleObject,
  type PickleValue,
  UnsafePickleError,
} from "./pickle.ts";
export {
  openWeights,
  type OpenWeightsOptions,
  weightByteLength,
  type WeightInfo,
  type WeightLocation,
  type WeightSource,
} from "./weight_source.ts";
export type { Tensor } from "../tensor/tensor.ts";
