/**
 * From prompt text to the UNet's `encoder_hidden_states` for every step, the way A1111 does it
 * (modules/sd_hijack_clip.py, prompt_parser.py): extra-network tags removed, AND split into
 * weighted sub-prompts, per-step schedules, `(word:1.2)` weights, 75-token chunks (BREAK and
 * comma backtracking), each chunk encoded as BOS + 75 + EOS, emphasis applied, chunks
 * concatenated; the prompt and the negative padded to the same chunk count with empty-prompt
 * chunks (A1111's "pad prompt/negative prompt" option). Each distinct text is encoded once.
 *
 * For a short unweighted prompt this equals Diffusers' `encode_prompt` exactly.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import { parsePromptAttention } from "../prompt/attention.ts";
import { parseComposite } from "../prompt/composite.ts";
import { extractNetworks } from "../prompt/networks.ts";
import { promptSchedules } from "../prompt/schedule.ts";
import { ClipTokenizer } from "../tokenizer/mod.ts";
import type { Scheduler } from "../schedulers/mod.ts";
import type { Embedding, StepConditioning } from "./denoise.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/** Tokens per chunk between BOS and EOS. */
export const CHUNK_TOKENS = 75;
/** A1111's default "comma padding backtrack". */
export const COMMA_BACKTRACK = 20;

/** Prompt options of a Job. */
export interface PromptOptions {
  prompt: string;
  negative: string;
  steps: number;
  clipSkip: number;
  promptSyntax: "a1111" | "plain";
  emphasis: "original" | "no-norm" | "none";
}

/** One 77-token chunk: ids and per-token weights. */
export interface TokenChunk {
  ids: number[];
  weights: number[];
}

/**
 * Splits a prompt into A1111 chunks of BOS + 75 tokens + EOS, padded with EOS then the
 * tokenizer's pad id. `BREAK` starts a new chunk; a chunk that fills up within
 * {@linkcode COMMA_BACKTRACK} tokens of a comma breaks after the comma instead.
 */
export function chunkPrompt(
  tokenizer: ClipTokenizer,
  text: string,
  syntax: "a1111" | "plain",
): TokenChunk[] {
  const parsed: Array<[string, number]> = syntax === "plain"
    ? [[text, 1]]
    : parsePromptAttention(text);
  const comma = tokenizer.tokenToId(",</w>");
  const chunks: TokenChunk[] = [];
  let ids: number[] = [];
  let weights: number[] = [];
  let lastComma = -1;
  const nextChunk = () => {
    while (ids.length < CHUNK_TOKENS) {
      ids.push(tokenizer.eosId);
      weights.push(1);
    }
    const full = [tokenizer.bosId, ...ids, tokenizer.eosId];
    // A1111 pads with EOS, then replaces everything after the first EOS with the pad id.
    const firstEos = full.indexOf(tokenizer.eosId);
    for (let i = firstEos + 1; i < full.length; i++) full[i] = tokenizer.padId;
    chunks.push({ ids: full, weights: [1, ...weights, 1] });
    ids = [];
    weights = [];
    lastComma = -1;
  };
  for (const [piece, weight] of parsed) {
    if (piece === "BREAK" && weight === -1) {
      nextChunk();
      continue;
    }
    const tokens = tokenizer.encode(piece);
    for (const token of tokens) {
      if (token === comma) {
        lastComma = ids.length;
      } else if (
        ids.length === CHUNK_TOKENS && lastComma !== -1 &&
        ids.length - lastComma <= COMMA_BACKTRACK
      ) {
        const at = lastComma + 1;
        const movedIds = ids.slice(at);
        const movedWeights = weights.slice(at);
        ids = ids.slice(0, at);
        weights = weights.slice(0, at);
        nextChunk();
        ids = movedIds;
        weights = movedWeights;
      }
      if (ids.length === CHUNK_TOKENS) nextChunk();
      ids.push(token);
      weights.push(weight);
    }
  }
  if (ids.length > 0 || chunks.length === 0) nextChunk();
  return chunks;
}

/**
 * A1111 emphasis over one chunk's hidden states `[tokens, dim]`, in place: "original" multiplies
 * each token by its weight and rescales to the original mean; "no-norm" only multiplies; "none"
 * leaves them.
 */
export function applyEmphasis(
  hidden: Float32Array,
  dim: number,
  weights: readonly number[],
  mode: "original" | "no-norm" | "none",
): void {
  if (mode === "none" || weights.every((w) => w === 1)) return;
  let before = 0;
  for (const v of hidden) before += v;
  for (let t = 0; t < weights.length; t++) {
    const w = weights[t]!;
    if (w === 1) continue;
    for (let d = 0; d < dim; d++) hidden[t * dim + d] = Math.fround(hidden[t * dim + d]! * w);
  }
  if (mode === "no-norm") return;
  let after = 0;
  for (const v of hidden) after += v;
  const ratio = Math.fround(
    Math.fround(before / hidden.length) / Math.fround(after / hidden.length),
  );
  for (let i = 0; i < hidden.length; i++) hidden[i] = Math.fround(hidden[i]! * ratio);
}

