/**
 * The image preprocessing of LoRA training, as Diffusers' train_text_to_image_lora.py and the
 * book (chapter 21) write it with torchvision on PIL images:
 * `Resize(resolution, BILINEAR)` (shorter side to `resolution`, the longer one
 * `int(resolution * long / short)`, PIL's antialiased bilinear), `CenterCrop(resolution)` (or
 * `RandomCrop`), `RandomHorizontalFlip`, `ToTensor`, `Normalize([0.5], [0.5])`; every step
 * reproduced exactly (lib/image/pil_resample.ts is Pillow's resampler bit for bit).
 *
 * @module
 */
import { decodeImage, type RawImage, roundHalfEven } from "../image/codec.ts";
import { cropImage } from "../image/crop.ts";
import { pilResize } from "../image/pil_resample.ts";

const f32 = Math.fround;

/** How the square is cut from the resized image. */
export type CropMode = "center" | "random";

/** A preprocessed training image before flipping. */
export interface TrainingImage {
  /** RGB pixels of the final size. */
  pixels: RawImage;
  /** Size of the decoded image (SDXL's `original_size`), as `[height, width]`. */
  originalSize: [number, number];
  /** Top-left corner of the crop in the resized image (SDXL's `crops_coords_top_left`). */
  cropTopLeft: [number, number];
}

/**
 * Decodes an image file to RGB as PIL's `Image.convert("RGB")` does: alpha is dropped, not
 * composited.
 *
 * @example
 * ```ts ignore
 * const rgb = await decodeTrainingImage(await Deno.readFile("cat.png"), "cat.png");
 * ```
 */
export async function decodeTrainingImage(bytes: Uint8Array, label: string): Promise<RawImage> {
  const rgba = await decodeImage(bytes, { channels: 4, label });
  const n = rgba.width * rgba.height;
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    data[i * 3] = rgba.data[i * 4]!;
    data[i * 3 + 1] = rgba.data[i * 4 + 1]!;
    data[i * 3 + 2] = rgba.data[i * 4 + 2]!;
  }
  return { width: rgba.width, height: rgba.height, channels: 3, data };
}

/**
 * torchvision's `Resize(size)` output size for an int size: the shorter side becomes `size`,
 * the longer `int(size * long / short)`. Returns `[width, height]`.
 *
 * @example
 * ```ts
 * import { resizedSize } from "./image_transform.ts";
 * console.assert(resizedSize(640, 480, 512).join() === "682,512");
 * ```
 */
export function resizedSize(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.trunc(size * height / width)];
  return [Math.trunc(size * width / height), size];
}

/**
 * Resize the shorter side to `resolution` (PIL bilinear), then cut a `resolution` square from
 * the centre (torchvision `CenterCrop`: offsets `round((H - h) / 2)` with Python's rounding) or
 * at `randomOffset(maxY + 1)`, `randomOffset(maxX + 1)` (torchvision `RandomCrop`'s two
 * `randint` draws, top then left).
 *
 * @example
 * ```ts
 * import { squareCrop } from "./image_transform.ts";
 * const image = { width: 4, height: 2, channels: 3 as const, data: new Uint8Array(24) };
 * const out = squareCrop(image, 2, "center");
 * console.assert(out.pixels.width === 2 && out.cropTopLeft.join() === "0,1");
 * ```
 */
export function squareCrop(
  image: RawImage,
  resolution: number,
  mode: CropMode,
  randomOffset?: (n: number) => number,
): TrainingImage {
  const [w, h] = resizedSize(image.width, image.height, resolution);
  const resized = pilResize(image, w, h, "bilinear");
  let top: number;
  let left: number;
  if (mode === "center") {
    top = roundHalfEven((h - resolution) / 2);
    left = roundHalfEven((w - resolution) / 2);
  } else {
    if (randomOffset === undefined) throw new RangeError("A random crop needs a random source");
    top = randomOffset(h - resolution + 1);
    left = randomOffset(w - resolution + 1);
  }
  const pixels = cropImage(resized, {
    x1: left,
    y1: top,
    x2: left + resolution,
    y2: top + resolution,
  });
  return { pixels, originalSize: [image.height, image.width], cropTopLeft: [top, left] };
}

/**
 * The image mirrored left to right (`RandomHorizontalFlip` when it flips).
 *
 * @example
 * ```ts
 * import { flipHorizontal } from "./image_transform.ts";
 * const f = flipHorizontal({ width: 2, height: 1, channels: 3, data: Uint8Array.of(1, 2, 3, 4, 5, 6) });
 * console.assert(f.data.join() === "4,5,6,1,2,3");
 * ```
 */
export function flipHorizontal(image: RawImage): RawImage {
  const { width, height, channels: c } = image;
  const data = new Uint8Array(image.data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (y * width + x) * c;
      const to = (y * width + (width - 1 - x)) * c;
      for (let k = 0; k < c; k++) data[to + k] = image.data[from + k]!;
    }
  }
  return { ...image, data };
}

/**
 * `Normalize([0.5], [0.5])(ToTensor()(image))` as a `[3, H, W]` float32 tensor: `(x / 255 -
 * 0.5) / 0.5`, each operation rounded to float32 as torch does.
 *
 * @example
 * ```ts
 * import { pixelsToTensor } from "./image_transform.ts";
 * const t = pixelsToTensor({ width: 1, height: 1, channels: 3, data: Uint8Array.of(0, 255, 128) });
 * console.assert(t[0] === -1 && t[1] === 1 && Math.abs(t[2]! - 0.00392) < 1e-5);
 * ```
 */
export function pixelsToTensor(image: RawImage): Float32Array {
  const { width, height, channels: c, data } = image;
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let k = 0; k < 3; k++) {
      const v = f32(data[i * c + Math.min(k, c - 1)]! / 255);
      out[k * plane + i] = f32(f32(v - 0.5) / 0.5);
    }
  }
  return out;
}
