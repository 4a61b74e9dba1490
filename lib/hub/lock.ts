/**
 * models.lock.json: named models pinned to a revision, with every file's size and SHA-256.
 * The schema is documented in docs/models-lock.md.
 *
 * @module
 */
import { z } from "zod";
import { InputError, ModelNotFoundError } from "../errors.ts";

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex digits");

/** One file of a locked model. */
export const LockedFile = z.object({
  path: z.string().min(1).refine(
    (p) => !p.startsWith("/") && !p.split("/").includes(".."),
    "must be a relative path inside the repository",
  ),
  /** Bytes; null when no source gave it (the download is then not size-checked). */
  size: z.number().int().nonnegative().nullable(),
  sha256: sha256.nullable(),
}).strict();

/** One locked model. */
export const LockedModel = z.object({
  description: z.string(),
  /**
   * What the entry holds: a pipeline for `--model` (the default), or an AnimateDiff motion module
   * for `animate --motion-module` (its family is the base model it is made for).
   */
  kind: z.enum(["pipeline", "motion-module"]).optional(),
  /**
   * The model family; "esrgan" is an ESRGAN-family upscaler (RRDBNet, SRVGGNetCompact),
   * "controlnet" a ControlNet (a Diffusers folder, or a single original-layout file).
   */
  family: z.enum([
    "sd1",
    "sd2",
    "sd2-v",
    "sdxl",
    "sdxl-refiner",
    "sd1-inpaint",
    "lcm",
    "turbo",
    "esrgan",
    "controlnet",
    "preprocessor",
    "blip",
    "florence2",
    "llava",
  ]),
  source: z.discriminatedUnion("hub", [
    z.object({
      hub: z.literal("huggingface"),
      repo: z.string().regex(/^[\w.-]+\/[\w.-]+$/, "expected owner/name"),
      revision: z.string().regex(/^[0-9a-f]{40}$/, "expected a full 40-hex commit hash"),
    }).strict(),
    /**
     * Assets of a GitHub release (`https://github.com/<repo>/releases/download/<tag>/<path>`).
     * A release asset is not part of a commit, so a tag pins it only as far as the uploader
     * never replaces it: the files' sha256 are what pin the content.
     */
    z.object({
      hub: z.literal("github"),
      repo: z.string().regex(/^[\w.-]+\/[\w.-]+$/, "expected owner/name"),
      tag: z.string().regex(/^[\w.+-]+$/, "expected a release tag"),
    }).strict(),
  ]),
  layout: z.enum(["diffusers", "single-file", "onnx", "transformers"]),
  files: z.array(LockedFile).min(1),
  verified: z.boolean(),
}).strict();

/** The whole lock file. */
export const ModelsLock = z.object({
  version: z.literal(1),
  models: z.record(z.string().regex(/^[a-z0-9._-]+$/), LockedModel),
}).strict();

/** A parsed models.lock.json. */
export type ModelsLock = z.infer<typeof ModelsLock>;
/** A parsed model entry. */
export type LockedModel = z.infer<typeof LockedModel>;
/** A parsed file entry. */
export type LockedFile = z.infer<typeof LockedFile>;

/**
 * What pins a model's source: the commit of a Hugging Face repository, or the tag of a GitHub
 * release (its cache folder name).
 *
 * @example
 * ```ts
 * import { sourceRevision } from "./lock.ts";
 * console.assert(sourceRevision({ source: { hub: "github", repo: "a/b", tag: "v0.1.0" } }) === "v0.1.0");
 * ```
 */
export function sourceRevision(model: Pick<LockedModel, "source">): string {
  return model.source.hub === "github" ? model.source.tag : model.source.revision;
}

/** Parses and validates lock-file JSON text. */
export function parseLock(text: string, label = "models.lock.json"): ModelsLock {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new InputError(`${label} is not valid JSON: ${(error as Error).message}`);
  }
  const result = ModelsLock.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new InputError(
      `${label} is invalid at "${issue.path.map(String).join(".")}": ${issue.message}`,
      { hint: "see docs/models-lock.md for the schema" },
    );
  }
  return result.data;
}

/** Looks up an alias, with a one-line error listing the known aliases. */
export function lockedModel(lock: ModelsLock, alias: string): LockedModel {
  const model = lock.models[alias];
  if (model === undefined) {
    const known = Object.keys(lock.models).sort();
    throw new ModelNotFoundError(`Unknown model alias "${alias}"`, {
      hint: known.length > 0
        ? `known aliases: ${known.join(", ")} (denoise models list), or pass a model folder or file`
        : "pass a model folder or file path",
    });
  }
  return model;
}