/** Encodes texts once each, caching by text. */
class TextEncoderCache {
  readonly #sd: StableDiffusion;
  readonly #tokenizer: ClipTokenizer;
  readonly #options: PromptOptions;
  readonly #cache = new Map<string, Promise<Embedding>>();

  constructor(sd: StableDiffusion, tokenizer: ClipTokenizer, options: PromptOptions) {
    this.#sd = sd;
    this.#tokenizer = tokenizer;
    this.#options = options;
  }

  encode(text: string): Promise<Embedding> {
    let hit = this.#cache.get(text);
    if (hit === undefined) {
      hit = this.#encode(text);
      this.#cache.set(text, hit);
    }
    return hit;
  }

  async #encode(text: string): Promise<Embedding> {
    const chunks = chunkPrompt(this.#tokenizer, text, this.#options.promptSyntax);
    const parts: Float32Array[] = [];
    let dim = 0;
    for (const chunk of chunks) {
      const out = await this.#sd.encodeTokens(chunk.ids, 1);
      dim = out.dim;
      // A1111 clip skip k uses hidden_states[-k] with the final layer norm (Diffusers k - 1).
      const hidden = out.hiddenStates(this.#options.clipSkip - 1).slice();
      applyEmphasis(hidden, dim, chunk.weights, this.#options.emphasis);
      parts.push(hidden);
    }
    const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) {
      data.set(p, offset);
      offset += p.length;
    }
    return { data, tokens: data.length / dim, dim };
  }
}

/** Pads an embedding to `tokens` by appending copies of the empty prompt's chunk. */
function padTo(e: Embedding, tokens: number, empty: Embedding): Embedding {
  if (e.tokens === tokens) return e;
  const data = new Float32Array(tokens * e.dim);
  data.set(e.data);
  for (let t = e.tokens; t < tokens; t += empty.tokens) data.set(empty.data, t * e.dim);
  return { data, tokens, dim: e.dim };
}

/** A prompt's variants by step: texts with the last step each applies to. */
function scheduleOf(
  text: string,
  steps: number,
  syntax: "a1111" | "plain",
): Array<[number, string]> {
  return syntax === "plain" ? [[steps, text]] : promptSchedules(text, steps);
}

function atStep(schedule: Array<[number, string]>, step: number): string {
  for (const [end, text] of schedule) if (step <= end) return text;
  return schedule[schedule.length - 1]![1];
}

/**
 * Builds the per-step conditioning for SD 1.x / 2.x models (one CLIP text encoder). Step `i`
 * indexes the scheduler's timesteps; it maps to sampling step `floor(i * steps / timesteps)`.
 */
export async function encodeConditioning(
  sd: StableDiffusion,
  scheduler: Scheduler,
  options: PromptOptions,
): Promise<(i: number) => StepConditioning> {
  const model = sd.model;
  if (model.textEncoder === undefined || model.tokenizerDir === undefined) {
    throw new InputError(`The model in ${model.dir} has no CLIP text encoder and tokenizer`);
  }
  if (model.family === "sdxl" || model.family === "sdxl-refiner") {
    throw new InputError(`SDXL models are not supported yet: ${model.dir}`, {
      hint: "use an SD 1.x or 2.x model",
    });
  }
  const tokenizer = await ClipTokenizer.fromDirectory(model.tokenizerDir);
  const cache = new TextEncoderCache(sd, tokenizer, options);
  const syntax = options.promptSyntax;
  const positive = syntax === "plain" ? options.prompt : extractNetworks(options.prompt).prompt;
  const negative = syntax === "plain" ? options.negative : extractNetworks(options.negative).prompt;
  const parts = syntax === "plain" ? [{ text: positive, weight: 1 }] : parseComposite(positive);
  const partSchedules = parts.map((p) => scheduleOf(p.text, options.steps, syntax));
  const negativeSchedule = scheduleOf(negative, options.steps, syntax);

  // Encode every text that any step uses, once.
  const texts = new Set<string>([...negativeSchedule.map(([, t]) => t)]);
  for (const s of partSchedules) for (const [, t] of s) texts.add(t);
  const encoded = new Map<string, Embedding>();
  for (const text of texts) encoded.set(text, await cache.encode(text));
  const empty = await cache.encode("");
  const tokens = Math.max(...[...encoded.values()].map((e) => e.tokens));
  const padded = new Map<string, Embedding>();
  for (const [text, e] of encoded) padded.set(text, padTo(e, tokens, empty));

  const total = scheduler.timesteps.length;
  return (i: number): StepConditioning => {
    const step = Math.min(options.steps - 1, Math.floor(i * options.steps / total));
    return {
      uncond: { embedding: padded.get(atStep(negativeSchedule, step))! },
      conds: parts.map((p, k) => ({
        cond: { embedding: padded.get(atStep(partSchedules[k]!, step))! },
        weight: p.weight,
      })),
    };
  };
}

/** The conditioner a Job asks for (see lib/pipeline/generate.ts). */
export function conditionerFor(job: PromptOptions) {
  return (sd: StableDiffusion, scheduler: Scheduler) =>
    encodeConditioning(sd, scheduler, {
      prompt: job.prompt,
      negative: job.negative,
      steps: job.steps,
      clipSkip: job.clipSkip,
      promptSyntax: job.promptSyntax,
      emphasis: job.emphasis,
    });
}
