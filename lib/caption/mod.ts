/**
 * Image captioning: a family-neutral {@linkcode CaptionModel} interface (encode images, then a
 * decoder step with its cache behind a {@linkcode TokenScorer}), the searches of transformers
 * 4.30 `generate` (greedy, beam search, seeded sampling, with its logits processors), BLIP
 * (`BlipForConditionalGeneration`) built from its transformers folder, Florence-2 and
 * LLaVA-class models from their ONNX exports, and captioning of image files (metadata,
 * sidecars).
 *
 * @example
 * ```ts ignore
 * import { BlipCaptionModel, caption } from "./mod.ts";
 * import { decodeImage } from "../image/codec.ts";
 * const model = await BlipCaptionModel.load("blip-image-captioning-base");
 * const image = await decodeImage(await Deno.readFile("cat.jpg"), { channels: 4 });
 * const [text] = await caption(model, [image], { prompt: "a picture of", numBeams: 3 });
 * await model.release();
 * ```
 *
 * @module
 */
export { caption, captionImages, type CaptionOptions, type CaptionResult } from "./caption.ts";
export {
  CAPTION_TASKS,
  type CaptionModel,
  type CaptionRequest,
  type CaptionTask,
  checkTask,
  type EncodedImages,
} from "./caption_model.ts";
export {
  Florence2CaptionModel,
  florence2GenerationConfig,
  type LoadFlorence2Options,
} from "./florence2.ts";
export {
  FLORENCE2_TASK_PROMPTS,
  FLORENCE2_TASK_PROMPTS_WITH_INPUT,
  FLORENCE2_TASK_TOKENS,
  florence2Prompt,
  florence2RequestPrompt,
} from "./florence2_prompts.ts";
export { LlavaCaptionModel, type LoadLlavaOptions } from "./llava.ts";
export {
  CHAT_TASK_PROMPTS,
  chatRequestText,
  expandImageTokens,
  llavaPrompt,
} from "./llava_chat.ts";
export {
  type CaptionFamily,
  captionFamily,
  type CaptionModelEnvironment,
  loadCaptionModel,
  type LoadCaptionModelOptions,
  resolveCaptionModel,
} from "./load.ts";
export { captionFiles, type CaptionFilesOptions, type FileCaption } from "./caption_files.ts";
export {
  IMAGE_EXTENSIONS,
  type ImageInput,
  type ImageInputs,
  listImageInputs,
  sidecarPath,
} from "./image_inputs.ts";
export {
  centerCrop,
  type ClipImageProcessorConfig,
  clipPixelValues,
  parseClipImageProcessorConfig,
  shortestEdgeSize,
} from "./clip_image_processor.ts";
export { type Seq2SeqGeometry, Seq2SeqScorer } from "./seq2seq_scorer.ts";
export {
  type DecoderGeometry,
  DecoderOnlyScorer,
  type PromptImages,
} from "./decoder_only_scorer.ts";
export { BlipCaptionModel, type LoadBlipOptions } from "./blip.ts";
export {
  type BlipImageProcessorConfig,
  blipPixelValues,
  OPENAI_CLIP_MEAN,
  OPENAI_CLIP_STD,
  parseBlipImageProcessorConfig,
  toRgb,
} from "./blip_image_processor.ts";
export { functionScorer, type TokenScorer } from "./token_scorer.ts";
export { generate, type SearchMode, searchMode } from "./generate.ts";
export { beamSearch } from "./beam_search.ts";
export { greedySearch, sampleSearch } from "./greedy_search.ts";
export type { SearchResult, SearchSetup } from "./search.ts";
export {
  type EarlyStopping,
  GENERATION_DEFAULTS,
  type GenerationConfig,
  type GenerationOverrides,
  parseGenerationConfig,
  resolveGenerationConfig,
  withDefaultNewTokens,
} from "./generation_config.ts";
export { type ModelWeights, openModelWeights } from "./model_weights.ts";
