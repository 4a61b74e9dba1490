/**
 * From prompt text to the UNet's `encoder_hidden_states` for every step, the way A1111 does it:
 * lib/prompt's conditioning plan (tags removed, AND parts, schedules, weights, 77-token chunks,
 * prompt and negative padded to one chunk count), then each distinct variant encoded once,
 * emphasis applied and chunks concatenated.
 *
 * For a short unweighted prompt this equals Diffusers' `encode_prompt` exactly.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import { applyEmphasis, type EmphasisMode } from "../prompt/emphasis.ts";
import { type ConditioningPlan, planConditioning, type PromptSyntax } from "../prompt/plan.ts";
import { ClipTokenizer } from "../tokenizer/mod.ts";
import type { Scheduler } from "../schedulers/mod.ts";
import type { Embedding, StepConditioning } from "./denoise.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/** A size in pixels. */
export interface Size {
  width: number;
  height: number;
}

/** Prompt options of a Job. */
export interface PromptOptions {
  prompt: string;
  /** The negative prompt; absent is not the same as empty (see `force_zeros_for_empty_prompt`). */
  negative?: string | undefined;
  steps: number;
  clipSkip: number;
  promptSyntax: PromptSyntax;
  emphasis: EmphasisMode;
  /** SDXL micro-conditioning (Diffusers `original_size`, default the image size). */
  originalSize?: Size | undefined;
  /** SDXL `crops_coords_top_left` (default 0, 0). */
  cropsCoordsTopLeft?: { top: number; left: number } | undefined;
  /** SDXL `target_size` (default the image size). */
  targetSize?: Size | undefined;
  /**
   * Textual-inversion tokens to add to the tokenizer(s), in order, with the ids their rows got
   * in the text encoders' token tables (lib/adapters `placeEmbeddings`).
   */
  embeddings?: ReadonlyArray<{ name: string; ids: readonly number[] }> | undefined;
}

/**
 * Encodes every variant of a plan once with the (single) text encoder: chunk by chunk, the
 * hidden state of the clip-skip layer, emphasis applied, chunks concatenated along the tokens.
 */
async function encodeVariants(
  sd: StableDiffusion,
  plan: ConditioningPlan,
): Promise<Embedding[]> {
  const out: Embedding[] = [];
  for (const variant of plan.variants) {
    const chunks = variant.chunks;
    const ids = chunks.flatMap((c) => c.ids[0]!);
    // All chunks in one batch: [chunks, 77] -> [chunks, 77, dim].
    const encoded = await sd.encodeTokens(ids, chunks.length);
    // A1111 clip skip k uses hidden_states[-k] with the final layer norm (Diffusers k - 1).
    const hidden = encoded.hiddenStates(plan.clipSkip - 1);
    const weights = Float32Array.from(chunks.flatMap((c) => c.weights));
    const data = applyEmphasis(
      hidden,
      [chunks.length, encoded.tokens, encoded.dim],
      weights,
      plan.emphasis,
    );
    out.push({ data, tokens: chunks.length * encoded.tokens, dim: encoded.dim });
  }
  return out;
}

/**
 * Encodes every variant with SDXL's two text encoders, as Diffusers' StableDiffusionXLPipeline
 * and A1111's SDXL conditioner do: per chunk, the raw hidden state `clipSkip` layers before the
 * end of each encoder (the penultimate layer by default, no final layer norm), emphasis applied
 * per encoder, the two concatenated along the channels; the pooled `text_embeds` of the second
 * encoder for the first chunk.
 */
async function encodeVariantsXl(
  sd: StableDiffusion,
  plan: ConditioningPlan,
  encoders: Array<"text_encoder" | "text_encoder_2">,
): Promise<Array<{ embedding: Embedding; pooled: Float32Array }>> {
  const out: Array<{ embedding: Embedding; pooled: Float32Array }> = [];
  for (const variant of plan.variants) {
    const chunks = variant.chunks;
    const weights = Float32Array.from(chunks.flatMap((c) => c.weights));
    const parts: Array<{ data: Float32Array; dim: number }> = [];
    let pooled = new Float32Array();
    let tokens = 0;
    for (let e = 0; e < encoders.length; e++) {
      const which = encoders[e]!;
      const layers = (which === "text_encoder" ? sd.model.textEncoder : sd.model.textEncoder2)!
        .config.numHiddenLayers;
      const encoded = await sd.encodeTokens(chunks.flatMap((c) => c.ids[e]!), chunks.length, which);
      tokens = encoded.tokens;
      // Diffusers: hidden_states[-(clip_skip + 2)]; A1111 clip skip k = Diffusers k - 1.
      const hidden = encoded.rawHiddenStates(layers - plan.clipSkip);
      parts.push({
        data: applyEmphasis(hidden, [chunks.length, tokens, encoded.dim], weights, plan.emphasis),
        dim: encoded.dim,
      });
      if (which === "text_encoder_2") {
        pooled = encoded.pooled.slice(0, encoded.pooled.length / chunks.length);
      }
    }
    const dim = parts.reduce((n, p) => n + p.dim, 0);
    const rows = chunks.length * tokens;
    const data = new Float32Array(rows * dim);
    for (let r = 0; r < rows; r++) {
      let offset = r * dim;
      for (const p of parts) {
        data.set(p.data.subarray(r * p.dim, (r + 1) * p.dim), offset);
        offset += p.dim;
      }
    }
    out.push({ embedding: { data, tokens: rows, dim }, pooled });
  }
  return out;
}

