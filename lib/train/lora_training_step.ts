/**
 * `loraTrainingStep()`: one training step as a single call, for library users and checks. The
 * model folder is opened once per process and its sessions are kept (one per module set and
 * shape), so calling it in a loop only runs onnxruntime; {@linkcode releaseLoraTrainers} frees
 * them.
 *
 * @module
 */
import { resolve } from "node:path";
import { LoraTrainer, type LoraTrainerOptions } from "./lora_trainer.ts";

/** The options of {@linkcode loraTrainingStep} (the batch plus the model folder). */
export interface LoraTrainingStepOptions {
  /** Diffusers folder. */
  model: string;
  /** kohya names: lora_unet_<path>.lora_down.weight / .lora_up.weight. */
  lora: Record<string, Float32Array>;
  /** scale = alpha / rank. */
  alpha: number;
  /** Latents shape [B, 4, h, w]. */
  shape: number[];
  /** Already multiplied by the VAE scaling factor. */
  latents: Float32Array;
  noise: Float32Array;
  /** One per batch item. */
  timesteps: number[];
  prompt: string | string[];
  /** Default: the model's scheduler config. */
  predictionType?: "epsilon" | "v_prediction";
}

const trainers = new Map<string, Promise<LoraTrainer>>();

/** The process-wide trainer of a model folder (opened on first use). */
export function loraTrainerFor(
  model: string,
  options: LoraTrainerOptions = {},
): Promise<LoraTrainer> {
  const key = JSON.stringify([resolve(model), options]);
  let trainer = trainers.get(key);
  if (trainer === undefined) {
    trainer = LoraTrainer.open(model, options);
    trainers.set(key, trainer);
    trainer.catch(() => trainers.delete(key));
  }
  return trainer;
}

/**
 * One step of Diffusers' train_text_to_image_lora.py on a fixed batch: DDPM `add_noise` at each
 * item's timestep, the UNet with the LoRA, MSE (mean over all elements) against the noise or
 * the velocity, and the gradient of every LoRA tensor.
 *
 * @example
 * ```ts ignore
 * const { loss, grads } = await loraTrainingStep({
 *   model: "tiny_dummy/pipeline", lora, alpha: 4, shape: [1, 4, 32, 32],
 *   latents, noise, timesteps: [500], prompt: "a photo of a cat",
 * });
 * new AdamW({ lr: 1e-3 }).step(lora, grads);
 * ```
 */
export async function loraTrainingStep(
  opts: LoraTrainingStepOptions,
): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
  const trainer = await loraTrainerFor(opts.model);
  const { loss, grads } = await trainer.step({
    lora: opts.lora,
    alpha: opts.alpha,
    shape: opts.shape,
    latents: opts.latents,
    noise: opts.noise,
    timesteps: opts.timesteps,
    prompt: opts.prompt,
    ...(opts.predictionType === undefined ? {} : { predictionType: opts.predictionType }),
  });
  return { loss, grads };
}

/** Frees every trainer {@linkcode loraTrainingStep} opened (sessions and temporary graphs). */
export async function releaseLoraTrainers(): Promise<void> {
  const all = [...trainers.values()];
  trainers.clear();
  for (const t of all) {
    try {
      await (await t).release();
    } catch {
      // one that failed to open holds nothing
    }
  }
}
