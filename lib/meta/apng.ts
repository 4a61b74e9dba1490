/**
 * Animated PNG (APNG) assembled from one ordinary PNG per frame, since sharp writes no APNG:
 * the first frame's IHDR, an `acTL` (frame count, loops), then per frame an `fcTL` (size, offset,
 * delay, dispose and blend) and its image data, the first frame's as `IDAT` (so viewers without
 * APNG show frame 0) and the others' as `fdAT` (a sequence number before the same zlib stream).
 * `fcTL` and `fdAT` share one sequence counter from 0. Text chunks go before `acTL`.
 * Reference: APNG specification (https://wiki.mozilla.org/APNG_Specification) and PNG third
 * edition, section 11.3.6 (https://www.w3.org/TR/png-3/#apng-frame-control).
 *
 * @module
 */
import { encodeChunk, PNG_SIGNATURE, readPngChunks } from "./png.ts";
import { concatBytes } from "./text.ts";

/** Options of {@linkcode assembleApng}. */
export interface AssembleApngOptions {
  /** Frames per second; the delay is stored as the fraction `1/fps` (or `n/1000`). */
  fps: number;
  /** Times to play, 0 = forever (default). */
  loops?: number;
  /** Encoded chunks (tEXt, iTXt, ...) placed after IHDR. */
  textChunks?: readonly Uint8Array[];
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

function u16(value: number): Uint8Array {
  const out = new Uint8Array(2);
  new DataView(out.buffer).setUint16(0, value);
  return out;
}

/**
 * The `delay_num / delay_den` of a frame rate: `1/fps` for a whole fps up to 65535, else the
 * nearest whole milliseconds over 1000.
 *
 * @example
 * ```ts
 * import { apngDelay } from "./apng.ts";
 * console.assert(apngDelay(8).join() === "1,8" && apngDelay(7.5).join() === "133,1000");
 * ```
 */
export function apngDelay(fps: number): [number, number] {
  if (!(fps > 0) || !Number.isFinite(fps)) {
    throw new RangeError(`Frame rate must be a positive number, got ${fps}`);
  }
  if (Number.isInteger(fps) && fps <= 65535) return [1, fps];
  return [Math.min(65535, Math.max(1, Math.round(1000 / fps))), 1000];
}

/**
 * Joins same-sized PNG frames into one APNG. Throws a TypeError when the frames differ in IHDR
 * (size, bit depth, colour type) and a SyntaxError for bytes that are not a whole PNG.
 *
 * @example
 * ```ts ignore
 * const frames = await Promise.all(images.map((im) => encodeImage(im, "png")));
 * const apng = assembleApng(frames, { fps: 8 });
 * ```
 */
export function assembleApng(
  frames: readonly Uint8Array[],
  options: AssembleApngOptions,
): Uint8Array {
  if (frames.length === 0) throw new RangeError("Cannot assemble an APNG of no frames");
  const [num, den] = apngDelay(options.fps);
  const parsed = frames.map((bytes, k) => {
    const file = readPngChunks(bytes);
    const ihdr = file.chunks.find((c) => c.type === "IHDR");
    const idat = file.chunks.filter((c) => c.type === "IDAT").map((c) => c.data);
    if (ihdr === undefined || idat.length === 0) {
      throw new SyntaxError(`Frame ${k} is not a complete PNG (no IHDR or IDAT)`);
    }
    return { ihdr: ihdr.data, idat };
  });
  const ihdr = parsed[0]!.ihdr;
  const view = new DataView(ihdr.buffer, ihdr.byteOffset, ihdr.byteLength);
  const width = view.getUint32(0);
  const height = view.getUint32(4);
  parsed.forEach((p, k) => {
    if (p.ihdr.length !== ihdr.length || p.ihdr.some((b, i) => b !== ihdr[i])) {
      throw new TypeError(`Cannot join PNG frames of different kinds: frame ${k}'s IHDR differs`);
    }
  });
  const parts: Uint8Array[] = [PNG_SIGNATURE, encodeChunk("IHDR", ihdr)];
  for (const chunk of options.textChunks ?? []) parts.push(chunk);
  // acTL: num_frames, num_plays
  parts.push(encodeChunk("acTL", concatBytes([u32(frames.length), u32(options.loops ?? 0)])));
  let sequence = 0;
  parsed.forEach((p, k) => {
    // fcTL: sequence, width, height, x, y, delay_num, delay_den, dispose_op 0 (none),
    // blend_op 0 (source: each frame replaces the canvas)
    parts.push(encodeChunk(
      "fcTL",
      concatBytes([
        u32(sequence++),
        u32(width),
        u32(height),
        u32(0),
        u32(0),
        u16(num),
        u16(den),
        Uint8Array.of(0, 0),
      ]),
    ));
    for (const data of p.idat) {
      parts.push(
        k === 0
          ? encodeChunk("IDAT", data)
          : encodeChunk("fdAT", concatBytes([u32(sequence++), data])),
      );
    }
  });
  parts.push(encodeChunk("IEND", new Uint8Array()));
  return concatBytes(parts);
}
