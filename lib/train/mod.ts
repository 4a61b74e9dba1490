/**
 * LoRA training: reverse-mode differentiation of the builders' graphs (autodiff/), the LoRA
 * training graph of the UNet, DDPM noising, AdamW, and the training step.
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
  type LoraParameterPair,
  loraParameterPairs,
  unetLoraModuleName,
} from "./lora_parameters.ts";
export { type LoraHook, type LoraInput, loraLinearHook } from "./lora_hook.ts";
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
  buildUnetLoraTrainingGraph,
  type UnetLoraGraph,
  type UnetLoraGraphOptions,
} from "./unet_lora_graph.ts";
export * from "./autodiff/mod.ts";
