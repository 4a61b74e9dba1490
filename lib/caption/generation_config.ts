/**
 * The part of transformers' `GenerationConfig` (4.30 `generation/configuration_utils.py`) that
 * caption generation uses: how long, which search (greedy, beam, sampling), and the logits
 * processors a model's config can ask for (repetition penalty, no-repeat n-grams, minimum
 * lengths, forced first and last tokens). Parsed from a model config's snake_case keys (BLIP
 * reads them from `text_config`, as transformers 4.30 builds the text decoder's generation
 * config with `GenerationConfig.from_model_config(text_config)`), then overridden by the
 * caller's options.
 *
 * @module
 */

/** When beam search stops (transformers `early_stopping`). */
export type EarlyStopping = boolean | "never";

/** A resolved generation config. Token ids are the model's, not part of this type. */
export interface GenerationConfig {
  /** Longest sequence, prompt included (`max_length`); used when `maxNewTokens` is null. */
  maxLength: number;
  /** New tokens to generate at most (`max_new_tokens`), or null to use `maxLength`. */
  maxNewTokens: number | null;
  /** Shortest sequence, prompt included, before the end token is allowed (`min_length`). */
  minLength: number;
  /** New tokens before the end token is allowed (`min_new_tokens`), or null. */
  minNewTokens: number | null;
  /** Sample instead of taking the most likely token (`do_sample`). */
  doSample: boolean;
  /** Beams (`num_beams`); 1 is greedy or sampling. */
  numBeams: number;
  /** Beam scores are divided by `length ** lengthPenalty` (`length_penalty`). */
  lengthPenalty: number;
  /** Beam search stopping rule (`early_stopping`). */
  earlyStopping: EarlyStopping;
  /** Bans every n-gram that already occurred (`no_repeat_ngram_size`; 0 = off). */
  noRepeatNgramSize: number;
  /** CTRL's penalty on tokens already in the sequence (`repetition_penalty`; 1 = off). */
  repetitionPenalty: number;
  /** Sampling: logits are divided by it (`temperature`). */
  temperature: number;
  /** Sampling: keep the k most likely tokens (`top_k`; 0 = off). */
  topK: number;
  /** Sampling: keep the smallest set with this much probability (`top_p`; 1 = off). */
  topP: number;
  /** Token forced as the first generated one (`forced_bos_token_id`; BART, Florence-2), or null. */
  forcedBosTokenId: number | null;
  /** Token forced at the last position the length allows (`forced_eos_token_id`), or null. */
  forcedEosTokenId: number | null;
}

/** transformers 4.30 `GenerationConfig` defaults. */
export const GENERATION_DEFAULTS: Readonly<GenerationConfig> = {
  maxLength: 20,
  maxNewTokens: null,
  minLength: 0,
  minNewTokens: null,
  doSample: false,
  numBeams: 1,
  lengthPenalty: 1,
  earlyStopping: false,
  noRepeatNgramSize: 0,
  repetitionPenalty: 1,
  temperature: 1,
  topK: 50,
  topP: 1,
  forcedBosTokenId: null,
  forcedEosTokenId: null,
};

/** Overrides of a {@linkcode GenerationConfig} (a caller's options). */
export type GenerationOverrides = Partial<GenerationConfig>;

function fail(key: string, want: string, got: unknown): never {
  throw new RangeError(
    `Cannot use the generation config: "${key}" must be ${want}, got ${JSON.stringify(got)}`,
  );
}

/**
 * Reads the generation keys of a transformers config object (snake_case; absent or null keys
 * keep transformers' defaults).
 *
 * @example
 * ```ts
 * import { parseGenerationConfig } from "./generation_config.ts";
 * const config = parseGenerationConfig({ max_length: 30, num_beams: 3 });
 * console.assert(config.maxLength === 30 && config.numBeams === 3 && config.topK === 50);
 * ```
 */
