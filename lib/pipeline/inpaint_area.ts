/**
 * A1111's "Inpaint area: Only masked" (`--inpaint-full-res`): inpaint a crop around the mask at
 * the processing size and paste it back. Read from A1111 modules/processing.py
 * (`StableDiffusionProcessingImg2Img.init`, `apply_overlay`) and modules/masking.py
 * (`get_crop_region_v2`, `expand_crop_region`):
 * 1. blur the mask (A1111 mask blur) at image size;
 * 2. the crop region: the bounding box of the blurred mask's non-zero pixels, padded, clamped to
 *    the image, then grown to the processing aspect ratio;
 * 3. crop the image and the blurred mask and resize both to the processing size (Lanczos);
 * 4. inpaint that (no second blur, no overlay at the processing size);
 * 5. resize each result back to the crop size, paste it at the crop's corner, and composite it
 *    over the original through the blurred mask (not doubled, unlike whole-image inpainting), so
 *    every pixel outside the crop region (and wherever the blurred mask is 0) is the original.
 *
 * Resizing uses a plain stretch (sharp "fill"); A1111's "resize and fill" / "crop and resize"
 * modes differ only when the expanded region cannot reach the processing aspect ratio exactly
 * (integer rounding, or a region clamped by the image's edges). A blank mask falls back to
 * whole-image inpainting, as A1111 1.8+ does.
 *
 * @module
 */
import { imageToTensor, type RawImage, resizeImage, tensorToImage } from "../image/codec.ts";
import { cropImage, cropMask, type CropRegion, pasteImage } from "../image/crop.ts";
import { blurMask, compositeThroughMask, type MaskImage } from "../image/mask.ts";
import { inpaint, type InpaintParams, type InpaintResult } from "./inpaint.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/**
 * The bounding box of a mask's non-zero pixels grown by `pad` on every side and clamped to the
 * mask (A1111 `get_crop_region_v2`); undefined for a mask with no non-zero pixel.
 *
 * @example
 * ```ts
 * import { maskCropRegion } from "./inpaint_area.ts";
 * const data = new Uint8Array(16);
 * data[1 * 4 + 2] = 255; // (x 2, y 1)
 * const r = maskCropRegion({ width: 4, height: 4, data }, 1);
 * console.assert(r?.x1 === 1 && r.y1 === 0 && r.x2 === 4 && r.y2 === 3);
 * ```
 */
export function maskCropRegion(mask: MaskImage, pad: number): CropRegion | undefined {
  if (!Number.isInteger(pad) || pad < 0) {
    throw new RangeError(`Masked area padding must be an integer >= 0, got ${pad}`);
  }
  const { width, height, data } = mask;
  let [x1, y1, x2, y2] = [width, height, 0, 0];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[y * width + x] === 0) continue;
      if (x < x1) x1 = x;
      if (x + 1 > x2) x2 = x + 1;
      if (y < y1) y1 = y;
      if (y + 1 > y2) y2 = y + 1;
    }
  }
  if (x2 === 0) return undefined;
  return {
    x1: Math.max(x1 - pad, 0),
    y1: Math.max(y1 - pad, 0),
    x2: Math.min(x2 + pad, width),
    y2: Math.min(y2 + pad, height),
  };
}

/**
 * Grows one side of a region to `desired` and shifts it back inside `[0, limit]` (A1111
 * `expand_crop_region`, one axis): the growth is split floor-half before, the rest after.
 */
function growAxis(a: number, b: number, desired: number, limit: number): [number, number] {
  const diff = Math.trunc(desired - (b - a));
  a -= Math.floor(diff / 2);
  b += diff - Math.floor(diff / 2);
  if (b >= limit) {
    const over = b - limit;
    b -= over;
    a -= over;
  }
  if (a < 0) {
    b -= a;
    a = 0;
  }
  return [a, Math.min(b, limit)];
}

