/**
 * Reading the annotator reference files (hed_reference.json, pidinet_reference.json,
 * lineart_reference.json; their `how` says how they were made) and comparing against them.
 *
 * @module
 */

/** One input size of a reference file. */
export interface AnnotatorCase {
  width: number;
  height: number;
  /** HED: raw side outputs on the (already 64-multiple) picture, first size only. */
  projections?: Array<{ shape: [number, number]; data: string }>;
  /** PiDiNet: the raw fused sigmoid, first size only. */
  edge?: string;
  /** Lineart: the raw generator output, first size only. */
  line?: string;
  /** Control images (first channel, uint8) by variant: plain, safe, scribble, fine, coarse. */
  plain?: string;
  safe?: string;
  scribble?: string;
  fine?: string;
  coarse?: string;
}

/** A reference file. */
export interface AnnotatorReference {
  how: string;
  versions: { torch: string; numpy: string; opencv: string };
  cases: AnnotatorCase[];
}

/** Loads `<name>_reference.json` beside this file. */
export function annotatorReference(name: "hed" | "pidinet" | "lineart"): AnnotatorReference {
  return JSON.parse(
    Deno.readTextFileSync(new URL(`./${name}_reference.json`, import.meta.url)),
  ) as AnnotatorReference;
}

/** Bytes of base64 text. */
export function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** float32 values of base64 text. */
export function floatsOf(text: string): Float32Array {
  return new Float32Array(bytesOf(text).buffer);
}

/** Largest absolute difference of two float arrays of the same length. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths ${a.length} and ${b.length} differ`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** How many bytes of the first channel of an RGB image differ from a gray reference, and by how much. */
export function grayDiff(rgb: Uint8Array, gray: Uint8Array): { count: number; max: number } {
  let count = 0;
  let max = 0;
  for (let i = 0; i < gray.length; i++) {
    const d = Math.abs(rgb[i * 3]! - gray[i]!);
    if (d > 0) count++;
    max = Math.max(max, d);
  }
  return { count, max };
}
