/**
 * Helpers shared by the subcommands: global flags, job flags, and the run context (progress,
 * log lines on stderr) built from them. Only commands/ and main.ts use commander.
 *
 * @module
 */
import { type Command, Option } from "@commander-js/extra-typings";
import { UsageError } from "../lib/errors.ts";
import { setOnnxLogLevel } from "../lib/onnx/session.ts";
import { createProgressReporter, type ProgressMode, type ProgressReporter } from "../lib/io/mod.ts";
import type { z } from "zod";
import { writeOutput } from "../lib/io/output.ts";
import { type LoadedJob, loadJobDocument, resolveJob } from "../lib/job/mod.ts";

/** Any commander command, whatever its typed arguments and options. */
// deno-lint-ignore no-explicit-any
export type AnyCommand = Command<any, any, any>;

/** Global flags, defined on the root program. */
export interface GlobalOptions {
  debug?: boolean;
  quiet?: boolean;
  progress?: ProgressMode;
}

/** What an action needs besides its own flags. */
export interface RunContext {
  /** Global flags. */
  globals: GlobalOptions;
  /** Progress reporter on stderr. */
  progress: ProgressReporter;
  /** An informational line on stderr (suppressed by --quiet). */
  info(message: string): void;
  /** A warning line on stderr (always shown). */
  warn(message: string): void;
  /** A line shown only with --debug. */
  debug(message: string): void;
}

const encoder = new TextEncoder();

/** Writes text to stderr synchronously, ignoring a closed stderr. */
export function writeStderr(text: string): void {
  try {
    const bytes = encoder.encode(text);
    let written = 0;
    while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
  } catch {
    // stderr closed: nothing useful left to do.
  }
}

/** True when colour may be used on stderr (a terminal, and NO_COLOR unset). */
export function stderrColor(): boolean {
  return Deno.stderr.isTerminal() && !Deno.env.get("NO_COLOR");
}

/** Builds the run context of a command from its global flags. */
export function runContext(command: { optsWithGlobals(): object }): RunContext {
  const globals = command.optsWithGlobals() as GlobalOptions;
  const quiet = globals.quiet === true;
  // onnxruntime's own log lines only with --debug (every failure reaches us as an error).
  if (globals.debug) setOnnxLogLevel("warning");
  const mode: ProgressMode = quiet ? "none" : globals.progress ?? "auto";
  const json = globals.progress === "json";
  const progress = createProgressReporter(mode, {
    sink: { write: writeStderr },
    isTerminal: Deno.stderr.isTerminal(),
    color: stderrColor(),
  });
  return {
    globals,
    progress,
    // Under --progress json every stderr line is a JSON object, so machines can parse the stream.
    info: (message) => {
      if (quiet) return;
      writeStderr(json ? `${JSON.stringify({ event: "info", message })}\n` : `${message}\n`);
    },
    warn: (message) =>
      writeStderr(
        json ? `${JSON.stringify({ event: "warning", message })}\n` : `warning: ${message}\n`,
      ),
    debug: (message) => {
      if (globals.debug) writeStderr(`debug: ${message}\n`);
    },
  };
}

/** Adds `--job FILE|-` and `--dry-run` to a subcommand. */
export function withJobOptions<A extends unknown[], O extends Record<string, unknown>>(
  command: Command<A, O>,
) {
  return command
    .option("--job <file>", "read the job from a JSON file, an image made by denoise, or - (stdin)")
    .option("--dry-run", "print the resolved job as JSON and do nothing else");
}

/**
 * The options the user actually gave (on the command line or from the environment), as opposed
 * to defaults, so they can override fields of a `--job` document.
 */
export function explicitOptions(command: AnyCommand): Record<string, unknown> {
  const opts = command.opts() as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(opts)) {
    const source = command.getOptionValueSource(key);
    if (source === "cli" || source === "env") out[key] = value;
  }
  return out;
}

/** Loads `--job` when given (reading stdin for "-"). */
export async function loadJobOption(path: string | undefined): Promise<LoadedJob | undefined> {
  if (path === undefined) return undefined;
  return await loadJobDocument(path);
}

/** A commander argument parser for positive integers. */
export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
      throw new UsageError(`"${name}" must be a positive integer, got "${value}"`);
    }
    return n;
  };
}

/** A commander argument parser for integers >= 0. */
export function nonNegativeInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) {
      throw new UsageError(`"${name}" must be an integer >= 0, got "${value}"`);
    }
    return n;
  };
}

/** A commander argument parser for finite numbers. */
export function finiteNumber(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) {
      throw new UsageError(`"${name}" must be a number, got "${value}"`);
    }
    return n;
  };
}

/** The `--progress` option with its choices. */
export function progressOption() {
  return new Option("--progress <mode>", "progress on stderr: bar on a terminal, json lines for CI")
    .choices(["auto", "bar", "json", "none"] as const)
    .default("auto" as const);
}

/** Formats an examples block for `addHelpText("after", ...)`. */
export function examples(lines: Array<[string, string]>): string {
  return "\nExamples:\n" +
    lines.map(([cmd, what]) => `  # ${what}\n  $ ${cmd}\n`).join("\n");
}

/**
 * The Job of a simple subcommand: `--job` (if given), then its explicit flags and positional
 * arguments. With `--dry-run` it prints the Job and returns undefined (do nothing else).
 */
export async function commandJob<S extends z.ZodType>(
  command: AnyCommand,
  schema: S,
  name: string,
  positional: Record<string, unknown> = {},
): Promise<z.infer<S> | undefined> {
  const opts = command.opts() as { job?: string; dryRun?: boolean };
  const flags = explicitOptions(command);
  delete flags.job;
  delete flags.dryRun;
  for (const [key, value] of Object.entries(positional)) {
    if (value !== undefined) flags[key] = value;
  }
  const loaded = await loadJobOption(opts.job);
  const job = resolveJob(schema, name, {
    flags,
    ...(loaded ? { document: loaded.document, documentLabel: loaded.label } : {}),
  });
  if (opts.dryRun) {
    await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
    return undefined;
  }
  return job;
}
