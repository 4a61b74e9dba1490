/**
 * Aspect-ratio buckets as kohya-ss sd-scripts make them (library/model_util.py
 * `make_bucket_resolutions`, library/train_util.py `BucketManager.select_bucket` and
 * `trim_and_resize_if_required`): sizes of about `resolution^2` pixels whose sides are multiples
 * of 64 between 256 and 1024; each image goes to the bucket of the nearest aspect ratio, is
 * scaled so that it covers the bucket, and the overhang is cut evenly from both sides.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { cropImage } from "../image/crop.ts";
import { pilResize } from "../image/pil_resample.ts";
import { resizeArea } from "../image/resize_area.ts";
import type { TrainingImage } from "./image_transform.ts";

/** Options of {@linkcode bucketResolutions}. */
export interface BucketOptions {
  /** Smallest side (default 256). */
  minSize?: number;
  /** Largest side (default 1024). */
  maxSize?: number;
  /** Sides are multiples of this (default 64). */
  step?: number;
}

/**
 * The bucket sizes `[width, height]` for a `resolution` square's area, sorted.
 *
 * @example
 * ```ts
 * import { bucketResolutions } from "./buckets.ts";
 * const b = bucketResolutions(512);
 * console.assert(b.some(([w, h]) => w === 512 && h === 512) && b.some(([w, h]) => w === 768 && h === 320));
 * ```
 */
export function bucketResolutions(
  resolution: number,
  options: BucketOptions = {},
): Array<[number, number]> {
  const minSize = options.minSize ?? 256;
  const maxSize = options.maxSize ?? 1024;
  const step = options.step ?? 64;
  const area = resolution * resolution;
  const seen = new Set<string>();
  const out: Array<[number, number]> = [];
  const add = (w: number, h: number) => {
    if (seen.has(`${w}x${h}`)) return;
    seen.add(`${w}x${h}`);
    out.push([w, h]);
  };
  const side = Math.trunc(Math.sqrt(area) / step) * step;
  add(side, side);
  for (let w = minSize; w <= maxSize; w += step) {
    const h = Math.min(maxSize, Math.trunc(Math.floor(area / w) / step) * step);
    if (h >= minSize) {
      add(w, h);
      add(h, w);
    }
  }
  return out.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/**
 * The bucket of the aspect ratio nearest the image's (first one on ties, as numpy's argmin).
 *
 * @example
 * ```ts
 * import { bucketResolutions, selectBucket } from "./buckets.ts";
 * console.assert(selectBucket(bucketResolutions(512), 1920, 1080).join() === "640,384");
 * ```
 */
export function selectBucket(
  buckets: ReadonlyArray<readonly [number, number]>,
  width: number,
  height: number,
): [number, number] {
  const ratio = width / height;
  let best = 0;
  let bestError = Infinity;
  buckets.forEach(([w, h], i) => {
    const error = Math.abs(w / h - ratio);
    if (error < bestError) {
      bestError = error;
      best = i;
    }
  });
  const [w, h] = buckets[best]!;
  return [w, h];
}

/**
 * Scales the image to cover `bucket` (`int(side * scale + 0.5)`, area averaging when shrinking)
 * and cuts the overhang evenly (kohya's centre trim).
 *
 * @example
 * ```ts
 * import { fitToBucket } from "./buckets.ts";
 * const image = { width: 300, height: 100, channels: 3 as const, data: new Uint8Array(90000) };
 * const fit = fitToBucket(image, [128, 64]); // scaled to 192 x 64, 32 px cut from each side
 * console.assert(fit.pixels.width === 128 && fit.cropTopLeft.join() === "0,32");
 * ```
 */
export function fitToBucket(image: RawImage, bucket: readonly [number, number]): TrainingImage {
  const [bw, bh] = bucket;
  const ratio = image.width / image.height;
  const scale = ratio > bw / bh ? bh / image.height : bw / image.width;
  const rw = Math.max(bw, Math.trunc(image.width * scale + 0.5));
  const rh = Math.max(bh, Math.trunc(image.height * scale + 0.5));
  let resized = image;
  if (rw !== image.width || rh !== image.height) {
    resized = rw <= image.width && rh <= image.height
      ? resizeArea(image, rw, rh)
      : pilResize(image, rw, rh, "bilinear");
  }
  const left = Math.floor((rw - bw) / 2);
  const top = Math.floor((rh - bh) / 2);
  const pixels = cropImage(resized, { x1: left, y1: top, x2: left + bw, y2: top + bh });
  return { pixels, originalSize: [image.height, image.width], cropTopLeft: [top, left] };
}
