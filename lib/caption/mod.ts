/**
 * Image captioning: a family-neutral {@linkcode CaptionModel} interface (encode images, then a
 * decoder step with its cache behind a {@linkcode TokenScorer}), the searches of transformers
 * 4.30 `generate` (greedy, beam search, seeded sampling, with its logits processors), and BLIP
 * (`BlipForConditionalGeneration`) built from its transformers folder.
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
export type { CaptionModel, EncodedImages } from "./caption_model.ts";
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
} from "./generation_config.ts";
export { type ModelWeights, openModelWeights } from "./model_weights.ts";