/**
 * Grows a crop region to the aspect ratio of the processing size, keeping it centred where the
 * image allows and clamped to the image (A1111 `expand_crop_region`): a region wider than the
 * processing ratio grows in height, otherwise in width.
 *
 * @example
 * ```ts
 * import { expandCropRegion } from "./inpaint_area.ts";
 * // A 128x32 region processed at 512x512 becomes 128x128.
 * const r = expandCropRegion({ x1: 100, y1: 200, x2: 228, y2: 232 }, 512, 512, 1024, 1024);
 * console.assert(r.y1 === 152 && r.y2 === 280);
 * ```
 */
export function expandCropRegion(
  region: CropRegion,
  processingWidth: number,
  processingHeight: number,
  imageWidth: number,
  imageHeight: number,
): CropRegion {
  let { x1, y1, x2, y2 } = region;
  const ratioRegion = (x2 - x1) / (y2 - y1);
  const ratioProcessing = processingWidth / processingHeight;
  if (ratioRegion > ratioProcessing) {
    [y1, y2] = growAxis(y1, y2, (x2 - x1) / ratioProcessing, imageHeight);
  } else {
    [x1, x2] = growAxis(x1, x2, (y2 - y1) * ratioProcessing, imageWidth);
  }
  return { x1, y1, x2, y2 };
}

/** Parameters of {@linkcode inpaintOnlyMasked}. */
export interface InpaintAreaParams extends InpaintParams {
  /** Pixels added around the mask's bounding box (A1111 "Masked area padding"). */
  padding: number;
  /** Processing size (default: the image's size); multiples of the VAE factor. */
  width?: number | undefined;
  height?: number | undefined;
}

/** The outcome of {@linkcode inpaintOnlyMasked}. */
export interface InpaintAreaResult extends InpaintResult {
  /** The crop region that was inpainted, or undefined when the mask was blank. */
  region?: CropRegion;
}

/**
 * Inpaints only the area around the mask at the processing size and pastes it back into the
 * image (A1111 "Inpaint area: Only masked"); the images come out at the input's size.
 */
export async function inpaintOnlyMasked(
  sd: StableDiffusion,
  p: InpaintAreaParams,
): Promise<InpaintAreaResult> {
  const [, , height, width] = p.image.dims;
  const { padding, width: pw0, height: ph0, ...base } = p;
  const [pw, ph] = [pw0 ?? width, ph0 ?? height];
  // 1. The blurred mask at image size; the inner run must not blur (or overlay) again.
  const blurred = blurMask(p.mask, p.maskBlur ?? 0);
  // 2. Crop region
  const box = maskCropRegion(blurred, padding);
  if (box === undefined) return await inpaint(sd, base);
  const region = expandCropRegion(box, pw, ph, width, height);
  const cw = region.x2 - region.x1;
  const ch = region.y2 - region.y1;
  // 3. Crop and resize to the processing size
  const original: RawImage = tensorToImage(p.image.data, width, height);
  const crop = await resizeImage(cropImage(original, region), pw, ph);
  const maskCrop = await resizeImage({ ...cropMask(blurred, region), channels: 1 }, pw, ph);
  const mask: MaskImage = { width: pw, height: ph, data: new Uint8Array(pw * ph) };
  for (let i = 0; i < pw * ph; i++) mask.data[i] = maskCrop.data[i * maskCrop.channels]!;
  // 4. Inpaint the crop
  const result = await inpaint(sd, {
    ...base,
    image: { data: imageToTensor(crop), dims: [1, 3, ph, pw] },
    mask,
    maskBlur: 0,
  });
  // 5. Back to the crop size, pasted, and composited through the blurred mask
  const images: RawImage[] = [];
  for (const made of result.images) {
    const back = await resizeImage(made, cw, ch);
    const pasted = pasteImage(original, back, region.x1, region.y1);
    images.push(compositeThroughMask(pasted, original, blurred));
  }
  return { ...result, images, region };
}
