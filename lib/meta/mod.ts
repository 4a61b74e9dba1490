/**
 * Image generation metadata: PNG text chunks, EXIF UserComment / XMP in JPEG and WebP,
 * A1111 infotext, ComfyUI / InvokeAI / NovelAI / Fooocus JSON and denoise's own Job chunk.
 *
 * @example
 * ```ts
 * import { formatInfotext, parseInfotext } from "./mod.ts";
 * const text = formatInfotext({ prompt: "a fox", negativePrompt: "", params: { Steps: "20" }, extraLines: [] });
 * console.assert(parseInfotext(text).params["Steps"] === "20");
 * ```
 *
 * @module
 */
export * from "./a1111.ts";
export * from "./crc32.ts";
export * from "./exif.ts";
export * from "./encode.ts";
export * from "./jpeg.ts";
export * from "./json_text.ts";
export * from "./png.ts";
export * from "./read.ts";
export * from "./webp.ts";
export * from "./write.ts";
export * from "./stealth.ts";
export * from "./animation.ts";
export * from "./apng.ts";
export * from "./gif.ts";
