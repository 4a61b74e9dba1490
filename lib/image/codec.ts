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

/** Animated formats sharp writes. */
export type AnimationFormat = "webp" | "gif";

/** Options for {@linkcode encodeAnimation}. */
export interface EncodeAnimationOptions {
  /**
   * Frames per second: each WebP frame is shown `round(1000 / fps)` ms, each GIF frame
   * `round(100 / fps)` hundredths of a second (GIF's unit).
   */
  fps: number;
  /** WebP quality 1..100 (default 95). */
  quality?: number;
  /** Times to play, 0 = forever (default). */
  loop?: number;
}

/**
 * Encodes frames of one size as an animated WebP or GIF (one frame = one page of a tall image,
 * as libvips stores animations). GIF frames get a palette each, with libvips' dithering; libwebp
 * merges a frame identical to the one before into a longer delay.
 *
 * @example
 * ```ts
 * import { encodeAnimation } from "./codec.ts";
 * const frame = (v: number) => ({ width: 2, height: 2, channels: 3 as const, data: new Uint8Array(12).fill(v) });
 * const webp = await encodeAnimation([frame(0), frame(255)], "webp", { fps: 8 });
 * console.assert(new TextDecoder().decode(webp.subarray(8, 12)) === "WEBP");
 * ```
 */
export async function encodeAnimation(
  frames: readonly RawImage[],
  format: AnimationFormat,
  options: EncodeAnimationOptions,
): Promise<Uint8Array> {
  const first = frames[0];
  if (first === undefined) throw new RangeError("Cannot encode an animation of no frames");
  if (!(options.fps > 0) || !Number.isFinite(options.fps)) {
    throw new RangeError(`Frame rate must be a positive number, got ${options.fps}`);
  }
  const { width, height, channels } = first;
  const frameBytes = width * height * channels;
  const data = new Uint8Array(frames.length * frameBytes);
  frames.forEach((f, k) => {
    if (f.width !== width || f.height !== height || f.channels !== channels) {
      throw new TypeError(
        `Cannot encode an animation of frames of different sizes: frame ${k} is ` +
          `${f.width}x${f.height}x${f.channels}, frame 0 ${width}x${height}x${channels}`,
      );
    }
    data.set(f.data.subarray(0, frameBytes), k * frameBytes);
  });
  // WebP counts milliseconds; GIF counts hundredths of a second, so its delay is rounded to 10 ms.
  const ms = format === "gif"
    ? 10 * Math.max(1, Math.round(100 / options.fps))
    : Math.max(1, Math.round(1000 / options.fps));
  const delay = new Array<number>(frames.length).fill(ms);
  const loop = options.loop ?? 0;
  const pipeline = sharp(data, {
    raw: { width, height: height * frames.length, channels, pageHeight: height },
  });
  const buffer = format === "webp"
    ? await pipeline.webp({ quality: options.quality ?? 95, loop, delay }).toBuffer()
    : await pipeline.gif({ loop, delay, keepDuplicateFrames: true }).toBuffer();
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

// ---------------------------------------------------------------------------------------------
// Float images: any channel layout and bit depth, for models that work on [0, 1] pixels

/**
 * Pixels as float32 in [0, 1], planar (all of channel 0, then channel 1, ...), top row first.
 * Keeps what the file had: grey or colour, alpha or not, 8 or 16 bits per sample.
 */
export interface FloatImage {
  width: number;
  height: number;
  /** 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
  /** Bits per sample of the source: what {@linkcode encodeFloatImage} writes back to PNG. */
  bitDepth: 8 | 16;
  /** `channels * height * width` values, planar. */
  data: Float32Array;
}

/** Options of {@linkcode decodeFloatImage}. */
export interface DecodeFloatImageOptions {
  /** Where the bytes came from, for messages. */
  label?: string;
}

/**
 * Decodes PNG, JPEG, WebP, GIF or TIFF bytes keeping their layout: grey stays grey, alpha is kept,
 * 16-bit samples are read as 16-bit (`v / 65535`; 8-bit as `v / 255`). CMYK becomes RGB.
 * Throws {@linkcode InputError} when the bytes are not a decodable image or exceed
 * {@linkcode MAX_PIXELS}.
 *
 * @example
 * ```ts
 * import { decodeFloatImage, encodeFloatImage } from "./codec.ts";
 * const grey16 = { width: 2, height: 1, channels: 1, bitDepth: 16, data: Float32Array.of(0, 1) } as const;
 * const back = await decodeFloatImage(await encodeFloatImage(grey16, "png"));
 * console.assert(back.channels === 1 && back.bitDepth === 16 && back.data[1] === 1);
 * ```
 */
export async function decodeFloatImage(
  bytes: Uint8Array,
  options: DecodeFloatImageOptions = {},
): Promise<FloatImage> {
  const label = options.label ?? "input";
  try {
    const open = () => sharp(bytes, { limitInputPixels: MAX_PIXELS, failOn: "error" });
    const meta = await open().metadata();
    const sixteen = meta.depth !== undefined && meta.depth !== "uchar" && meta.depth !== "char";
    const grey = meta.channels === 1 || meta.channels === 2;
    const alpha = meta.hasAlpha === true;
    // Grey sources are read as RGB and channel 0 kept (R = G = B): sharp's "b-w" output drops
    // the alpha of 8-bit grey images.
    let pipeline = open().rotate().toColourspace(sixteen ? "rgb16" : "srgb");
    pipeline = alpha ? pipeline.ensureAlpha() : pipeline.removeAlpha();
    const { data, info } = await pipeline.raw({ depth: sixteen ? "ushort" : "uchar" })
      .toBuffer({ resolveWithObject: true });
    const stored = alpha ? 4 : 3;
    if (info.channels !== stored) {
      throw new TypeError(`decoded ${info.channels} channels, expected ${stored}`);
    }
    const samples = sixteen
      ? uint16View(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const max = sixteen ? 65535 : 255;
    const picks = grey ? (alpha ? [0, 3] : [0]) : (alpha ? [0, 1, 2, 3] : [0, 1, 2]);
    const channels = picks.length;
    const plane = info.width * info.height;
    const out = new Float32Array(channels * plane);
    picks.forEach((from, c) => {
      for (let i = 0; i < plane; i++) out[c * plane + i] = samples[i * stored + from]! / max;
    });
    return {
      width: info.width,
      height: info.height,
      channels: channels as FloatImage["channels"],
      bitDepth: sixteen ? 16 : 8,
      data: out,
    };
  } catch (error) {
    throw new InputError(`Cannot decode the image from ${label}: ${firstLine(error)}`, {
      hint: "pass a PNG, JPEG, WebP, GIF or TIFF image",
      cause: error,
    });
  }
}

/**
 * Interleaved samples of a float image: `round(clamp(v, 0, 1) * max)` in float32 with ties to
 * even (numpy's `(x * 255.0).round()` as Real-ESRGAN writes its output).
 */
function quantize(image: FloatImage, bits: 8 | 16): Uint8Array | Uint16Array {
  const { width, height, channels, data } = image;
  const plane = width * height;
  if (data.length !== channels * plane) {
    throw new TypeError(
      `Cannot encode a ${width}x${height}x${channels} image from ${data.length} values`,
    );
  }
  const max = bits === 16 ? 65535 : 255;
  const out = bits === 16 ? new Uint16Array(channels * plane) : new Uint8Array(channels * plane);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.min(1, Math.max(0, data[c * plane + i]!));
      out[i * channels + c] = roundHalfEven(Math.fround(v * max));
    }
  }
  return out;
}

