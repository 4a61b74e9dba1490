/**
 * Row operations on the tensors a decoder's key/value cache and outputs are made of, for the
 * scorers: beam search reorders rows (`gatherRows`), a per-image tensor is expanded to the `k`
 * rows (beams) of each image (`repeatRows`, as torch's `repeat_interleave`), the first call
 * starts from empty caches (`emptyCache`), and a `[rows, seq, vocab]` logits output is cut to
 * its last position (`lastLogits`).
 *
 * @module
 */
import { type HostData, type HostTensor, hostTensor } from "../onnx/session.ts";

type Ctor = { new (n: number): HostData };

function rowSize(t: HostTensor): number {
  const rows = t.dims[0] ?? 0;
  return rows === 0 ? 0 : t.data.length / rows;
}

/**
 * Rows `rows[r]` of a `[R, ...]` tensor; the tensor itself when `rows` is the identity.
 *
 * @example
 * ```ts
 * import { hostTensor } from "../onnx/session.ts";
 * import { gatherRows } from "./kv_cache.ts";
 * const t = hostTensor("float32", Float32Array.of(1, 2, 3, 4), [2, 2]);
 * console.assert([...gatherRows(t, [1, 1, 0]).data].join() === "3,4,3,4,1,2");
 * ```
 */
export function gatherRows(t: HostTensor, rows: readonly number[]): HostTensor {
  if (rows.length === t.dims[0] && rows.every((r, i) => r === i)) return t;
  const size = rowSize(t);
  const out = new (t.data.constructor as Ctor)(rows.length * size);
  rows.forEach((r, i) => {
    if (!(r >= 0 && r < (t.dims[0] ?? 0))) {
      throw new RangeError(`Cannot gather row ${r} of a tensor with ${t.dims[0]} rows`);
    }
    (out as Float32Array).set(
      (t.data as Float32Array).subarray(r * size, (r + 1) * size),
      i * size,
    );
  });
  return hostTensor(t.type, out, [rows.length, ...t.dims.slice(1)]);
}

/**
 * Each row of `t` repeated `k` times in place (`repeat_interleave(k, dim=0)`).
 *
 * @example
 * ```ts
 * import { hostTensor } from "../onnx/session.ts";
 * import { repeatRows } from "./kv_cache.ts";
 * const t = hostTensor("int64", BigInt64Array.of(1n, 2n), [2, 1]);
 * console.assert(repeatRows(t, 2).data.join() === "1,1,2,2");
 * ```
 */
export function repeatRows(t: HostTensor, k: number): HostTensor {
  if (k === 1) return t;
  const rows = t.dims[0] ?? 0;
  return gatherRows(t, Array.from({ length: rows * k }, (_, i) => Math.floor(i / k)));
}

/**
 * An empty float32 cache tensor `[rows, heads, 0, headDim]` (the first decoder call's past).
 *
 * @example
 * ```ts
 * import { emptyCache } from "./kv_cache.ts";
 * console.assert(emptyCache(3, 2, 8).dims.join() === "3,2,0,8");
 * ```
 */
export function emptyCache(rows: number, heads: number, headDim: number): HostTensor {
  return hostTensor("float32", new Float32Array(0), [rows, heads, 0, headDim]);
}

/**
 * The logits of the last position of each row: `[rows, seq, vocab]` -> `[rows * vocab]`
 * (a `[rows, vocab]` output is returned as it is).
 *
 * @example
 * ```ts
 * import { hostTensor } from "../onnx/session.ts";
 * import { lastLogits } from "./kv_cache.ts";
 * const t = hostTensor("float32", Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), [2, 2, 2]);
 * console.assert([...lastLogits(t)].join() === "3,4,7,8");
 * ```
 */
export function lastLogits(t: HostTensor): Float32Array {
  if (t.type !== "float32") {
    throw new TypeError(`Cannot read ${t.type} logits; use a float32 export of the model`);
  }
  const data = t.data as Float32Array;
  if (t.dims.length === 2) return data;
  if (t.dims.length !== 3) {
    throw new RangeError(`Cannot read logits of shape [${t.dims}]: expected [rows, seq, vocab]`);
  }
  const [rows, seq, vocab] = t.dims as [number, number, number];
  if (seq === 1) return data;
  const out = new Float32Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const at = (r * seq + seq - 1) * vocab;
    out.set(data.subarray(at, at + vocab), r * vocab);
  }
  return out;
}

/**
 * The tokens each row gained since `consumed` tokens were fed, as an int64 `[rows, width]`
 * tensor; every row must have grown by the same number of tokens (at least one).
 *
 * @example
 * ```ts
 * import { freshIds } from "./kv_cache.ts";
 * const ids = freshIds([[5, 1, 2], [5, 3, 4]], 1);
 * console.assert(ids.dims.join() === "2,2" && ids.data.join() === "1,2,3,4");
 * ```
 */
export function freshIds(sequences: readonly (readonly number[])[], consumed: number): HostTensor {
  const rows = sequences.length;
  const width = (sequences[0]?.length ?? 0) - consumed;
  if (width <= 0) {
    throw new RangeError(
      "Cannot score: the sequences did not grow since the last call; a scorer serves one " +
        "search, encode the images again for another",
    );
  }
  const ids = new BigInt64Array(rows * width);
  sequences.forEach((s, r) => {
    if (s.length - consumed !== width) {
      throw new RangeError("Cannot score rows that grew by different numbers of tokens");
    }
    for (let i = 0; i < width; i++) ids[r * width + i] = BigInt(s[consumed + i]!);
  });
  return hostTensor("int64", ids, [rows, width]);
}

/**
 * The rows per image of a scorer call, checking that `rows` is a multiple of `images`.
 *
 * @example
 * ```ts
 * import { rowsPerImage } from "./kv_cache.ts";
 * console.assert(rowsPerImage(6, 2) === 3);
 * ```
 */
export function rowsPerImage(rows: number, images: number): number {
  if (rows === 0 || rows % images !== 0) {
    throw new RangeError(
      `Cannot score ${rows} rows over ${images} images: pass the same number of rows ` +
        `(beams) for every image`,
    );
  }
  return rows / images;
}
