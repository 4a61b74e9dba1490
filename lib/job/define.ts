/**
 * Defining and resolving Jobs: the plain JSON objects that command-line flags become, that PNG metadata stores and that
 * `--job FILE|-` reads back. Each subcommand has one zod schema; a Job always names its
 * `command` and the schema `version`, so a stored Job can be replayed exactly.
 *
 * Resolution order: schema defaults, then the `--job` document, then flags given on the command
 * line (flags win).
 *
 * @module
 */
import { z } from "zod";
import { InputError, UsageError } from "../errors.ts";

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
 * import { defineJob } from "./define.ts";
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
        : issue.code === "invalid_type" && /received undefined$/.test(issue.message)
        ? "is required"
        : issue.message;
      return path ? `"${path}": ${text}` : text;
    })
    .join("; ") + (issues.length > 5 ? `; and ${issues.length - 5} more` : "");
}

/** A seed: a non-negative integer below 2^64, as a JSON number or a decimal string. */
export const Seed = z.union([
  z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  z.string().regex(/^\d{1,20}$/, "expected a decimal integer").refine(
    // The refinement also runs when the pattern failed: only convert digits.
    (s) => /^\d{1,20}$/.test(s) && BigInt(s) < 2n ** 64n,
    "must be below 2^64",
  ),
]);

/** A Job schema as {@linkcode defineJob} makes it. */
export interface JobSchema extends z.ZodType {
  shape: Record<string, z.ZodType>;
}

/**
 * The fields of a Job schema that flags may set: every key but `command` and `version`. Flag
 * parsing picks exactly these from the options a user gave, so the list of Job flags is the
 * schema itself and is written once.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { defineJob, jobFields } from "./define.ts";
 * const EchoJob = defineJob("echo", { text: z.string(), times: z.number() });
 * console.assert(jobFields(EchoJob).join() === "text,times");
 * ```
 */
export function jobFields(schema: JobSchema): string[] {
  return Object.keys(schema.shape).filter((k) => k !== "command" && k !== "version");
}

/**
 * Picks the Job fields out of explicitly given options (see {@linkcode jobFields}); a seed given
 * as a decimal string becomes a number when it is exactly representable.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { defineJob, pickJobFlags, Seed } from "./define.ts";
 * const J = defineJob("j", { seed: Seed.optional() });
 * const flags = pickJobFlags(J, { seed: "7", output: "x.png" });
 * console.assert(flags.seed === 7 && !("output" in flags));
 * ```
 */
export function pickJobFlags(
  schema: JobSchema,
  explicit: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of jobFields(schema)) {
    if (explicit[key] !== undefined) out[key] = explicit[key];
  }
  if (typeof out.seed === "string" && /^\d+$/.test(out.seed)) {
    const seed = BigInt(out.seed);
    out.seed = seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seed) : out.seed;
  }
  return out;
}

/**
 * A Job with more fields set, its keys in the schema's order, so that it serialises exactly as
 * the schema would write it (stored Jobs replay byte for byte). `job` must already be valid.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { defineJob, withFields } from "./define.ts";
 * const J = defineJob("j", { a: z.number().optional(), b: z.number() });
 * const job = withFields(J, J.parse({ command: "j", b: 2 }), { a: 1 });
 * console.assert(JSON.stringify(job) === '{"command":"j","version":1,"a":1,"b":2}');
 * ```
 */
export function withFields<T extends Record<string, unknown>>(
  schema: JobSchema,
  job: T,
  fields: Partial<T>,
): T {
  const merged: Record<string, unknown> = { ...job, ...fields };
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(schema.shape)) {
    if (merged[key] !== undefined) out[key] = merged[key];
  }
  return out as T;
}
