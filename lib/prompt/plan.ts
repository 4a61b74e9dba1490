/**
 * The conditioning plan: everything between a prompt string and the text encoder. For each
 * sampling step, which prompt variants apply (prompt editing, alternation, AND), and for each
 * distinct variant its 77-token chunks, per-token weights and padding, following A1111:
 * modules/processing.py (extra networks first, then AND, then schedules),
 * modules/sd_hijack_clip.py `tokenize_line` (75-token chunks, BREAK, comma backtracking,
 * textual-inversion embeddings never split across chunks, SD2 padding after the first EOS) and
 * modules/sd_samplers_cfg_denoiser.py (prompt and negative padded to the same chunk count with
 * empty-prompt chunks). AUTOMATIC1111/stable-diffusion-webui; written from reading it, not copied.
 *
 * @module
 */
import type { ClipTokenizer } from "../tokenizer/clip_tokenizer.ts";
import { parsePromptAttention } from "./attention.ts";
import { parseComposite } from "./composite.ts";
import { EMPHASIS_MODES, type EmphasisMode } from "./emphasis.ts";
import { extractNetworks, type ExtraNetwork } from "./networks.ts";
import { promptSchedules } from "./schedule.ts";

/** Prompt syntax: A1111's language, or text passed through untouched. */
export type PromptSyntax = "a1111" | "plain";

/** Tokens per chunk between BOS and EOS. */
export const CHUNK_TOKENS = 75;

/** Options for {@linkcode planConditioning}. */
export interface ConditioningPlanOptions {
  /** "a1111" (default) or "plain": no brackets, weights, scheduling, AND, BREAK or tags. */
  syntax?: PromptSyntax;
  /** How weights act (default "original"); "none" also keeps brackets as literal text. */
  emphasis?: EmphasisMode;
  /**
   * Use the output of the N-th encoder layer from the end, A1111's "Clip skip" numbering (1 =
   * last layer, the default). Diffusers counts skipped layers instead: its `clip_skip=k` is
   * `clipSkip: k + 1`. For SD 1.x/2.x both apply the final layer norm to the chosen layer.
   */
  clipSkip?: number;
  /**
   * A1111 "Prompt word wrap length limit": when a chunk fills up, text after a comma within
   * this many tokens from the end moves to the next chunk. 0 turns it off. Default 20.
   */
  commaPaddingBacktrack?: number;
  /** Steps of a hires-fix pass (see {@linkcode promptSchedules}). */
  hiresSteps?: number;
  /**
   * Names of textual-inversion embeddings already added to the tokenizer(s) with
   * `ClipTokenizer.addTokens`. The tokenizer finds a name only as written (case-sensitive, like
   * Diffusers); names listed here are also found as A1111 finds them: wherever the tokens of the
   * lower-cased name appear in the prompt's tokens ("easynegative" for "EasyNegative").
   */
  embeddings?: readonly string[];
}

/** The prompt and negative prompt of one image, and its sampling steps. */
export interface PlanPrompts {
  /** The prompt. */
  prompt: string;
  /** The negative prompt ("" for none). */
  negative: string;
  /** Sampling steps (a positive integer). */
  steps: number;
}

/** One 77-token chunk of a variant. */
export interface PlannedChunk {
  /** Token ids per tokenizer (same order as given), 77 each: BOS, 75 tokens, EOS, padded. */
  ids: number[][];
  /** One weight per token, 77; BOS, EOS and padding have weight 1. */
  weights: number[];
  /** True for an empty-prompt chunk appended only to match the longest variant. */
  padding: boolean;
}

/** A distinct text to encode once. */
export interface PlannedVariant {
  /** The text after scheduling, as A1111 hands it to the text encoder. */
  text: string;
  /** Its chunks, padded to the plan's chunk count. */
  chunks: PlannedChunk[];
  /** A1111's token count: 75 per full chunk plus the tokens of the last one. */
  tokenCount: number;
}

/** Which variants one sampling step uses: one entry per AND part (one for the negative). */
export interface PlannedStep {
  /** `variant` indexes {@linkcode ConditioningPlan.variants}; `weight` is the AND weight. */
  parts: Array<{ variant: number; weight: number }>;
}

