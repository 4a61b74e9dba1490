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

/**
 * Weights that do not fit (exit 3): a tensor of the wrong shape, missing or left over, or an
 * adapter whose shapes do not fit the model. A `TypeError` by meaning, as builders throw for a
 * wrong shape, that the CLI counts as bad input rather than a bug.
 *
 * @example
 * ```ts
 * import { exitCodeFor, WeightsError } from "./errors.ts";
 * const err = new WeightsError('"conv_in.bias" has shape [16, 2], expected [32]');
 * console.assert(err instanceof TypeError && exitCodeFor(err) === 3);
 * ```
 */
export class WeightsError extends TypeError {
  /** Process exit code: bad input. */
  readonly exitCode: ExitCodeValue = ExitCode.badInput;
  /** What the user can do about it, if known. */
  readonly hint: string | undefined;

  constructor(message: string, options: DenoiseErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
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
 * bad text (RangeError, SyntaxError) count as bad input; file-system errors (Deno's error
 * classes, Deno's sandbox refusing a system path, errno-coded errors such as ENOSPC) count as
 * I/O.
 */
export function exitCodeFor(error: unknown): ExitCodeValue {
  if (error instanceof DenoiseError || error instanceof WeightsError) return error.exitCode;
  if (ioReason(error) !== undefined) return ExitCode.io;
  if (error instanceof RangeError || error instanceof SyntaxError) return ExitCode.badInput;
  return ExitCode.failure;
}

/** Plain reasons for errno codes that Deno reports as a bare Error with a `code`. */
const ERRNO_REASONS: Record<string, string> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a folder",
  EISDIR: "it is a folder",
  EEXIST: "it already exists",
  EIO: "input/output error",
  EFBIG: "file too large",
  EMFILE: "too many open files",
  ENFILE: "too many open files",
  ENAMETOOLONG: "file name too long",
  ELOOP: "too many levels of symbolic links",
  EXDEV: "not on the same file system",
  ETXTBSY: "the file is busy",
  EBUSY: "the device or file is busy",
  EPIPE: "the reading end of the pipe closed",
  ENXIO: "no such device",
  ENODEV: "no such device",
};

/**
 * The plain reason of a file-system error ("no space left on device", "permission denied"), or
 * `undefined` for anything else.
 *
 * @example
 * ```ts
 * import { ioReason } from "./errors.ts";
 * console.assert(ioReason(new Deno.errors.NotFound("x")) === "no such file or directory");
 * console.assert(ioReason(new TypeError("x")) === undefined);
 * ```
 */
export function ioReason(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const E = Deno.errors;
  if (error instanceof E.NotFound) return "no such file or directory";
  if (error instanceof E.PermissionDenied) return "permission denied";
  if (error instanceof E.IsADirectory) return "it is a folder";
  if (error instanceof E.NotADirectory) return "a part of the path is not a folder";
  if (error instanceof E.AlreadyExists) return "it already exists";
  if (error instanceof E.FilesystemLoop) return "too many levels of symbolic links";
  if (error instanceof E.BrokenPipe) return "the reading end of the pipe closed";
  if (error instanceof E.WriteZero) return "the device accepted no more bytes";
  if (error instanceof E.Busy) return "the device or file is busy";
  if (error instanceof E.NotCapable) {
    // Deno asks for --allow-all before it touches /dev (but /dev/null), /proc or /sys.
    return "denoise does not read or write system paths such as /dev, /proc and /sys";
  }
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string" || !/^E[A-Z0-9]+$/.test(code)) return undefined;
  const known = ERRNO_REASONS[code];
  if (known !== undefined) return known;
  // Other errno codes: a Node-style system error, or Deno's "... (os error N)".
  if ("syscall" in error || /\(os error \d+\)/.test(error.message)) {
    return plainOsMessage(error.message);
  }
  return undefined;
}

/** "Disk full (os error 28): open '/x'" -> "disk full". */
function plainOsMessage(message: string): string {
  const text = message.replace(/\s*\(os error \d+\).*$/s, "").replace(/^[A-Z]+: /, "");
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** Deno's messages name the path in a few shapes; returns it when one is found. */
function ioPath(message: string): string | undefined {
  return /^Requires \w+ access to "([^"]*)"/.exec(message)?.[1] ??
    /: (?:open|mkdir|stat|lstat|rename|remove|link|realpath|readdir|copy|truncate|utime) '([^']*)'/
      .exec(message)?.[1];
}

/**
 * Wraps a file-system error in an {@linkcode IoError} that reads as one plain line,
 * `<prefix>: <reason>`; other values are returned unchanged.
 *
 * @example
 * ```ts
 * import { IoError, toIoError } from "./errors.ts";
 * const e = toIoError(new Deno.errors.PermissionDenied("x"), 'Cannot write "a.png"');
 * console.assert(e instanceof IoError && e.message === 'Cannot write "a.png": permission denied');
 * ```
 */
export function toIoError(
  error: unknown,
  prefix: string,
  options: { hint?: string } = {},
): unknown {
  if (error instanceof IoError) return error;
  const reason = ioReason(error);
  if (reason === undefined) return error;
  let hint = options.hint;
  if (hint === undefined && error instanceof Deno.errors.NotFound) hint = "check the path";
  if (hint === undefined && error instanceof Deno.errors.NotCapable) {
    hint = "use a file in a regular folder (or /dev/null)";
  }
  return new IoError(`${prefix}: ${reason}`, { cause: error, ...(hint ? { hint } : {}) });
}

/**
 * Formats an error as the one line (plus an optional hint line) the CLI prints on stderr.
 * With `debug`, the stack trace and the cause chain follow.
 */
export function formatError(error: unknown, options: { debug?: boolean } = {}): string {
  let message = error instanceof Error ? error.message : String(error);
  const reason = error instanceof DenoiseError || error instanceof WeightsError
    ? undefined
    : ioReason(error);
  if (reason !== undefined) {
    // A file-system error nobody wrapped: say what failed in plain words, not Deno's.
    const path = ioPath(message);
    message = path === undefined
      ? reason.charAt(0).toUpperCase() + reason.slice(1)
      : `Cannot use "${path}": ${reason}`;
  }
  const firstLine = message.split("\n")[0] ?? "";
  let text = `denoise: ${firstLine}`;
  const hint = error instanceof DenoiseError || error instanceof WeightsError
    ? error.hint
    : undefined;
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
