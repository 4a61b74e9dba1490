/**
 * Content sniffing: what kind of bytes arrived on stdin or in a file, decided from the bytes
 * themselves and never from a file name.
 *
 * @module
 */

/** Formats denoise can tell apart by content. */
export type InputFormat = "png" | "jpeg" | "webp" | "gif" | "json" | "jsonl" | "unknown";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  return prefix.every((b, i) => bytes[at + i] === b);
}

function ascii(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0));
}

/** True for the image formats denoise decodes. */
export function isImageFormat(format: InputFormat): format is "png" | "jpeg" | "webp" | "gif" {
  return format === "png" || format === "jpeg" || format === "webp" || format === "gif";
}

/**
 * Identifies PNG, JPEG, WebP, GIF, JSON and JSON lines by their first bytes (and, for text, by
 * parsing it).
 *
 * @example
 * ```ts
 * import { sniffFormat } from "./sniff.ts";
 * const json = new TextEncoder().encode('{"prompt": "a cat"}');
 * console.assert(sniffFormat(json) === "json");
 * ```
 */
export function sniffFormat(bytes: Uint8Array): InputFormat {
  if (startsWith(bytes, PNG_SIGNATURE)) return "png";
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "jpeg";
  if (startsWith(bytes, ascii("RIFF")) && startsWith(bytes, ascii("WEBP"), 8)) return "webp";
  if (startsWith(bytes, ascii("GIF87a")) || startsWith(bytes, ascii("GIF89a"))) return "gif";
  return sniffText(bytes);
}

function sniffText(bytes: Uint8Array): InputFormat {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return "unknown";
  }
  const trimmed = text.trim();
  if (trimmed === "" || (trimmed[0] !== "{" && trimmed[0] !== "[")) return "unknown";
  try {
    JSON.parse(trimmed);
    return "json";
  } catch {
    // Not one document; maybe one document per line.
  }
  const lines = trimmed.split(/\r?\n/).filter((line) => line.trim() !== "");
  if (lines.length < 2) return "unknown";
  for (const line of lines) {
    try {
      JSON.parse(line);
    } catch {
      return "unknown";
    }
  }
  return "jsonl";
}

/** A short human description of a format, for error messages. */
export function describeFormat(format: InputFormat): string {
  switch (format) {
    case "png":
      return "a PNG image";
    case "jpeg":
      return "a JPEG image";
    case "webp":
      return "a WebP image";
    case "gif":
      return "a GIF image";
    case "json":
      return "a JSON document";
    case "jsonl":
      return "JSON lines";
    case "unknown":
      return "data of an unknown format";
  }
}