/** Options of {@linkcode encodeFloatImage}. */
export interface EncodeFloatImageOptions {
  /** JPEG/WebP quality 1..100 (default 95). */
  quality?: number;
}

/**
 * Encodes a float image, clamped to [0, 1]: PNG keeps its channels and bit depth (16-bit PNG for
 * `bitDepth` 16); JPEG and WebP are 8-bit.
 */
export async function encodeFloatImage(
  image: FloatImage,
  format: ImageFormat,
  options: EncodeFloatImageOptions = {},
): Promise<Uint8Array> {
  const sixteen = format === "png" && image.bitDepth === 16;
  const grey = image.channels <= 2;
  const samples = quantize(image, sixteen ? 16 : 8);
  let pipeline = sharp(samples, {
    raw: { width: image.width, height: image.height, channels: image.channels },
  }).toColourspace(grey ? (sixteen ? "grey16" : "b-w") : (sixteen ? "rgb16" : "srgb"));
  const quality = options.quality ?? 95;
  if (format === "png") pipeline = pipeline.png({ compressionLevel: 6 });
  else if (format === "jpeg") pipeline = pipeline.jpeg({ quality, chromaSubsampling: "4:4:4" });
  else pipeline = pipeline.webp({ quality });
  const buffer = await pipeline.toBuffer();
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/**
 * Resizes a float image channel by channel (no premultiplication, no colour management), as
 * OpenCV's `cv2.resize` does. Samples are clamped to [0, 1] and carried as 16-bit through sharp
 * (libvips resizes integer samples), so the result is exact to 1/65535.
 *
 * @example
 * ```ts
 * import { resizeFloatImage } from "./codec.ts";
 * const image = { width: 2, height: 2, channels: 1, bitDepth: 8, data: new Float32Array(4).fill(0.5) } as const;
 * const big = await resizeFloatImage(image, 5, 3);
 * console.assert(big.width === 5 && Math.abs(big.data[7]! - 0.5) < 1e-4);
 * ```
 */
export async function resizeFloatImage(
  image: FloatImage,
  width: number,
  height: number,
  options: { kernel?: "nearest" | "cubic" | "lanczos3" | "linear" } = {},
): Promise<FloatImage> {
  const plane = image.width * image.height;
  const out = new Float32Array(image.channels * width * height);
  for (let c = 0; c < image.channels; c++) {
    const samples = new Uint16Array(plane);
    for (let i = 0; i < plane; i++) {
      const v = Math.min(1, Math.max(0, image.data[c * plane + i]!));
      samples[i] = Math.round(v * 65535);
    }
    const { data, info } = await sharp(samples, {
      raw: { width: image.width, height: image.height, channels: 1 },
    }).resize(width, height, { kernel: options.kernel ?? "lanczos3", fit: "fill" })
      .toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 1 || info.width !== width || info.height !== height) {
      throw new TypeError(`sharp resized to ${info.width}x${info.height}x${info.channels}`);
    }
    const resized = uint16View(data);
    for (let i = 0; i < width * height; i++) out[c * width * height + i] = resized[i]! / 65535;
  }
  return { width, height, channels: image.channels, bitDepth: image.bitDepth, data: out };
}

/** 16-bit samples of a sharp output buffer (copied when the buffer is not 2-byte aligned). */
function uint16View(data: Uint8Array): Uint16Array {
  const bytes = data.byteOffset % 2 === 0 ? data : data.slice();
  return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
}
