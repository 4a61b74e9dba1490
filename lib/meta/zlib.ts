/**
 * zlib inflate with a hard cap on the output size, so a decompression bomb in a zTXt or iTXt
 * chunk costs at most `maxBytes` of memory. Uses fflate's streaming inflater and feeds it small
 * slices of input, checking the running total after each one.
 *
 * @module
 */
import { Unzlib, zlibSync } from "fflate";

/** Input slice fed per step; inflate expands at most ~1032x, so one step yields <= ~4 MiB. */
const SLICE = 4096;

/** Options for {@linkcode inflateCapped}. */
export interface InflateOptions {
  /** Largest decompressed size accepted, in bytes. */
  maxBytes: number;
}

/**
 * Decompresses a zlib stream, throwing `RangeError` once the output would pass `maxBytes`
 * and `SyntaxError` when the stream is corrupt or truncated.
 *
 * @example
 * ```ts
 * import { deflateZlib, inflateCapped } from "./zlib.ts";
 * const packed = deflateZlib(new Uint8Array(10));
 * console.assert(inflateCapped(packed, { maxBytes: 100 }).length === 10);
 * ```
 */
export function inflateCapped(data: Uint8Array, options: InflateOptions): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  let over = false;
  const stream = new Unzlib((chunk) => {
    total += chunk.length;
    if (total > options.maxBytes) over = true;
    else parts.push(chunk);
  });
  try {
    if (data.length === 0) stream.push(data, true);
    for (let i = 0; i < data.length && !over; i += SLICE) {
      const end = Math.min(i + SLICE, data.length);
      stream.push(data.subarray(i, end), end === data.length);
    }
  } catch (error) {
    if (over) throw capError(options.maxBytes);
    const why = error instanceof Error ? error.message : String(error);
    throw new SyntaxError(`corrupt zlib data (${why})`);
  }
  if (over) throw capError(options.maxBytes);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function capError(maxBytes: number): RangeError {
  return new RangeError(
    `compressed text inflates to more than ${maxBytes} bytes (limit against decompression bombs)`,
  );
}

/**
 * Compresses bytes as a zlib stream (level 9), as zTXt and compressed iTXt chunks store them.
 */
export function deflateZlib(data: Uint8Array): Uint8Array {
  return zlibSync(data, { level: 9 });
}
