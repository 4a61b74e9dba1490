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

/** Prompt options of a Job. */
export interface PromptOptions {
  prompt: string;
  negative: string;
  steps: number;
  clipSkip: number;
  promptSyntax: PromptSyntax;
  emphasis: EmphasisMode;
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
 * Builds the per-step conditioning for SD 1.x / 2.x models (one CLIP text encoder). Step `i`
 * indexes the scheduler's timesteps; it maps to sampling step `floor(i * steps / timesteps)`.
 */
export async function encodeConditioning(
  sd: StableDiffusion,
  scheduler: Scheduler,
  options: PromptOptions,
): Promise<(i: number) => StepConditioning> {
  const model = sd.model;
  if (model.family === "sdxl" || model.family === "sdxl-refiner") {
    throw new InputError(`SDXL models are not supported yet: ${model.dir}`, {
      hint: "use an SD 1.x or 2.x model",
    });
  }
  if (model.textEncoder === undefined || model.tokenizerDir === undefined) {
    throw new InputError(`The model in ${model.dir} has no CLIP text encoder and tokenizer`);
  }
  const tokenizer = await ClipTokenizer.fromDirectory(model.tokenizerDir);
  const plan = planConditioning(
    { prompt: options.prompt, negative: options.negative, steps: options.steps },
    tokenizer,
    { syntax: options.promptSyntax, emphasis: options.emphasis, clipSkip: options.clipSkip },
  );
  const embeddings = await encodeVariants(sd, plan);
  const total = scheduler.timesteps.length;
  return (i: number): StepConditioning => {
    const step = Math.min(options.steps - 1, Math.floor(i * options.steps / total));
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
