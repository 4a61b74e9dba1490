/**
 * LoRA training: reverse-mode differentiation of the builders' graphs (autodiff/), the LoRA
 * training graphs of the UNet and the text encoders, DDPM noising, AdamW, the training step, and
 * the whole run behind `denoise lora-train` (train_lora.ts: datasets, cached latents, schedules,
 * checkpoints, the kohya file).
 *
 * @module
 */
export { AdamW, type AdamWOptions, type AdamWParameterState } from "./adamw.ts";
export {
  type LoraStepResult,
  LoraTrainer,
  type LoraTrainerOptions,
  type LoraTrainingBatch,
} from "./lora_trainer.ts";
export {
  loraTrainerFor,
  loraTrainingStep,
  type LoraTrainingStepOptions,
  releaseLoraTrainers,
} from "./lora_training_step.ts";
export {
  KOHYA_PREFIXES,
  type LoraParameterPair,
  loraParameterPairs,
  type LoraTarget,
  loraTargetOf,
  unetLoraModuleName,
} from "./lora_parameters.ts";
export { clipLoraLinearHook, type LoraHook, type LoraInput, loraLinearHook } from "./lora_hook.ts";
export { appendMseLoss, type MseLossOptions } from "./mse_loss.ts";
export {
  addNoisePerItem,
  type TrainingSchedule,
  trainingSchedule,
  trainingTarget,
  velocityPerItem,
} from "./noising.ts";
export { TextStates, type TextStatesOptions } from "./text_states.ts";
export {
  buildTextEncoderLoraTrainingGraph,
  type TextEncoderLoraGraph,
  type TextEncoderLoraGraphOptions,
} from "./text_encoder_lora_graph.ts";
export {
  buildUnetLoraTrainingGraph,
  type UnetLoraGraph,
  type UnetLoraGraphOptions,
  unetTextEmbedsDim,
} from "./unet_lora_graph.ts";
export * from "./autodiff/mod.ts";
export { type BucketOptions, bucketResolutions, fitToBucket, selectBucket } from "./buckets.ts";
export {
  type Checkpoint,
  checkpointName,
  type CheckpointState,
  loadCheckpoint,
  saveCheckpoint,
} from "./checkpoint.ts";
export { clipGradNorm } from "./clip_grad_norm.ts";
export {
  type Dataset,
  datasetFingerprint,
  type DatasetItem,
  type DatasetSubset,
  IMAGE_EXTENSIONS,
  scanDataset,
  tagFrequency,
} from "./dataset.ts";
export {
  type CropMode,
  decodeTrainingImage,
  flipHorizontal,
  pixelsToTensor,
  resizedSize,
  squareCrop,
  type TrainingImage,
} from "./image_transform.ts";
export {
  type KohyaHashes,
  kohyaHashes,
  type KohyaLora,
  pythonFloat,
  writeKohyaLora,
} from "./kohya_file.ts";
export { LatentEncoder } from "./latent_encoder.ts";
export {
  initLora,
  type LoraModuleSpec,
  savedModuleNames,
  textEncoderLoraModules,
  unetLoraModules,
} from "./lora_network.ts";
export {
  learningRateAt,
  LR_SCHEDULERS,
  lrFactor,
  type LrSchedule,
  type LrSchedulerName,
} from "./lr_schedule.ts";
export { deriveSeed, IntegerStream } from "./seeds.ts";
export { computeSnr, minSnrWeights } from "./snr.ts";
export {
  trainLora,
  type TrainLoraHooks,
  type TrainLoraOptions,
  type TrainLoraResult,
  type TrainProgress,
  weightsFingerprint,
} from "./train_lora.ts";
