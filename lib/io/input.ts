/**
 * Reading inputs: a named file, or all of stdin when the name is absent or "-".
 *
 * @module
 */
import { InputError, toIoError, UsageError } from "../errors.ts";

export { toIoError };

/** Largest input denoise reads into memory (images, JSON): 1 GiB. */
export const MAX_INPUT_BYTES = 1 << 30;

/** Bytes read from a file or stdin, with a label for messages ("stdin" or the path). */
export interface Input {
  bytes: Uint8Array;
  label: string;
}

/** Options for {@linkcode readInput}. */
export interface ReadInputOptions {
  /** The stream to read when the path is absent or "-" (default: Deno.stdin). */
  stdin?: { readable: ReadableStream<Uint8Array>; isTerminal(): boolean };
  /** What the input is, for messages ("image", "job"). */
  what?: string;
  /** Allow empty input instead of failing. */
  allowEmpty?: boolean;
}

/** Reads all of a readable stream, failing past `limit` bytes. */
export async function readAllStream(
  stream: ReadableStream<Uint8Array>,
  limit: number = MAX_INPUT_BYTES,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.length;
    if (total > limit) {
      throw new InputError(`Input is larger than ${limit} bytes`, {
        hint: "pass a smaller file",
      });
    }
    chunks.push(chunk);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/**
 * Reads a whole input: the file at `path`, or stdin when `path` is undefined or "-".
 * Refuses to wait on an interactive terminal, and treats empty input as an error.
 */
export async function readInput(
  path: string | undefined,
  options: ReadInputOptions = {},
): Promise<Input> {
  const what = options.what ?? "input";
  let input: Input;
  if (path === undefined || path === "-") {
    const stdin = options.stdin ?? Deno.stdin;
    if (stdin.isTerminal()) {
      throw new UsageError(`No ${what} given and stdin is a terminal`, {
        hint: `pass a FILE argument or pipe the ${what} in, e.g. "cat a.png | denoise ..."`,
      });
    }
    input = { bytes: await readAllStream(stdin.readable), label: "stdin" };
  } else {
    input = { bytes: await readFileChecked(path), label: path };
  }
  if (input.bytes.length === 0 && !options.allowEmpty) {
    throw new InputError(`The ${what} from ${input.label} is empty`, {
      hint: input.label === "stdin"
        ? "check the command before the pipe: it wrote nothing"
        : "pass a non-empty file",
    });
  }
  return input;
}

/** Reads a file, turning file-system errors into one-line {@linkcode IoError}s. */
export async function readFileChecked(path: string): Promise<Uint8Array> {
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) {
      throw new UsageError(`Cannot read "${path}": it is a directory`, {
        hint: "pass a file",
      });
    }
    if (info.size > MAX_INPUT_BYTES) {
      throw new InputError(`Cannot read "${path}": larger than ${MAX_INPUT_BYTES} bytes`);
    }
    return await Deno.readFile(path);
  } catch (error) {
    throw toIoError(error, `Cannot read "${path}"`);
  }
}
