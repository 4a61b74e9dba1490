/**
 * Image decoding and encoding with sharp (the only module that imports it), plus the conversions
 * between 8-bit pixels and the [-1, 1] NCHW float tensors the VAE uses.
 *
 * @module
 */
import { crc32 } from "node:zlib";
import sharp from "sharp";
import { InputError } from "../errors.ts";

/** Decoded 8-bit pixels, interleaved (HWC), top row first. */
export interface RawImage {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

/** Output formats denoise writes. */
export type ImageFormat = "png" | "jpeg" | "webp";

/** Largest image denoise decodes, in pixels (sharp's default guard against pixel bombs). */
export const MAX_PIXELS = 268_402_689;

/** Options for {@linkcode decodeImage}. */
export interface DecodeImageOptions {
  /** Where the bytes came from, for messages. */
  label?: string;
  /** Channels wanted: 3 drops alpha (flattening onto `background`), 4 adds an opaque alpha. */
  channels?: 3 | 4;
  /** Background used when flattening alpha, default white like A1111. */
  background?: { r: number; g: number; b: number };
}

/**
 * Decodes PNG, JPEG, WebP or GIF (first frame) bytes into 8-bit RGB(A) pixels.
 * Throws {@linkcode InputError} when the bytes are not a decodable image.
 */
export async function decodeImage(
  bytes: Uint8Array,
  options: DecodeImageOptions = {},
): Promise<RawImage> {
  const label = options.label ?? "input";
  const channels = options.channels ?? 3;
  try {
    let pipeline = sharp(bytes, { limitInputPixels: MAX_PIXELS, failOn: "error" }).rotate();
    pipeline = channels === 3
      ? pipeline.flatten({ background: options.background ?? { r: 255, g: 255, b: 255 } })
      : pipeline.ensureAlpha();
    const { data, info } = await pipeline.toColourspace("srgb").raw().toBuffer({
      resolveWithObject: true,
    });
    return {
      width: info.width,
      height: info.height,
      channels: info.channels as 3 | 4,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    };
  } catch (error) {
    // libvips says "Unknown error" or "libpng read error" for a damaged PNG; say what is wrong.
    const damage = pngDamage(bytes);
    if (damage !== undefined) {
      throw new InputError(`Cannot decode the image from ${label}: ${damage}`, {
        hint:
          "the file is damaged (cut short or corrupted in transfer); export or download it again",
        cause: error,
      });
    }
    throw new InputError(`Cannot decode the image from ${label}: ${firstLine(error)}`, {
      hint: "pass a PNG, JPEG, WebP or GIF image",
      cause: error,
    });
  }
}

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/**
 * The first structural problem of a PNG (a chunk cut short, a bad CRC, no IEND), or undefined
 * when the bytes are not a PNG or none is found. Only called when decoding failed.
 */
export function pngDamage(bytes: Uint8Array): string | undefined {
  if (bytes.length < 8 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 8;
  while (at + 12 <= bytes.length) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (!/^[A-Za-z]{4}$/.test(type)) return `the PNG chunk at byte ${at} has an invalid type`;
    if (at + 12 + length > bytes.length) {
      return `the PNG is cut short: chunk "${type}" at byte ${at} claims ${length} bytes but ` +
        `only ${bytes.length - at - 12} remain`;
    }
    const stored = view.getUint32(at + 8 + length);
    if (crc32(bytes.subarray(at + 4, at + 8 + length)) !== stored) {
      return `PNG chunk "${type}" at byte ${at} fails its CRC check`;
    }
    if (type === "IEND") return undefined;
    at += 12 + length;
  }
  return "the PNG is cut short: the IEND chunk is missing";
}

/** Options for {@linkcode encodeImage}. */
export interface EncodeImageOptions {
  /** JPEG/WebP quality 1..100 (default 95). */
  quality?: number;
}

/** Encodes raw pixels as PNG, JPEG or WebP. */
export async function encodeImage(
  image: RawImage,
  format: ImageFormat,
  options: EncodeImageOptions = {},
): Promise<Uint8Array> {
  const quality = options.quality ?? 95;
  let pipeline = sharp(image.data, {
    raw: { width: image.width, height: image.height, channels: image.channels },
  });
  if (format === "png") pipeline = pipeline.png({ compressionLevel: 6 });
  else if (format === "jpeg") pipeline = pipeline.jpeg({ quality, chromaSubsampling: "4:4:4" });
  else pipeline = pipeline.webp({ quality });
  const buffer = await pipeline.toBuffer();
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** Resizes raw pixels with Lanczos (downscale) or the given kernel. */
export async function resizeImage(
  image: RawImage,
  width: number,
  height: number,
  options: { kernel?: "nearest" | "cubic" | "lanczos3" | "linear" } = {},
): Promise<RawImage> {
  const { data, info } = await sharp(image.data, {
    raw: { width: image.width, height: image.height, channels: image.channels },
  }).resize(width, height, { kernel: options.kernel ?? "lanczos3", fit: "fill" }).raw()
    .toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    height: info.height,
    channels: info.channels as RawImage["channels"],
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

/**
 * Pixels to a [1, C, H, W] float tensor in [-1, 1] (`x / 127.5 - 1`), as Diffusers'
 * VaeImageProcessor does (`x / 255`, then `2x - 1`).
 */
export function imageToTensor(image: RawImage, channels = 3): Float32Array {
  const { width, height, data } = image;
  const plane = width * height;
  const out = new Float32Array(channels * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < channels; c++) {
      const v = data[i * image.channels + Math.min(c, image.channels - 1)]! / 255;
      out[c * plane + i] = 2 * v - 1;
    }
  }
  return out;
}

/**
 * A [C, H, W] float tensor in [-1, 1] to 8-bit pixels, as Diffusers' postprocess does:
 * `(x / 2 + 0.5).clamp(0, 1)`, then `round(x * 255)`.
 */
export function tensorToImage(
  tensor: Float32Array,
  width: number,
  height: number,
  channels: 3 | 4 = 3,
): RawImage {
  const plane = width * height;
  if (tensor.length < channels * plane) {
    throw new TypeError(
      `Cannot convert a tensor of ${tensor.length} values to a ${width}x${height}x${channels} image`,
    );
  }
  const data = new Uint8Array(plane * channels);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < channels; c++) {
      // float32 arithmetic and numpy's round-half-to-even, as Diffusers' numpy_to_pil does.
      const v = Math.min(
        1,
        Math.max(0, Math.fround(Math.fround(tensor[c * plane + i]! / 2) + 0.5)),
      );
      data[i * channels + c] = roundHalfEven(Math.fround(v * 255));
    }
  }
  return { width, height, channels, data };
}

/** Rounds to the nearest integer, ties to even (numpy's `round`). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0] ?? message;
}
