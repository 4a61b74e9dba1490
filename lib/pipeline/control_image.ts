/**
 * Control images as Diffusers' ControlNet pipelines feed them (diffusers 0.27
 * `StableDiffusionControlNetPipeline.prepare_image`, `control_image_processor =
 * VaeImageProcessor(do_convert_rgb=True, do_normalize=False)`): the image converted to RGB as
 * PIL's `convert("RGB")` does (alpha dropped, gray replicated), resized to the output size with
 * PIL's Lanczos filter (`resample="lanczos"`, no resize when the size already matches), scaled to
 * [0, 1] with no [-1, 1] normalisation. The batch duplication for classifier-free guidance is a
 * broadcast in the ControlNet graph (`controlnet_cond` of batch 1), so one `[1, 3, H, W]` tensor
 * serves every pass.
 *
 * Also here: the control images of a run kept by SHA-256 (so a Job names its images by hash and
 * a replay can refuse one that changed), and `control_v11p_sd15_inpaint`'s control image (the
 * input with the masked pixels set to -1, as Diffusers' documentation makes it).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { InputError } from "../errors.ts";
import { decodeImage, type RawImage } from "../image/codec.ts";
import { type MaskImage, resizeNearest } from "../image/mask.ts";
import { pilResize } from "../image/pil_resample.ts";
import { type ControlnetJob, ControlUnit } from "../job/controlnet.ts";
import type { Nchw } from "../models/vae.ts";

/** The SHA-256 of some bytes, as 64 lowercase hex digits. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * RGB pixels as PIL's `Image.convert("RGB")` makes them: alpha dropped (not composited), gray
 * replicated.
 *
 * @example
 * ```ts
 * import { dropAlpha } from "./control_image.ts";
 * const rgb = dropAlpha({ width: 1, height: 1, channels: 4, data: Uint8Array.of(9, 8, 7, 0) });
 * console.assert(rgb.channels === 3 && rgb.data.join() === "9,8,7");
 * ```
 */
export function dropAlpha(image: RawImage): RawImage {
  if (image.channels === 3) return image;
  const plane = image.width * image.height;
  const out = new Uint8Array(plane * 3);
  const c = image.channels;
  for (let i = 0; i < plane; i++) {
    for (let k = 0; k < 3; k++) out[i * 3 + k] = image.data[i * c + (c <= 2 ? 0 : k)]!;
  }
  return { width: image.width, height: image.height, channels: 3, data: out };
}

/**
 * The `controlnet_cond` tensor of a control image at `width` x `height`: PIL Lanczos resize
 * (none when the size matches), then `x / 255` in float32, `[1, 3, height, width]`.
 *
 * @example
 * ```ts
 * import { controlTensor } from "./control_image.ts";
 * const image = { width: 1, height: 1, channels: 3 as const, data: Uint8Array.of(255, 0, 51) };
 * const t = controlTensor(image, 1, 1);
 * console.assert(t[0] === 1 && t[1] === 0 && t[2] === Math.fround(0.2));
 * ```
 */
export function controlTensor(image: RawImage, width: number, height: number): Float32Array {
  const rgb = pilResize(dropAlpha(image), width, height, "lanczos");
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[c * plane + i] = rgb.data[i * 3 + c]! / 255;
  }
  return out;
}

/**
 * `control_v11p_sd15_inpaint`'s control image, as Diffusers' documentation makes it
 * (`make_inpaint_condition`): the input image's pixels `/ 255`, with every pixel whose mask
 * value `/ 255` is above 0.5 set to -1 in all three channels (A1111's
 * `inpaint_global_harmonious`). `image` is the `[1, 3, H, W]` input in [-1, 1] (its 8-bit values
 * are recovered exactly); the result is `[1, 3, height, width]`, resized nearest-neighbour as
 * `F.interpolate` resizes a tensor when the size differs.
 *
 * @example
 * ```ts
 * import { inpaintControlTensor } from "./control_image.ts";
 * const image = { data: Float32Array.of(1, -1, 1, -1, 1, -1), dims: [1, 3, 1, 2] as [number, number, number, number] };
 * const mask = { width: 2, height: 1, data: Uint8Array.of(0, 255) };
 * const t = inpaintControlTensor(image, mask, 2, 1);
 * console.assert(t.join() === "1,-1,1,-1,1,-1");
 * ```
 */