/** What {@linkcode planConditioning} returns. */
export interface ConditioningPlan {
  /** Syntax used. */
  syntax: PromptSyntax;
  /** Emphasis mode the encoder must apply (see {@linkcode applyEmphasis}). */
  emphasis: EmphasisMode;
  /** Layer to take from the end (1 = last). */
  clipSkip: number;
  /** Number of steps the plan covers. */
  steps: number;
  /** Chunks per variant (all variants have this many). */
  chunkCount: number;
  /** Distinct texts, each to be encoded once. */
  variants: PlannedVariant[];
  /** Per 0-based step index: the prompt's variants. */
  positive: PlannedStep[];
  /** Per 0-based step index: the negative prompt's variant. */
  negative: PlannedStep[];
  /** Extra-network tags removed from the prompt. */
  networks: ExtraNetwork[];
  /** Extra-network tags removed from the negative prompt. */
  negativeNetworks: ExtraNetwork[];
  /** Textual-inversion tokens the texts use (names given to `ClipTokenizer.addTokens`). */
  embeddingsUsed: string[];
}

interface RawChunk {
  tokens: number[];
  weights: number[];
}

function checkInteger(value: number, name: string, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(
      `Cannot plan conditioning: ${name} must be an integer >= ${min}, got ${value}`,
    );
  }
}

// sd_hijack_clip.py tokenize_line, on token ids that are already expanded (textual-inversion
// names appear as their N added ids, kept together).
function chunkLine(
  fragments: Array<{ ids: number[]; weight: number; isBreak: boolean }>,
  tokenizer: ClipTokenizer,
  backtrack: number,
): { chunks: RawChunk[]; tokenCount: number } {
  const comma = tokenizer.tokenToId(",</w>");
  const chunks: RawChunk[] = [];
  let chunk: RawChunk = { tokens: [], weights: [] };
  let tokenCount = 0;
  let lastComma = -1;
  const nextChunk = (isLast = false) => {
    tokenCount += isLast ? chunk.tokens.length : CHUNK_TOKENS;
    while (chunk.tokens.length < CHUNK_TOKENS) {
      chunk.tokens.push(tokenizer.eosId);
      chunk.weights.push(1.0);
    }
    chunks.push(chunk);
    chunk = { tokens: [], weights: [] };
    lastComma = -1;
  };
  for (const { ids, weight, isBreak } of fragments) {
    if (isBreak) {
      nextChunk();
      continue;
    }
    let position = 0;
    while (position < ids.length) {
      const token = ids[position] as number;
      if (token === comma) {
        lastComma = chunk.tokens.length;
      } else if (
        backtrack !== 0 && chunk.tokens.length === CHUNK_TOKENS && lastComma !== -1 &&
        chunk.tokens.length - lastComma <= backtrack
      ) {
        const at = lastComma + 1;
        const relocTokens = chunk.tokens.slice(at);
        const relocWeights = chunk.weights.slice(at);
        chunk.tokens = chunk.tokens.slice(0, at);
        chunk.weights = chunk.weights.slice(0, at);
        nextChunk();
        chunk = { tokens: relocTokens, weights: relocWeights };
      }
      if (chunk.tokens.length === CHUNK_TOKENS) nextChunk();
      const vectors = tokenizer.addedTokenLength(token) ?? 1;
      if (vectors > CHUNK_TOKENS) {
        throw new RangeError(
          `Cannot plan conditioning: embedding "${
            tokenizer.addedTokenOf(token)
          }" has ${vectors} vectors, more than fit in one ${CHUNK_TOKENS}-token chunk`,
        );
      }
      if (vectors > 1 && chunk.tokens.length + vectors > CHUNK_TOKENS) nextChunk();
      for (let k = 0; k < vectors; k++) {
        chunk.tokens.push(ids[position + k] as number);
        chunk.weights.push(weight);
      }
      position += vectors;
    }
  }
  if (chunk.tokens.length > 0 || chunks.length === 0) nextChunk(true);
  return { chunks, tokenCount };
}