/** SDXL `add_time_ids`: original size (h, w), crop (top, left), then target size or aesthetic score. */
export function timeIds(
  original: Size,
  crop: { top: number; left: number },
  target: Size | { aestheticScore: number },
): Float32Array {
  const tail = "aestheticScore" in target ? [target.aestheticScore] : [target.height, target.width];
  return Float32Array.from([original.height, original.width, crop.top, crop.left, ...tail]);
}

/**
 * Builds the per-step conditioning. Step `i` indexes the scheduler's timesteps; it maps to
 * sampling step `floor(i * steps / timesteps)`. SD 1.x / 2.x use one CLIP text encoder; SDXL
 * uses both and adds pooled text embeddings and size/crop time ids; the SDXL refiner uses the
 * second encoder and aesthetic scores (6 for the prompt, 2.5 for the negative, as Diffusers).
 */
export async function encodeConditioning(
  sd: StableDiffusion,
  scheduler: Scheduler,
  options: PromptOptions,
  size: Size,
): Promise<(i: number) => StepConditioning> {
  const model = sd.model;
  const xl = model.family === "sdxl" || model.family === "sdxl-refiner";
  const tokenizerDirs = [model.tokenizerDir, model.tokenizer2Dir].filter((d) => d !== undefined);
  if (tokenizerDirs.length === 0 || (!xl && model.textEncoder === undefined)) {
    throw new InputError(`The model in ${model.dir} has no CLIP text encoder and tokenizer`);
  }
  const tokenizers = await Promise.all(tokenizerDirs.map((d) => ClipTokenizer.fromDirectory(d)));
  for (const e of options.embeddings ?? []) {
    for (const tokenizer of tokenizers) {
      const ids = tokenizer.addTokens(e.name, e.ids.length);
      if (ids.some((id, k) => id !== e.ids[k])) {
        throw new InputError(
          `Cannot use embedding "${e.name}": the tokenizer gave it ids ${ids.join(", ")}, ` +
            `its rows are at ${e.ids.join(", ")}`,
          { hint: "the model's tokenizers have different vocabulary sizes" },
        );
      }
    }
  }
  const plan = planConditioning(
    {
      prompt: options.prompt,
      // An LCM with a guidance embedding has no unconditional pass; Diffusers passes no negative
      // prompt, so it must not pad the prompt's chunks either.
      negative: model.unet.config.timeCondProjDim !== null ? "" : options.negative ?? "",
      steps: options.steps,
    },
    tokenizers,
    {
      syntax: options.promptSyntax,
      emphasis: options.emphasis,
      clipSkip: options.clipSkip,
      embeddings: (options.embeddings ?? []).map((e) => e.name),
    },
  );
  const total = scheduler.timesteps.length;
  const stepOf = (i: number) => Math.min(options.steps - 1, Math.floor(i * options.steps / total));
  if (!xl) {
    const embeddings = await encodeVariants(sd, plan);
    return (i: number): StepConditioning => {
      const step = stepOf(i);
      const negative = plan.negative[step]!.parts[0]!;
      return {
        uncond: { embedding: embeddings[negative.variant]! },
        conds: plan.positive[step]!.parts.map((part) => ({
          cond: { embedding: embeddings[part.variant]! },
          weight: part.weight,
        })),
      };
    };
  }
  const encoders: Array<"text_encoder" | "text_encoder_2"> = [];
  if (model.textEncoder !== undefined) encoders.push("text_encoder");
  if (model.textEncoder2 !== undefined) encoders.push("text_encoder_2");
  const encoded = await encodeVariantsXl(sd, plan, encoders);
  const original = options.originalSize ?? size;
  const crop = options.cropsCoordsTopLeft ?? { top: 0, left: 0 };
  const refiner = model.requiresAestheticsScore;
  const positiveIds = timeIds(
    original,
    crop,
    refiner ? { aestheticScore: 6 } : options.targetSize ?? size,
  );
  const negativeIds = timeIds(
    original,
    crop,
    refiner ? { aestheticScore: 2.5 } : options.targetSize ?? size,
  );
  // Diffusers zeroes the negative conditioning when no negative prompt is given
  // (`negative_prompt is None`, not an empty one) and the model asks for it
  // (force_zeros_for_empty_prompt).
  const zeroNegative = options.negative === undefined && model.forceZerosForEmptyPrompt;
  const zeros = (e: { embedding: Embedding; pooled: Float32Array }) => ({
    embedding: { ...e.embedding, data: new Float32Array(e.embedding.data.length) },
    pooled: new Float32Array(e.pooled.length),
  });
  return (i: number): StepConditioning => {
    const step = stepOf(i);
    const neg = encoded[plan.negative[step]!.parts[0]!.variant]!;
    const uncond = zeroNegative ? zeros(neg) : neg;
    return {
      uncond: {
        embedding: uncond.embedding,
        added: { text_embeds: uncond.pooled, time_ids: negativeIds },
      },
      conds: plan.positive[step]!.parts.map((part) => {
        const e = encoded[part.variant]!;
        return {
          cond: { embedding: e.embedding, added: { text_embeds: e.pooled, time_ids: positiveIds } },
          weight: part.weight,
        };
      }),
    };
  };
}

/** The conditioner a Job asks for (see lib/pipeline/generate.ts). */
export function conditionerFor(job: PromptOptions) {
  return (sd: StableDiffusion, scheduler: Scheduler, size: Size) =>
    encodeConditioning(sd, scheduler, {
      prompt: job.prompt,
      negative: job.negative,
      steps: job.steps,
      clipSkip: job.clipSkip,
      promptSyntax: job.promptSyntax,
      emphasis: job.emphasis,
      originalSize: job.originalSize,
      cropsCoordsTopLeft: job.cropsCoordsTopLeft,
      targetSize: job.targetSize,
      embeddings: job.embeddings,
    }, size);
}
