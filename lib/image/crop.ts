/**
 * Rectangles of images and masks: cropping, pasting back, and the mask composite A1111 uses for
 * "Inpaint area: Only masked" (modules/processing.py `apply_overlay` with `paste_to`, where the
 * overlay mask is the blurred mask itself, not doubled).
 *
 * @module
 */
import type { RawImage } from "./codec.ts";
import type { MaskImage } from "./mask.ts";

/** A rectangle `[x1, x2) x [y1, y2)` in pixels, as A1111's `(x1, y1, x2, y2)` crop regions. */
export interface CropRegion {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

function checkRegion(r: CropRegion, width: number, height: number): void {
  const ok = [r.x1, r.y1, r.x2, r.y2].every(Number.isInteger) && r.x1 >= 0 && r.y1 >= 0 &&
    r.x2 <= width && r.y2 <= height && r.x1 < r.x2 && r.y1 < r.y2;
  if (!ok) {
    throw new RangeError(
      `Crop region (${r.x1}, ${r.y1}, ${r.x2}, ${r.y2}) does not fit a ${width}x${height} image; pass integers with 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height`,
    );
  }
}

/** The pixels of `region` (PIL `Image.crop` inside the image). */
export function cropImage(image: RawImage, region: CropRegion): RawImage {
  checkRegion(region, image.width, image.height);
  const { x1, y1, x2, y2 } = region;
  const c = image.channels;
  const w = x2 - x1;
  const data = new Uint8Array(w * (y2 - y1) * c);
  for (let y = y1; y < y2; y++) {
    const from = (y * image.width + x1) * c;
    data.set(image.data.subarray(from, from + w * c), (y - y1) * w * c);
  }
  return { width: w, height: y2 - y1, channels: c, data };
}

/** The values of `region` of a mask. */
export function cropMask(mask: MaskImage, region: CropRegion): MaskImage {
  const { width, height, data } = cropImage({ ...mask, channels: 1 }, region);
  return { width, height, data };
}

/**
 * A copy of `base` with `patch` pasted at `(x, y)`; the patch must lie inside `base` and have
 * the same number of channels.
 */
export function pasteImage(base: RawImage, patch: RawImage, x: number, y: number): RawImage {
  checkRegion(
    { x1: x, y1: y, x2: x + patch.width, y2: y + patch.height },
    base.width,
    base.height,
  );
  if (patch.channels !== base.channels) {
    throw new TypeError(
      `Cannot paste a ${patch.channels}-channel image into a ${base.channels}-channel one; convert it first`,
    );
  }
  const c = base.channels;
  const data = new Uint8Array(base.data);
  for (let row = 0; row < patch.height; row++) {
    const from = row * patch.width * c;
    data.set(patch.data.subarray(from, from + patch.width * c), ((y + row) * base.width + x) * c);
  }
  return { width: base.width, height: base.height, channels: c, data };
}
