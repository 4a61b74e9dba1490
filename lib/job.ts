/**
 * Jobs: the plain JSON objects that command-line flags become, that PNG metadata stores and that
 * `--job FILE|-` reads back. Each subcommand has one zod schema; a Job always names its
 * `command` and the schema `version`, so a stored Job can be replayed exactly.
 *
 * Resolution order: schema defaults, then the `--job` document, then flags given on the command
 * line (flags win).
 *
 * @module
 */
import { z } from "zod";
import { InputError, UsageError } from "./errors.ts";
import { readInput, type ReadInputOptions } from "./io/input.ts";
import { sniffFormat } from "./io/sniff.ts";

/** The Job schema version written into every Job. */
export const JOB_VERSION = 1;

/** The fields every Job has. */
export const jobBase = {
  command: z.string(),
  version: z.literal(JOB_VERSION).default(JOB_VERSION),
};

/**
 * Makes a Job schema for a subcommand: `command` fixed to its name, `version`, and the given
 * fields. Unknown fields are rejected so a typo in a job file is an error, not a silent default.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { defineJob } from "./job.ts";
 * const EchoJob = defineJob("echo", { text: z.string().default("hi") });
 * const job = EchoJob.parse({ command: "echo" });
 * console.assert(job.text === "hi" && job.version === 1);
 * ```
 */
export function defineJob<const C extends string, S extends z.ZodRawShape>(
  command: C,
  shape: S,
) {
  return z.object({ command: z.literal(command), version: jobBase.version, ...shape }).strict();
}

/** Options for {@linkcode resolveJob}. */
export interface ResolveJobOptions {
  /** A Job document already loaded (from `--job`), or undefined. */
  document?: Record<string, unknown> | undefined;
  /** Flags given explicitly on the command line, as Job fields. */
  flags?: Record<string, unknown>;
  /** Where the document came from, for messages. */
  documentLabel?: string;
}

/**
 * Validates defaults + job document + flags against a Job schema and returns the typed Job.
 * Schema errors become a one-line {@linkcode UsageError} (flags) or {@linkcode InputError}
 * (job document) naming each bad field.
 */
export function resolveJob<S extends z.ZodType>(
  schema: S,
  command: string,
  options: ResolveJobOptions = {},
): z.infer<S> {
  const document = options.document ?? {};
  if (document.command !== undefined && document.command !== command) {
    throw new UsageError(
      `The job in ${options.documentLabel ?? "--job"} is for "denoise ${
        String(document.command)
      }", not "denoise ${command}"`,
      { hint: `run it with "denoise ${String(document.command)} --job ..."` },
    );
  }
  const merged: Record<string, unknown> = { ...document, command };
  for (const [key, value] of Object.entries(options.flags ?? {})) {
    if (value !== undefined) merged[key] = value;
  }
  const result = schema.safeParse(merged);
  if (result.success) return result.data;
  const message = describeIssues(result.error.issues);
  const fromFlags = result.error.issues.every((issue) =>
    issue.path.length > 0 && options.flags !== undefined && String(issue.path[0]) in options.flags
  );
  if (fromFlags || options.document === undefined) {
    throw new UsageError(`Invalid options: ${message}`, {
      hint: `see "denoise ${command} --help"`,
    });
  }
  throw new InputError(`Invalid job in ${options.documentLabel ?? "--job"}: ${message}`, {
    hint: `fix the job JSON, or print a valid one with "denoise ${command} --dry-run"`,
  });
}

/** Formats zod issues as `field: problem; field: problem`. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const path = issue.path.map(String).join(".");
      const text = issue.code === "unrecognized_keys"
        ? `unknown field${issue.keys.length > 1 ? "s" : ""} ${
          issue.keys.map((k) => `"${k}"`).join(", ")
        }`
        : issue.message;
      return path ? `"${path}": ${text}` : text;
    })
    .join("; ") + (issues.length > 5 ? `; and ${issues.length - 5} more` : "");
}

/** An extractor that finds a stored Job inside image bytes (provided by lib/meta). */
export type ImageJobExtractor = (bytes: Uint8Array) => Record<string, unknown> | undefined;

/** Options for {@linkcode loadJobDocument}. */
export interface LoadJobOptions extends ReadInputOptions {
  /** Finds a stored Job in an image, so `--job image.png` replays it. */
  fromImage?: ImageJobExtractor;
  /**
   * Builds a Job from the `a1111` part of a `denoise meta read` document that holds no denoise
   * Job (images made by A1111 and its forks).
   */
  fromA1111?: (a1111: Record<string, unknown>) => Record<string, unknown> | undefined;
}

