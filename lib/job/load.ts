/**
 * Reading Jobs back: `--job FILE|-|image` for every command, and JSON-lines job files
 * (`generate --jobs`). A document is a Job, the output of `denoise meta read` (its `job`, or,
 * for images made by A1111 and its forks, a Job rebuilt from its `a1111` parameters), or an
 * image whose metadata holds either.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import { readFileChecked, readInput, type ReadInputOptions } from "../io/input.ts";
import { sniffFormat } from "../io/sniff.ts";
import { summarizeInfotext } from "../meta/a1111.ts";
import { readMetadata } from "../meta/read.ts";
import { describeIssues, type JobSchema } from "./define.ts";
import { jobFromInfotext } from "./infotext.ts";

/** A loaded `--job` document and where it came from. */
export interface LoadedJob {
  document: Record<string, unknown>;
  /** The file name, or "stdin", for messages. */
  label: string;
}

/**
 * The Job stored in an image: denoise's own (PNG "denoise" chunk, WebP EXIF or GIF comment
 * `denoise:{...}`), else one rebuilt from A1111 parameters (PNG text or JPEG/WebP EXIF);
 * undefined when there is neither or the bytes are not a readable image.
 *
 * @example
 * ```ts
 * import { jobFromImage } from "./load.ts";
 * console.assert(jobFromImage(new Uint8Array([1, 2, 3])) === undefined);
 * ```
 */
export function jobFromImage(bytes: Uint8Array): Record<string, unknown> | undefined {
  let meta;
  try {
    meta = readMetadata(bytes, { lenient: true });
  } catch {
    return undefined;
  }
  if (isRecord(meta.job)) return meta.job;
  return meta.a1111 === undefined ? undefined : jobFromInfotext(meta.a1111);
}

/**
 * The Job inside a parsed JSON document: a Job itself, the `job` of a `meta read` document, a
 * Job rebuilt from the `a1111` part of a `meta read` document that holds no Job, or the object
 * as it is (the schema then names what is wrong with it). Undefined for a non-object.
 *
 * @example
 * ```ts
 * import { unwrapJob } from "./load.ts";
 * console.assert(unwrapJob({ job: { command: "generate" } })?.command === "generate");
 * console.assert(unwrapJob([1]) === undefined);
 * ```
 */
export function unwrapJob(value: unknown): Record<string, unknown> | undefined {
  if (!isRecord(value)) return undefined;
  if (typeof value.command === "string") return value;
  if (isRecord(value.job)) return value.job;
  if (isRecord(value.a1111)) return jobFromA1111Document(value.a1111);
  return value;
}

/**
 * A Job from the `a1111` part of a `meta read` document: a user's file, so every field is
 * checked for its type and the typed summary is made again from the parameters.
 */
function jobFromA1111Document(a1111: Record<string, unknown>): Record<string, unknown> {
  const params: Record<string, string> = {};
  if (isRecord(a1111.params)) {
    for (const [key, value] of Object.entries(a1111.params)) {
      if (typeof value === "string") params[key] = value;
    }
  }
  return jobFromInfotext({
    prompt: typeof a1111.prompt === "string" ? a1111.prompt : "",
    negativePrompt: typeof a1111.negativePrompt === "string" ? a1111.negativePrompt : "",
    params,
    summary: summarizeInfotext(params),
  });
}

/**
 * Loads a `--job` document from a file or stdin ("-"): JSON (see {@linkcode unwrapJob}) or an
 * image (see {@linkcode jobFromImage}).
 */
export async function loadJobDocument(
  path: string,
  options: ReadInputOptions = {},
): Promise<LoadedJob> {
  const input = await readInput(path, { ...options, what: "job" });
  const format = sniffFormat(input.bytes);
  if (format === "png" || format === "jpeg" || format === "webp" || format === "gif") {
    // Strictly: a truncated or damaged image is an error, not a source of a partial job.
    try {
      readMetadata(input.bytes);
    } catch (error) {
      throw new InputError(
        `Cannot read the job in ${input.label}: ${(error as Error).message}`,
        { hint: "the image is damaged or truncated; pass the complete file", cause: error },
      );
    }
    const job = jobFromImage(input.bytes);
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
  const document = unwrapJob(parsed);
  if (document === undefined) {
    throw new InputError(`The job in ${input.label} is not a JSON object`, {
      hint: "pass a JSON object, e.g. the output of --dry-run or of denoise meta read",
    });
  }
  return { document, label: input.label };
}

/**
 * Reads a JSON-lines jobs file: one Job object per line (blank lines and `#` comments skipped),
 * each validated against `schema` with `flags` applied over it. Errors name the line.
 */
export async function readJobLines<S extends JobSchema>(
  path: string,
  schema: S,
  command: string,
  flags: Record<string, unknown> = {},
): Promise<Array<ReturnType<S["parse"]>>> {
  const text = new TextDecoder().decode(await readFileChecked(path));
  const jobs: Array<ReturnType<S["parse"]>> = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new InputError(`${path}:${i + 1} is not valid JSON: ${(error as Error).message}`);
    }
    const document = unwrapJob(value);
    if (document === undefined) throw new InputError(`${path}:${i + 1} is not a JSON object`);
    const parsed = schema.safeParse({ command, ...document, ...flags });
    if (!parsed.success) {
      throw new InputError(`${path}:${i + 1}: ${describeIssues(parsed.error.issues)}`);
    }
    jobs.push(parsed.data as ReturnType<S["parse"]>);
  }
  if (jobs.length === 0) throw new InputError(`${path} holds no jobs`);
  return jobs;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
