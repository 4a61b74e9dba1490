/**
 * Architecture builders: Diffusers/transformers config + weights in, ONNX model out (initializer
 * names = parameter names). Random-weight models for tests and `denoise models create-random`.
 *
 * @example
 * ```ts ignore
 * import { buildUnet, parseUnetConfig } from "./mod.ts";
 * import { tensorSources } from "../onnx/mod.ts";
 * import { SafetensorsFile } from "../weights/safetensors.ts";
 * const file = await SafetensorsFile.open("unet/diffusion_pytorch_model.safetensors");
 * const config = parseUnetConfig(JSON.parse(await Deno.readTextFile("unet/config.json")));
 * const model = buildUnet(config, tensorSources(file));
 * ```
 *
 * @module
 */
export * from "./config.ts";
export * from "./unet.ts";
export * from "./controlnet.ts";
export * from "./controlnet_config.ts";
export * from "./controlnet_loader.ts";
export * from "./controlnet_single_file.ts";
export * from "./vae.ts";
export * from "./random.ts";
export {
  collectParameterShapes,
  memoryWeights,
  ModelContext,
  selectWeights,
  timestepFrequencies,
} from "./layers.ts";
export * from "./clip_text.ts";
export * from "./taesd.ts";
export * from "./motion.ts";
export * from "./motion_adapter.ts";
export * from "./random_motion.ts";
export * from "./esrgan.ts";
export * from "./esrgan_keys.ts";
export * from "./esrgan_detect.ts";
export * from "./esrgan_load.ts";
export * from "./esrgan_cost.ts";
export * from "./blip_config.ts";
export * from "./blip_vision.ts";
export * from "./blip_text.ts";
export * from "./blip_weights.ts";
export * from "./random_blip.ts";
export * from "./random_florence2.ts";
export * from "./random_llava.ts";
export * from "./random_tokenizer.ts";