// BOS + 75 + EOS; for a tokenizer whose pad differs from EOS, everything after the first EOS
// becomes pad (sd_hijack_clip.py process_tokens).
function finishIds(tokens: readonly number[], tokenizer: ClipTokenizer): number[] {
  const ids = [tokenizer.bosId, ...tokens, tokenizer.eosId];
  if (tokenizer.padId !== tokenizer.eosId) {
    const first = ids.indexOf(tokenizer.eosId);
    for (let i = first + 1; i < ids.length; i++) ids[i] = tokenizer.padId;
  }
  return ids;
}

/**
 * Builds the conditioning plan for one prompt/negative pair: extra-network tags removed, AND
 * parts, per-step variants from prompt editing and alternation, and for every distinct variant
 * its 77-token chunks and weights, all variants padded to one chunk count. With several
 * tokenizers (SDXL) each chunk carries the ids of each; they must agree on every token.
 *
 * @example
 * ```ts ignore
 * const plan = planConditioning(
 *   { prompt: "a [cat:dog:0.5], (fur:1.2)", negative: "blurry", steps: 20 },
 *   tokenizer,
 * );
 * plan.positive[0].parts; // [{ variant: 0, weight: 1 }] -> "a cat, (fur:1.2)"
 * ```
 */
export function planConditioning(
  prompts: PlanPrompts,
  tokenizers: ClipTokenizer | readonly ClipTokenizer[],
  options: ConditioningPlanOptions = {},
): ConditioningPlan {
  const syntax = options.syntax ?? "a1111";
  const emphasis = options.emphasis ?? "original";
  const clipSkip = options.clipSkip ?? 1;
  const backtrack = options.commaPaddingBacktrack ?? 20;
  const { steps } = prompts;
  const toks = Array.isArray(tokenizers) ? tokenizers : [tokenizers as ClipTokenizer];
  const main = toks[0];
  if (main === undefined) throw new TypeError("Cannot plan conditioning: no tokenizer given");
  if (syntax !== "a1111" && syntax !== "plain") {
    throw new RangeError(`Unknown prompt syntax "${syntax}"; use "a1111" or "plain"`);
  }
  if (!EMPHASIS_MODES.includes(emphasis)) {
    throw new RangeError(`Unknown emphasis mode "${emphasis}"; use ${EMPHASIS_MODES.join(", ")}`);
  }
  checkInteger(steps, "steps", 1);
  checkInteger(clipSkip, "clipSkip", 1);
  checkInteger(backtrack, "commaPaddingBacktrack", 0);

  // A1111's EmbeddingDatabase: each name's ordinary token ids, longest first per first id.
  const embeddingLookup = new Map<number, Array<{ bpe: number[]; ids: number[] }>>();
  for (const name of options.embeddings ?? []) {
    const ids = main.encode(name);
    const head = ids[0];
    if (head === undefined || ids.length !== main.addedTokenLength(head)) {
      throw new RangeError(
        `Cannot plan conditioning: embedding "${name}" is not in the tokenizer; add it with addTokens() first`,
      );
    }
    const bpe = main.encode(name, { addedTokens: false });
    const first = bpe[0];
    if (first === undefined) continue;
    const list = embeddingLookup.get(first) ?? [];
    list.push({ bpe, ids });
    list.sort((a, b) => b.bpe.length - a.bpe.length);
    embeddingLookup.set(first, list);
  }
  const expandEmbeddings = (ids: number[]): number[] => {
    if (embeddingLookup.size === 0) return ids;
    const out: number[] = [];
    for (let i = 0; i < ids.length;) {
      const match = embeddingLookup.get(ids[i] as number)?.find((e) =>
        e.bpe.every((id, k) => ids[i + k] === id)
      );
      if (match === undefined) {
        out.push(ids[i++] as number);
      } else {
        out.push(...match.ids);
        i += match.bpe.length;
      }
    }
    return out;
  };

  const variants: Array<{ text: string; chunks: RawChunk[]; tokenCount: number }> = [];
  const variantIndex = new Map<string, number>();
  const used = new Set<string>();

  const variantOf = (text: string): number => {
    const known = variantIndex.get(text);
    if (known !== undefined) return known;
    const parsed: Array<[string, number]> = syntax === "plain" || emphasis === "none"
      ? [[text, 1.0]]
      : parsePromptAttention(text);
    const fragments = parsed.map(([fragment, weight]) => {
      const ids = expandEmbeddings(main.encode(fragment));
      for (const t of toks.slice(1)) {
        const other = expandEmbeddings(t.encode(fragment));
        if (other.join() !== ids.join()) {
          throw new RangeError(
            `Cannot plan conditioning: the tokenizers split "${fragment}" differently; they must share one vocabulary`,
          );
        }
      }
      for (const id of ids) {
        // Only the first id of an embedding carries its name (the rest are name_1, ...).
        const name = main.addedTokenOf(id);
        if (name !== undefined && main.addedTokenLength(id) !== undefined) used.add(name);
      }
      // A1111 treats only an unmerged, unweighted ["BREAK", -1] as a chunk break.
      const isBreak = syntax === "a1111" && fragment === "BREAK" && weight === -1;
      return { ids, weight, isBreak };
    });
    const { chunks, tokenCount } = chunkLine(fragments, main, backtrack);
    const index = variants.length;
    variants.push({ text, chunks, tokenCount });
    variantIndex.set(text, index);
    return index;
  };

  // Per-step lookup over A1111 schedules: step index i uses the first entry with i <= end.
  const stepsFor = (text: string): number[] => {
    const schedule: Array<[number, string]> = syntax === "plain"
      ? [[steps, text]]
      : promptSchedules(
        text,
        steps,
        options.hiresSteps === undefined ? {} : {
          hiresSteps: options.hiresSteps,
        },
      );
    const total = syntax === "plain" || options.hiresSteps === undefined
      ? steps
      : options.hiresSteps;
    const ids = schedule.map(([, t]) => variantOf(t));
    return Array.from({ length: total }, (_, i) => {
      const k = schedule.findIndex(([end]) => i <= end);
      return ids[k < 0 ? 0 : k] as number;
    });
  };

  const positiveText = syntax === "plain" ? prompts.prompt : extractNetworks(prompts.prompt);
  const negativeText = syntax === "plain" ? prompts.negative : extractNetworks(prompts.negative);
  const promptBody = typeof positiveText === "string" ? positiveText : positiveText.prompt;
  const negativeBody = typeof negativeText === "string" ? negativeText : negativeText.prompt;

  const composite = syntax === "plain"
    ? [{ text: promptBody, weight: 1.0 }]
    : parseComposite(promptBody);
  const partSteps = composite.map((part) => ({ weight: part.weight, steps: stepsFor(part.text) }));
  const negativeSteps = stepsFor(negativeBody);
  const total = negativeSteps.length;

  const chunkCount = Math.max(...variants.map((v) => v.chunks.length));
  const emptyChunk = (): PlannedChunk => ({
    ids: toks.map((t) => finishIds(new Array(CHUNK_TOKENS).fill(t.eosId), t)),
    weights: new Array(CHUNK_TOKENS + 2).fill(1.0),
    padding: true,
  });
  const planned: PlannedVariant[] = variants.map((v) => {
    const chunks: PlannedChunk[] = v.chunks.map((c) => ({
      ids: toks.map((t) => finishIds(c.tokens, t)),
      weights: [1.0, ...c.weights, 1.0],
      padding: false,
    }));
    while (chunks.length < chunkCount) chunks.push(emptyChunk());
    return { text: v.text, chunks, tokenCount: v.tokenCount };
  });

  return {
    syntax,
    emphasis,
    clipSkip,
    steps: total,
    chunkCount,
    variants: planned,
    positive: Array.from({ length: total }, (_, i) => ({
      parts: partSteps.map((p) => ({ variant: p.steps[i] as number, weight: p.weight })),
    })),
    negative: negativeSteps.map((variant) => ({ parts: [{ variant, weight: 1.0 }] })),
    networks: typeof positiveText === "string" ? [] : positiveText.networks,
    negativeNetworks: typeof negativeText === "string" ? [] : negativeText.networks,
    embeddingsUsed: [...used],
  };
}