/**
 * Loads a `--job` document from a file or stdin ("-"). Accepts a Job object, the output of
 * `denoise meta read` (its `job` field), or an image whose metadata holds a Job.
 */
export async function loadJobDocument(
  path: string,
  options: LoadJobOptions = {},
): Promise<{ document: Record<string, unknown>; label: string }> {
  const input = await readInput(path, { ...options, what: "job" });
  const format = sniffFormat(input.bytes);
  if (format === "png" || format === "jpeg" || format === "webp") {
    const job = options.fromImage?.(input.bytes);
    if (job === undefined) {
      throw new InputError(`The image in ${input.label} holds no denoise job`, {
        hint: "only images written by denoise carry a job; pass a job JSON file instead",
      });
    }
    return { document: job, label: input.label };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(input.bytes));
  } catch (error) {
    throw new InputError(
      `The job in ${input.label} is not valid JSON: ${(error as Error).message}`,
      { hint: "pass a JSON object, e.g. from --dry-run", cause: error },
    );
  }
  const document = isRecord(parsed) && parsed.command === undefined && parsed.job === undefined &&
      isRecord(parsed.a1111) && options.fromA1111 !== undefined
    ? options.fromA1111(parsed.a1111)
    : unwrapJob(parsed);
  if (document === undefined) {
    throw new InputError(`The job in ${input.label} is not a JSON object`, {
      hint: "pass a JSON object, e.g. the output of --dry-run or of denoise meta read",
    });
  }
  return { document, label: input.label };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Returns the Job inside a Job document or a `meta read` document. */
export function unwrapJob(value: unknown): Record<string, unknown> | undefined {
  if (!isRecord(value)) return undefined;
  if (typeof value.command === "string") return value;
  if (isRecord(value.job)) return value.job;
  return value;
}

/** A seed: a non-negative integer below 2^64, as a JSON number or a decimal string. */
export const Seed = z.union([
  z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  z.string().regex(/^\d{1,20}$/, "expected a decimal integer").refine(
    (s) => BigInt(s) < 2n ** 64n,
    "must be below 2^64",
  ),
]);

/** The fields generate and img2img share. */
const diffusionFields = {
  /** The prompt, in A1111 syntax unless `promptSyntax` is "plain". */
  prompt: z.string().default(""),
  /** The negative prompt. */
  negative: z.string().default(""),
  /** A model folder, single file or alias; required to run. */
  model: z.string().optional(),
  /** Sampling steps. */
  steps: z.number().int().min(1).max(1000).default(20),
  /** Classifier-free guidance scale; default per model family. */
  cfg: z.number().min(0).max(100).optional(),
  /** A denoise sampler name, A1111 label or Diffusers class; default the model's scheduler. */
  sampler: z.string().optional(),
  /** Sigma schedule (default the sampler's own). */
  schedule: z.enum(["default", "karras", "exponential", "beta", "sgm-uniform", "simple"])
    .optional(),
  /** Seed of the first image; image k of a run uses seed + k. */
  seed: Seed.optional(),
  /** Noise source: torch CPU generator, or A1111's NV (philox) source. */
  rng: z.enum(["cpu", "nv"]).default("cpu"),
  /** Image size in pixels (default from the model). */
  width: z.number().int().min(8).max(16384).optional(),
  height: z.number().int().min(8).max(16384).optional(),
  /** Images per denoising batch (one noise tensor, as Diffusers' num_images_per_prompt). */
  batchSize: z.number().int().min(1).max(64).default(1),
  /** Batches run one after another; batch k starts at seed + k * batchSize. */
  batchCount: z.number().int().min(1).max(10000).default(1),
  /** A1111 clip skip: 1 uses the last CLIP layer, 2 the penultimate. */
  clipSkip: z.number().int().min(1).max(12).default(1),
  /** Another VAE (folder) to decode with. */
  vae: z.string().optional(),
  /** Decode (and encode) in overlapping tiles to bound memory. */
  vaeTiling: z.boolean().default(false),
  /**
   * Float precision of the graphs: fp16 halves memory on CUDA (the VAE stays fp32 when its config
   * has force_upcast). Absent: fp32 on cpu, fp16 on cuda.
   */
  precision: z.enum(["fp32", "fp16"]).optional(),
  /** Prompt language: A1111 syntax or plain text. */
  promptSyntax: z.enum(["a1111", "plain"]).default("a1111"),
  /** How token weights apply (A1111 "Emphasis mode"; "none" keeps brackets as text). */
  emphasis: z.enum(["original", "no-norm", "ignore", "none"]).default("original"),
  /** Diffusers guidance_rescale (0 = off). */
  guidanceRescale: z.number().min(0).max(1).default(0),
  /** LoRA files merged before the run: a scale, or separate text-encoder / UNet scales. */
  lora: z.array(
    z.object({
      path: z.string().min(1),
      scale: z.number().default(1),
      te: z.number().optional(),
      unet: z.number().optional(),
    }).strict(),
  ).optional(),
  /** Folder searched for the LoRAs of `<lora:name:te:unet>` prompt tags. */
  loraDir: z.string().optional(),
  /** Textual-inversion files; the token is the file stem unless given. */
  embedding: z.array(z.object({ path: z.string().min(1), token: z.string().optional() }).strict())
    .optional(),
  /** Folder of embeddings usable by name in the prompts. */
  embeddingsDir: z.string().optional(),
  /** SDXL micro-conditioning: the original size (default the image size). */
  originalSize: z.object({
    width: z.number().int().positive(),
    height: z.number().int().positive(),
  })
    .strict().optional(),
  /** SDXL micro-conditioning: crop coordinates of the top-left corner (default 0, 0). */
  cropsCoordsTopLeft: z.object({
    top: z.number().int().nonnegative(),
    left: z.number().int().nonnegative(),
  })
    .strict().optional(),
  /** SDXL micro-conditioning: the target size (default the image size). */
  targetSize: z.object({ width: z.number().int().positive(), height: z.number().int().positive() })
    .strict().optional(),
};

