/**
 * Upscaling images. ESRGAN-family networks: open one from a .pth/.safetensors file, run it tile
 * by tile with blended overlaps, and treat grey, alpha, 16-bit and any output scale as
 * Real-ESRGAN does. And `runUpscale`, what `denoise upscale` calls: a table of modes (esrgan,
 * img2img super-resolution on a Stable Diffusion model through lib/pipeline, the same guided by
 * the tile ControlNet, Lanczos), the pixel
 * limit, and the Job chain (the input's Job kept under `source`).
 *
 * @example
 * ```ts ignore
 * import { openUpscaler, upscaleImage } from "./mod.ts";
 * import { decodeFloatImage, encodeFloatImage } from "../image/codec.ts";
 * const upscaler = await openUpscaler("4x-UltraSharp.pth");
 * const image = await decodeFloatImage(await Deno.readFile("in.png"));
 * const big = await upscaleImage(upscaler, image, { tile: 256 });
 * await Deno.writeFile("out.png", await encodeFloatImage(big, "png"));
 * await upscaler.release();
 * ```
 *
 * @module
 */
export * from "./upscaler.ts";
export * from "./tiled.ts";
export * from "./upscale_image.ts";
export * from "./pixels.ts";
export * from "./resolve.ts";
export * from "./model_upscaler.ts";
export * from "./img2img_upscale.ts";
export * from "./controlnet_tile.ts";
export * from "./modes.ts";
export * from "./run.ts";