export function inpaintControlTensor(
  image: Nchw,
  mask: MaskImage,
  width: number,
  height: number,
): Float32Array {
  const [, channels, h, w] = image.dims;
  if (mask.width !== w || mask.height !== h) {
    throw new RangeError(
      `Cannot make the inpaint control image: the mask is ${mask.width}x${mask.height} but the ` +
        `image is ${w}x${h}`,
    );
  }
  const plane = w * h;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const src = Math.min(c, channels - 1) * plane;
    for (let i = 0; i < plane; i++) {
      // x = v / 127.5 - 1 holds an 8-bit value v exactly enough to round back.
      const v = Math.round((image.data[src + i]! + 1) * 127.5);
      out[c * plane + i] = mask.data[i]! / 255 > 0.5 ? -1 : v / 255;
    }
  }
  if (width === w && height === h) return out;
  const resized = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    const p = resizeNearest(out.subarray(c * plane, (c + 1) * plane), w, h, width, height);
    resized.set(p, c * width * height);
  }
  return resized;
}

/** Where a control image's bytes came from. */
export interface ControlImageInput {
  bytes: Uint8Array;
  /** The file name or "stdin", for messages. */
  label: string;
}

/**
 * The control images of a run, by the SHA-256 of their file bytes: decoded once, each size made
 * once.
 *
 * @example
 * ```ts
 * import { ControlImages } from "./control_image.ts";
 * const images = new ControlImages();
 * const sha = images.add({ bytes: new Uint8Array([1]), label: "x.png" });
 * console.assert(sha.length === 64 && images.has(sha));
 * ```
 */
export class ControlImages {
  #inputs = new Map<string, ControlImageInput>();
  #decoded = new Map<string, Promise<RawImage>>();
  #tensors = new Map<string, Promise<Float32Array>>();

  /** Keeps an image's bytes; returns their SHA-256. */
  add(input: ControlImageInput): string {
    const sha = sha256Hex(input.bytes);
    if (!this.#inputs.has(sha)) this.#inputs.set(sha, input);
    return sha;
  }

  /** True when an image with this hash was added. */
  has(sha: string): boolean {
    return this.#inputs.has(sha);
  }

  /** The decoded pixels (RGB) of an added image; InputError when it is not an image. */
  decoded(sha: string): Promise<RawImage> {
    let image = this.#decoded.get(sha);
    if (image === undefined) {
      const input = this.#inputs.get(sha);
      if (input === undefined) {
        return Promise.reject(new RangeError(`No control image with SHA-256 ${sha} was read`));
      }
      image = decodeImage(input.bytes, { label: input.label, channels: 4 }).then(dropAlpha);
      this.#decoded.set(sha, image);
    }
    return image;
  }

  /** The `controlnet_cond` tensor of an added image at a size (see {@linkcode controlTensor}). */
  tensor(sha: string, width: number, height: number): Promise<Float32Array> {
    const key = `${sha}:${width}x${height}`;
    let tensor = this.#tensors.get(key);
    if (tensor === undefined) {
      tensor = this.decoded(sha).then((image) => controlTensor(image, width, height));
      this.#tensors.set(key, tensor);
    }
    return tensor;
  }
}

/**
 * Reads the control images of a Job into `images` and returns the Job with each image's SHA-256
 * recorded. `read(path)` reads a file, or stdin when `path` is undefined (a control with no
 * path). A control that already records a hash (a replayed Job) must read back the same bytes:
 * otherwise an InputError names the control, both hashes and the fix. Controls made from the
 * input image (module "inpaint") read nothing.
 */
export async function readControlImages(
  job: ControlnetJob,
  images: ControlImages,
  read: (path: string | undefined) => Promise<ControlImageInput>,
): Promise<ControlnetJob> {
  const controls = [];
  for (const [k, control] of job.controls.entries()) {
    if (control.module !== "none") {
      controls.push(control);
      continue;
    }
    const input = await read(control.image);
    const sha = images.add(input);
    if (control.sha256 !== undefined && control.sha256 !== sha) {
      throw new InputError(
        `Control image ${k + 1} (${input.label}) is not the image the job was made with: its ` +
          `SHA-256 is ${sha.slice(0, 16)}..., the job records ${control.sha256.slice(0, 16)}...`,
        { hint: "pass the original image, or give --control again to make a new image" },
      );
    }
    // Parsed again so the keys keep the schema's order (a stored Job replays byte for byte).
    controls.push(ControlUnit.parse({ ...control, sha256: sha }));
  }
  return { ...job, controls };
}