/** The Job of `denoise generate`. */
export const GenerateJob = defineJob("generate", {
  ...diffusionFields,
  /** A1111 hires fix: upscale factor (unset = off). */
  hiresScale: z.number().min(1).max(8).optional(),
  /** Hires fix steps (default: the same as steps). */
  hiresSteps: z.number().int().min(1).max(1000).optional(),
  /** Hires fix denoising strength. */
  hiresStrength: z.number().min(0).max(1).default(0.7),
  /** Hires fix upscaler: in latent space or on decoded pixels. */
  hiresUpscaler: z.enum(["latent", "lanczos"]).default("latent"),
  /** An SDXL refiner model that finishes the denoising (folder or alias). */
  refiner: z.string().optional(),
  /** Fraction of the schedule the base model denoises before the refiner takes over. */
  refinerSwitch: z.number().gt(0).lt(1).default(0.8),
});

/** A `denoise generate` Job. */
export type GenerateJob = z.infer<typeof GenerateJob>;

/** The Job of `denoise img2img`. */
export const Img2ImgJob = defineJob("img2img", {
  ...diffusionFields,
  /** How much of the input to repaint (A1111 "Denoising strength"). */
  strength: z.number().min(0).max(1).default(0.75),
  /** The input image's name, for the record (the pixels come from --image). */
  image: z.string().optional(),
  /** Inpainting mask image (white repaints, black keeps); read again when the Job is replayed. */
  mask: z.string().optional(),
  /** A1111 mask blur in pixels; also pastes the original back through the blurred mask. */
  maskBlur: z.number().min(0).max(256).optional(),
  /** A1111 "Inpaint area: Only masked": inpaint a crop around the mask at the processing size. */
  inpaintFullRes: z.boolean().default(false),
  /** A1111 "Masked area padding": pixels around the mask's bounding box. */
  inpaintFullResPadding: z.number().int().min(0).max(16384).default(32),
});

/** A `denoise img2img` Job. */
export type Img2ImgJob = z.infer<typeof Img2ImgJob>;

/** The Job of `denoise models list`. */
export const ModelsListJob = defineJob("models list", {
  lock: z.string().optional(),
  json: z.boolean().default(false),
});

/** The Job of `denoise models pull`. */
export const ModelsPullJob = defineJob("models pull", {
  alias: z.string().min(1),
  lock: z.string().optional(),
});

/** The Job of `denoise models verify` (every model when no alias is given). */
export const ModelsVerifyJob = defineJob("models verify", {
  alias: z.string().min(1).optional(),
  lock: z.string().optional(),
  json: z.boolean().default(false),
});

/** The Job of `denoise models where`. */
export const ModelsWhereJob = defineJob("models where", {
  alias: z.string().min(1),
  lock: z.string().optional(),
});

/** The Job of `denoise models create-random`. */
export const ModelsCreateRandomJob = defineJob("models create-random", {
  config: z.string().min(1),
  output: z.string().min(1),
  seed: z.number().int().nonnegative().default(0),
  tokenizer: z.string().optional(),
});

/** The Job of `denoise samplers`. */
export const SamplersJob = defineJob("samplers", {
  label: z.string().optional(),
  scheduleType: z.string().optional(),
  json: z.boolean().default(false),
});
