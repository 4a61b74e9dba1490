/**
 * "Stealth pnginfo": A1111 infotext hidden in the least significant bits of the pixels (the
 * sd-webui-stealth-pnginfo extension, also used by NovelAI). Layout, per that extension's
 * `scripts/stealth_pnginfo.py` (github.com/neggles/sd-webui-stealth-pnginfo): pixels are read
 * column by column (x outer, y inner); "alpha" mode takes the alpha LSB of each pixel, "rgb" mode
 * the R, G and B LSBs; the first 15 bytes spell a signature (`stealth_pnginfo`/`stealth_pngcomp`
 * for alpha, `stealth_rgbinfo`/`stealth_rgbcomp` for rgb; "comp" = gzip), then a 32-bit
 * big-endian bit count, then the data, UTF-8.
 *
 * @module
 */
import { Gunzip } from "fflate";
import { concatBytes, decodeUtf8 } from "./text.ts";

/** Decoded 8-bit pixels, interleaved. */
export interface StealthPixels {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/** What {@linkcode decodeStealthInfo} finds. */
export interface StealthInfo {
  mode: "alpha" | "rgb";
  compressed: boolean;
  text: string;
}

const SIGNATURES: Record<string, { mode: "alpha" | "rgb"; compressed: boolean }> = {
  stealth_pnginfo: { mode: "alpha", compressed: false },
  stealth_pngcomp: { mode: "alpha", compressed: true },
  stealth_rgbinfo: { mode: "rgb", compressed: false },
  stealth_rgbcomp: { mode: "rgb", compressed: true },
};

function* bits(image: StealthPixels, mode: "alpha" | "rgb"): Generator<number> {
  const { width, height, channels, data } = image;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const at = (y * width + x) * channels;
      if (mode === "alpha") {
        yield data[at + channels - 1]! & 1;
      } else {
        yield data[at]! & 1;
        yield data[at + 1]! & 1;
        yield data[at + 2]! & 1;
      }
    }
  }
}

function readBytes(source: Iterator<number>, count: number): Uint8Array | undefined {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    let byte = 0;
    for (let b = 0; b < 8; b++) {
      const next = source.next();
      if (next.done) return undefined;
      byte = (byte << 1) | next.value;
    }
    out[i] = byte;
  }
  return out;
}

/**
 * Finds stealth-pnginfo text in decoded pixels, or undefined when there is none. Throws
 * `RangeError` when the hidden data claims more than `maxBytes` (after gunzip).
 */
export function decodeStealthInfo(
  image: StealthPixels,
  options: { maxBytes?: number } = {},
): StealthInfo | undefined {
  const maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
  const modes: Array<"alpha" | "rgb"> = image.channels === 4 ? ["alpha", "rgb"] : ["rgb"];
  for (const mode of modes) {
    const source = bits(image, mode);
    const head = readBytes(source, 15);
    if (head === undefined) return undefined;
    const sig = SIGNATURES[decodeUtf8(head)];
    if (sig === undefined || sig.mode !== mode) continue;
    const lengthBytes = readBytes(source, 4);
    if (lengthBytes === undefined) return undefined;
    const bitCount = new DataView(lengthBytes.buffer).getUint32(0);
    if (bitCount / 8 > maxBytes) throw new RangeError(`stealth pnginfo claims ${bitCount} bits`);
    const payload = readBytes(source, Math.floor(bitCount / 8));
    if (payload === undefined) throw new SyntaxError("stealth pnginfo data is cut short");
    const text = sig.compressed ? decodeUtf8(gunzipCapped(payload, maxBytes)) : decodeUtf8(payload);
    return { mode, compressed: sig.compressed, text };
  }
  return undefined;
}

function gunzipCapped(data: Uint8Array, maxBytes: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  const stream = new Gunzip((chunk) => {
    total += chunk.length;
    if (total > maxBytes) throw new RangeError(`stealth pnginfo inflates past ${maxBytes} bytes`);
    parts.push(chunk);
  });
  try {
    for (let i = 0; i < data.length; i += 4096) {
      stream.push(data.subarray(i, Math.min(i + 4096, data.length)), i + 4096 >= data.length);
    }
    if (data.length === 0) stream.push(new Uint8Array(), true);
  } catch (error) {
    if (error instanceof RangeError) throw error;
    // fflate throws plain Errors ("invalid gzip data", "unexpected EOF") for damaged data.
    throw new SyntaxError(`stealth pnginfo data does not gunzip: ${(error as Error).message}`);
  }
  return concatBytes(parts);
}
