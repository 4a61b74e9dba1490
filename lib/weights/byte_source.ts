/**
 * Random access to the bytes of a weight file, from disk or memory, so readers fetch only the
 * ranges they need.
 *
 * @module
 */

/** A readable run of bytes of known size. */
export interface ByteSource {
  /** Name used in error messages (the file path, or a caller-given label). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Reads `length` bytes at `offset`; throws a RangeError past the end. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the file handle, if any. Later reads throw. */
  close(): void;
}

function checkRange(name: string, size: number, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
    offset + length > size
  ) {
    throw new RangeError(
      `Cannot read ${length} bytes at offset ${offset} of "${name}": it has ${size} bytes`,
    );
  }
}

/** A ByteSource over bytes already in memory; reads return copies. */
export function memorySource(bytes: Uint8Array, name = "<memory>"): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    read(offset: number, length: number): Promise<Uint8Array> {
      checkRange(name, bytes.byteLength, offset, length);
      return Promise.resolve(bytes.slice(offset, offset + length));
    },
    close(): void {},
  };
}

/**
 * Opens a file as a ByteSource. Reads are queued so concurrent calls never interleave seeks on
 * the one handle.
 */
export async function fileSource(path: string): Promise<ByteSource> {
  const file = await Deno.open(path, { read: true });
  let size: number;
  try {
    size = (await file.stat()).size;
  } catch (error) {
    file.close();
    throw error;
  }
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  async function readAt(offset: number, length: number): Promise<Uint8Array> {
    await file.seek(offset, Deno.SeekMode.Start);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = await file.read(out.subarray(done));
      if (n === null) {
        throw new RangeError(`"${path}" ended early: it was shortened while being read`);
      }
      done += n;
    }
    return out;
  }

  return {
    name: path,
    size,
    read(offset: number, length: number): Promise<Uint8Array> {
      if (closed) return Promise.reject(new Error(`"${path}" was already closed`));
      checkRange(path, size, offset, length);
      const result = queue.then(() => readAt(offset, length));
      queue = result.catch(() => undefined);
      return result;
    },
    close(): void {
      if (closed) return;
      closed = true;
      // Let reads already queued finish before the handle goes away.
      queue.finally(() => file.close());
    },
  };
}
