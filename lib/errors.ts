/**
 * Typed errors that the CLI maps to exit codes. Library code throws built-in errors by meaning
 * (TypeError, RangeError, SyntaxError) where callers need nothing more; these classes exist for
 * the cases the command line must tell apart. See docs/exit-codes.md.
 *
 * @module
 */

/** Exit codes, documented in docs/exit-codes.md. */
export const ExitCode = {
  /** Success. */
  ok: 0,
  /** An unexpected failure (a bug, or an error nobody classified). */
  failure: 1,
  /** Wrong command-line usage: unknown flag, bad flag value, missing argument. */
  usage: 2,
  /** Bad input data: not an image, corrupt PNG, invalid JSON, wrong tensor shapes. */
  badInput: 3,
  /** A model, weight file or other named resource could not be found. */
  missingModel: 4,
  /** Reading or writing a file or stream failed (permissions, disk full, closed pipe). */
  io: 5,
  /** A network download failed or was refused. */
  network: 6,
  /** Some of many inputs failed (each reported on stderr); the others were processed. */
  partial: 7,
  /** Interrupted by the user (SIGINT). */
  interrupted: 130,
} as const;

/** One of the values of {@linkcode ExitCode}. */
export type ExitCodeValue = typeof ExitCode[keyof typeof ExitCode];

/** Options shared by every {@linkcode DenoiseError}. */
export interface DenoiseErrorOptions {
  /** A sentence telling the user what to do about it. */
  hint?: string;
  /** The underlying error. */
  cause?: unknown;
}

/** Base class of errors that carry their own exit code and an optional hint. */
export class DenoiseError extends Error {
  /** Process exit code for this error. */
  readonly exitCode: ExitCodeValue;
  /** What the user can do about it, if known. */
  readonly hint: string | undefined;

  constructor(message: string, exitCode: ExitCodeValue, options: DenoiseErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.hint = options.hint;
  }
}

/**
 * Wrong command-line usage (exit 2).
 *
 * @example
 * ```ts
 * import { UsageError } from "./errors.ts";
 * const err = new UsageError('"--steps" must be a positive integer, got "abc"');
 * console.assert(err.exitCode === 2);
 * ```
 */
export class UsageError extends DenoiseError {
  constructor(message: string, options: DenoiseErrorOptions = {}) {
    super(message, ExitCode.usage, options);
  }
}

/** Bad input data: an image, JSON document or weight file that cannot be used (exit 3). */
export class InputError extends DenoiseError {
  constructor(message: string, options: DenoiseErrorOptions = {}) {
    super(message, ExitCode.badInput, options);
  }
}

/** A model or other named resource is missing (exit 4). */
export class ModelNotFoundError extends DenoiseError {
  constructor(message: string, options: DenoiseErrorOptions = {}) {
    super(message, ExitCode.missingModel, options);
  }
}

/** Reading or writing failed (exit 5). */
export class IoError extends DenoiseError {
  constructor(message: string, options: DenoiseErrorOptions = {}) {
    super(message, ExitCode.io, options);
  }
}

/** A download failed (exit 6). */
export class NetworkError extends DenoiseError {
  constructor(message: string, options: DenoiseErrorOptions = {}) {
    super(message, ExitCode.network, options);
  }
}

/**
 * Some inputs of a run over many failed, each already reported on stderr; the others were
 * processed (exit 7).
 *
 * @example
 * ```ts
 * import { PartialFailureError } from "./errors.ts";
 * console.assert(new PartialFailureError("1 of 3 images failed").exitCode === 7);
 * ```
 */
export class PartialFailureError extends DenoiseError {
  constructor(message: string, options: DenoiseErrorOptions = {}) {
    super(message, ExitCode.partial, options);
  }
}

/**
 * The exit code for any thrown value. Built-in errors thrown by the library for bad values or
 * bad text (RangeError, SyntaxError) count as bad input; file-system errors count as I/O.
 */
export function exitCodeFor(error: unknown): ExitCodeValue {
  if (error instanceof DenoiseError) return error.exitCode;
  if (error instanceof Deno.errors.NotFound) return ExitCode.io;
  if (error instanceof Deno.errors.PermissionDenied) return ExitCode.io;
  if (error instanceof Deno.errors.BrokenPipe) return ExitCode.io;
  if (error instanceof RangeError || error instanceof SyntaxError) return ExitCode.badInput;
  if (isNodeSystemError(error)) return ExitCode.io;
  return ExitCode.failure;
}

function isNodeSystemError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code) && "syscall" in error;
}

/**
 * Formats an error as the one line (plus an optional hint line) the CLI prints on stderr.
 * With `debug`, the stack trace and the cause chain follow.
 */
export function formatError(error: unknown, options: { debug?: boolean } = {}): string {
  const message = error instanceof Error ? error.message : String(error);
  const firstLine = message.split("\n")[0] ?? "";
  let text = `denoise: ${firstLine}`;
  const hint = error instanceof DenoiseError ? error.hint : undefined;
  if (hint) text += `\nhint: ${hint}`;
  if (options.debug) {
    let current: unknown = error;
    while (current instanceof Error) {
      text += `\n${current.stack ?? current.message}`;
      current = current.cause;
      if (current !== undefined) text += "\ncaused by:";
    }
  } else if (exitCodeFor(error) === ExitCode.failure) {
    text += "\nhint: run again with --debug for a stack trace, and report it as a bug";
  }
  return text;
}