export function parseGenerationConfig(json: Record<string, unknown>): GenerationConfig {
  const out: GenerationConfig = { ...GENERATION_DEFAULTS };
  const int = (key: string, min: number): number | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      fail(key, `an integer >= ${min}`, v);
    }
    return v;
  };
  const num = (key: string): number | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) fail(key, "a number", v);
    return v;
  };
  out.maxLength = int("max_length", 1) ?? out.maxLength;
  out.maxNewTokens = int("max_new_tokens", 1) ?? null;
  out.minLength = int("min_length", 0) ?? out.minLength;
  out.minNewTokens = int("min_new_tokens", 0) ?? null;
  const sample = json["do_sample"];
  if (sample !== undefined && sample !== null) {
    if (typeof sample !== "boolean") fail("do_sample", "true or false", sample);
    out.doSample = sample;
  }
  out.numBeams = int("num_beams", 1) ?? out.numBeams;
  out.lengthPenalty = num("length_penalty") ?? out.lengthPenalty;
  const early = json["early_stopping"];
  if (early !== undefined && early !== null) {
    if (typeof early !== "boolean" && early !== "never") {
      fail("early_stopping", 'true, false or "never"', early);
    }
    out.earlyStopping = early;
  }
  out.noRepeatNgramSize = int("no_repeat_ngram_size", 0) ?? out.noRepeatNgramSize;
  out.repetitionPenalty = num("repetition_penalty") ?? out.repetitionPenalty;
  out.temperature = num("temperature") ?? out.temperature;
  out.topK = int("top_k", 0) ?? out.topK;
  out.topP = num("top_p") ?? out.topP;
  out.forcedBosTokenId = int("forced_bos_token_id", 0) ?? null;
  out.forcedEosTokenId = int("forced_eos_token_id", 0) ?? null;
  return checkGenerationConfig(out);
}

/**
 * `base` with the defined fields of `overrides`, checked.
 *
 * @example
 * ```ts
 * import { GENERATION_DEFAULTS, resolveGenerationConfig } from "./generation_config.ts";
 * const config = resolveGenerationConfig(GENERATION_DEFAULTS, { maxNewTokens: 12 });
 * console.assert(config.maxNewTokens === 12);
 * ```
 */
export function resolveGenerationConfig(
  base: GenerationConfig,
  overrides: GenerationOverrides = {},
): GenerationConfig {
  const out: GenerationConfig = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
  }
  return checkGenerationConfig(out);
}

function checkGenerationConfig(c: GenerationConfig): GenerationConfig {
  const positiveInt = (v: number, key: string) => {
    if (!Number.isInteger(v) || v < 1) fail(key, "an integer >= 1", v);
  };
  positiveInt(c.maxLength, "maxLength");
  if (c.maxNewTokens !== null) positiveInt(c.maxNewTokens, "maxNewTokens");
  positiveInt(c.numBeams, "numBeams");
  if (!Number.isInteger(c.minLength) || c.minLength < 0) fail("minLength", ">= 0", c.minLength);
  if (!Number.isInteger(c.noRepeatNgramSize) || c.noRepeatNgramSize < 0) {
    fail("noRepeatNgramSize", "an integer >= 0", c.noRepeatNgramSize);
  }
  if (!(c.repetitionPenalty > 0)) fail("repetitionPenalty", "> 0", c.repetitionPenalty);
  if (!(c.temperature > 0)) fail("temperature", "> 0", c.temperature);
  if (!Number.isInteger(c.topK) || c.topK < 0) fail("topK", "an integer >= 0", c.topK);
  if (!(c.topP > 0 && c.topP <= 1)) fail("topP", "in (0, 1]", c.topP);
  if (c.doSample && c.numBeams > 1) {
    throw new RangeError(
      "Cannot generate with both sampling and beam search (beam sampling is not supported); " +
        "pass numBeams 1 to sample, or doSample false for beam search",
    );
  }
  return c;
}

/**
 * `config` with `maxNewTokens` set to `n` when `source` (the generation config JSON it was
 * parsed from) sets neither `max_length` nor `max_new_tokens`: for models whose cards always
 * pass a length, where transformers' default total length of 20 would cut captions short (or,
 * for a decoder-only model, end them before they start).
 *
 * @example
 * ```ts
 * import { parseGenerationConfig, withDefaultNewTokens } from "./generation_config.ts";
 * const config = withDefaultNewTokens(parseGenerationConfig({}), {}, 1024);
 * console.assert(config.maxNewTokens === 1024);
 * ```
 */
export function withDefaultNewTokens(
  config: GenerationConfig,
  source: Record<string, unknown>,
  n: number,
): GenerationConfig {
  const hasLength = ["max_length", "max_new_tokens"].some((k) =>
    source[k] !== undefined && source[k] !== null
  );
  return hasLength ? config : checkGenerationConfig({ ...config, maxNewTokens: n });
}
