/**
 * Checkpoint conversion: original-LDM single files (.safetensors / .ckpt) to Diffusers folders
 * and back, family detection and config synthesis from shapes, and the one LDM <-> Diffusers key
 * table.
 *
 * @example
 * ```ts
 * import { parseLdmYaml } from "./mod.ts";
 * console.assert(parseLdmYaml("a:\n  b: 1\n").a !== undefined);
 * ```
 *
 * @module
 */
export { convertedModelDir, type ConvertedModelOptions } from "./cached_model.ts";
export {
  type BaseFamily,
  CHECKPOINT_CONFIGS,
  type CheckpointConfig,
  detectCheckpoint,
  type DetectedCheckpoint,
  type DetectedTextEncoder,
  type DetectOptions,
  pipelineIndexFor,
  schedulerFor,
  type ShapeSource,
  synthesizeConfigs,
  type SynthesizedConfigs,
} from "./detect.ts";
export {
  exportOnnx,
  type ExportOnnxOptions,
  OPTIMUM_NAMES,
  toOptimumTextEncoder,
} from "./onnx_export.ts";
export { parseLdmYaml, yamlGet, type YamlMap, type YamlValue } from "./ldm_yaml.ts";
export { type OutputDtype } from "./tensor_ops.ts";
export {
  type ComponentMapping,
  componentMappings,
  CONFIGS_METADATA_KEY,
  convertCheckpoint,
  type ConvertCheckpointOptions,
  type ConvertCheckpointResult,
  findOriginalConfig,
} from "./to_diffusers.ts";
export { textEncodersFor, writeSingleFile, type WriteSingleFileOptions } from "./to_single_file.ts";
export {
  findCachedTokenizer,
  resolveTokenizerDir,
  type ResolveTokenizerOptions,
  tokenizerFilesIn,
  writeTokenizer,
} from "./tokenizer_files.ts";
