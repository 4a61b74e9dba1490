/**
 * Writing outputs. Files are written to a temporary name in the same folder and renamed into
 * place, so a crash or a bad input never leaves half a file. Without `-o`, binary output goes to
 * stdout, but never to a terminal.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { IoError, ioReason, toIoError, UsageError } from "../errors.ts";

/** A writable standard stream, as Deno.stdout is. */
export interface StdStream {
  writable: WritableStream<Uint8Array>;
  isTerminal(): boolean;
}

/**
 * Writes `data` to `path` atomically: a temp file in the same folder, flushed, then renamed.
 * The temp file is removed if anything fails. A path that names an existing device, FIFO or
 * socket (`/dev/null`, a named pipe) is written directly, since renaming over it would replace
 * it. Every file-system failure becomes a one-line {@linkcode IoError}.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const dir = dirname(path);
  const temp = join(
    dir,
    `.${basename(path)}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  let usedTemp = false;
  try {
    const info = await Deno.stat(path).catch(() => undefined);
    if (info?.isDirectory) {
      throw new UsageError(`Cannot write "${path}": it is a directory`, {
        hint: "pass a file name, e.g. -o out.png",
      });
    }
    if (info !== undefined && !info.isFile) {
      using file = await Deno.open(path, { write: true });
      await writeAllTo(file, bytes);
      return;
    }
    usedTemp = true;
    const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
    try {
      await writeAllTo(file, bytes);
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    if (usedTemp) await Deno.remove(temp).catch(() => {});
    throw toIoError(error, `Cannot write "${path}"`);
  }
}

async function writeAllTo(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/** Options for {@linkcode writeOutput}. */
export interface WriteOutputOptions {
  /** `-o` value: a file path, or "-" / undefined for stdout. */
  output?: string | undefined;
  /** True for images and other binary data (refused on a terminal). */
  binary: boolean;
  /** The stream used for stdout (default Deno.stdout). */
  stdout?: StdStream;
}

/**
 * Writes a result to `-o FILE` (atomically) or to stdout. Binary data is refused when stdout is a
 * terminal, with a hint.
 */
export async function writeOutput(
  data: Uint8Array | string,
  options: WriteOutputOptions,
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  if (options.output !== undefined && options.output !== "-") {
    await writeFileAtomic(options.output, bytes);
    return;
  }
  const stdout = options.stdout ?? Deno.stdout;
  if (options.binary && stdout.isTerminal()) {
    throw new UsageError("Refusing to write binary image data to a terminal", {
      hint: "pass -o FILE, or pipe into another command (e.g. | denoise meta read)",
    });
  }
  await writeStream(stdout.writable, bytes);
}

/**
 * Writes all bytes to a stream without closing it, mapping a failed write (a closed pipe, a
 * full disk) to a one-line {@linkcode IoError}.
 */
export async function writeStream(
  writable: WritableStream<Uint8Array>,
  bytes: Uint8Array,
  options: { label?: string } = {},
): Promise<void> {
  const writer = writable.getWriter();
  try {
    await writer.write(bytes);
  } catch (error) {
    const reason = ioReason(error);
    if (reason !== undefined) {
      throw new IoError(`Cannot write to ${options.label ?? "stdout"}: ${reason}`, {
        cause: error,
      });
    }
    throw error;
  } finally {
    writer.releaseLock();
  }
}
