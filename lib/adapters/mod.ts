/**
 * LoRA-family files and textual-inversion embeddings, applied as weight edits before a model's
 * graphs are built (lib/model_io/engine.ts `transform`).
 *
 * @example
 * ```ts ignore
 * import { prepareAdapters } from "./mod.ts";
 * const adapters = await prepareAdapters(
 *   { prompt: "a cat <lora:detail:0.7>", negative: "", loraDir: "loras" },
 *   { components: { unet: "m/unet/diffusion_pytorch_model.safetensors" }, tables: {} },
 * );
 * console.log(adapters.ledgers[0]?.applied.length, adapters.infotext);
 * ```
 *
 * @module
 */
export {
  type Embedding,
  type EmbeddingEncoder,
  type EmbeddingFormat,
  type EmbeddingPlan,
  type EncoderTable,
  loadEmbedding,
  type LoadEmbeddingOptions,
  type PlacedEmbedding,
  placeEmbeddings,
} from "./embedding.ts";
export { embeddingShortHash, type FileHashes, fileHashes, loraShortHash } from "./hashes.ts";
export {
  type ComponentWeights,
  type LoraAppliedModule,
  type LoraLedger,
  type LoraPlan,
  type LoraSpec,
  planLoras,
  type WeightTransform,
} from "./lora.ts";
export {
  type LoraAlgorithm,
  type LoraComponent,
  type LoraFile,
  type LoraModule,
  openLoraFile,
} from "./lora_file.ts";
export {
  indexParameters,
  normalisePath,
  type ParameterEntry,
  type ParameterIndex,
} from "./lora_keys.ts";
export { type DenseTensor, doraChange, kron, matmul, moduleDelta } from "./lora_math.ts";
export {
  applyMotionLoras,
  type MotionLoraLedger,
  type MotionLoraResult,
  type MotionLoraSpec,
  motionLoraTarget,
} from "./motion_lora.ts";
export {
  type AdapterJob,
  type AdapterModel,
  describeLedgers,
  embeddingSpecs,
  findLora,
  loraSpecs,
  prepareAdapters,
  type PreparedAdapters,
} from "./prepare.ts";
