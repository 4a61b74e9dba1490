/**
 * Captions for decoded images with any {@linkcode CaptionModel}: images are encoded in batches,
 * generation runs with the model's generation config overridden by the caller's options, and
 * the ids are decoded as the model's processor decodes them.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { type CaptionModel, type CaptionTask, checkTask } from "./caption_model.ts";
import { generate, searchMode } from "./generate.ts";
import { type GenerationOverrides, resolveGenerationConfig } from "./generation_config.ts";
import type { SearchSetup } from "./search.ts";

/** Options of {@linkcode caption} and {@linkcode captionImages}. */
export interface CaptionOptions extends GenerationOverrides {
  /**
   * Text that conditions the caption (BLIP continues it and returns it included; Florence-2
   * and chat models take it instead of the task's prompt).
   */
  prompt?: string;
  /** The task (default `"caption"`). */
  task?: CaptionTask;
  /** Sampling seed (default 0); image `i` of the call draws from its own generator, `seed + i`. */
  seed?: number;
  /** Sampling: one seed per image instead of `seed + i`. */
  seeds?: readonly number[];
  /** Images encoded and decoded together (default 8). */
  batchSize?: number;
  /** Called after each batch with the number of images captioned so far. */
  onProgress?: (done: number, total: number) => void;
}

/** One image's caption with the ids it was decoded from. */
export interface CaptionResult {
  /** The decoded caption (special tokens skipped; a chat model's prompt left out). */
  text: string;
  /** Generated ids, decoder prompt included, ending with the end token if one was made. */
  ids: number[];
}

/**
 * Captions `images` and returns ids and text for each, in order.
 *
 * @example
 * ```ts ignore
 * const model = await BlipCaptionModel.load("blip-image-captioning-base");
 * const [result] = await captionImages(model, [image], { numBeams: 3, maxNewTokens: 20 });
 * console.log(result.text, result.ids);
 * ```
 */
export async function captionImages(
  model: CaptionModel,
  images: readonly RawImage[],
  options: CaptionOptions = {},
): Promise<CaptionResult[]> {
  const {
    prompt,
    task = "caption",
    seed = 0,
    seeds,
    batchSize = 8,
    onProgress,
    ...overrides
  } = options;
  checkTask(model, task);
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`Cannot caption in batches of ${batchSize}; pass an integer >= 1`);
  }
  const imageSeeds = seeds ?? images.map((_, i) => seed + i);
  if (imageSeeds.length !== images.length) {
    throw new RangeError(`Cannot sample: pass one seed per image (${images.length})`);
  }
  for (const s of imageSeeds) {
    if (!Number.isInteger(s) || s < 0) {
      throw new RangeError(`Cannot sample with seed ${s}; pass an integer >= 0`);
    }
  }
  const config = resolveGenerationConfig(model.generationConfig, overrides);
  const results: CaptionResult[] = [];
  for (let start = 0; start < images.length; start += batchSize) {
    const batch = images.slice(start, start + batchSize);
    const encoded = await model.encode(batch, { prompt, task });
    const setup: SearchSetup = {
      config,
      eosTokenIds: model.eosTokenIds,
      padTokenId: model.padTokenId,
    };
    if (searchMode(setup) === "sample") setup.seeds = imageSeeds.slice(start, start + batch.length);
    const prompts = batch.map(() => encoded.promptIds);
    const { sequences } = await generate(encoded.scorer, prompts, setup);
    for (const ids of sequences) {
      results.push({ text: model.decode(ids, encoded.promptIds), ids });
    }
    onProgress?.(results.length, images.length);
  }
  return results;
}

/**
 * Captions `images`: one string per image, as the model's processor decodes the generated ids
 * (BLIP: transformers' `processor.decode(generate(...)[i], skip_special_tokens=True)`).
 *
 * @example
 * ```ts ignore
 * const model = await BlipCaptionModel.load("blip-image-captioning-base");
 * const [text] = await caption(model, [image], { prompt: "a picture of" });
 * ```
 */
export async function caption(
  model: CaptionModel,
  images: readonly RawImage[],
  options: CaptionOptions = {},
): Promise<string[]> {
  return (await captionImages(model, images, options)).map((r) => r.text);
}
