/**
 * GIF comment extensions (GIF89a, section 24: `0x21 0xFE`, then data sub-blocks of at most 255
 * bytes, then a zero-length block): reading every comment of a file, and adding comments right
 * after the header and global colour table, before the first frame. Image data is copied byte
 * for byte. Comments are written as UTF-8 (the spec asks for 7-bit ASCII; JSON escapes nothing).
 * Reference: https://www.w3.org/Graphics/GIF/spec-gif89a.txt
 *
 * @module
 */
import { concatBytes, decodeLatin1, decodeUtf8, encodeUtf8 } from "./text.ts";

function isGif(bytes: Uint8Array): boolean {
  const head = decodeLatin1(bytes.subarray(0, 6));
  return head === "GIF87a" || head === "GIF89a";
}

/** Offset of the first block after the header, screen descriptor and global colour table. */
function firstBlock(bytes: Uint8Array): number {
  if (!isGif(bytes) || bytes.length < 13) throw new SyntaxError("not a GIF file");
  const flags = bytes[10]!;
  return 13 + ((flags & 0x80) !== 0 ? 3 * (2 << (flags & 7)) : 0);
}

/** Skips data sub-blocks starting at `at`; returns the offset after the terminator. */
function skipSubBlocks(bytes: Uint8Array, at: number): number {
  while (at < bytes.length) {
    const size = bytes[at]!;
    at += 1 + size;
    if (size === 0) return at;
  }
  throw new SyntaxError("GIF is truncated inside a data block");
}

/**
 * Every comment extension of a GIF, in file order (decoded as UTF-8). Throws a SyntaxError for a
 * file that is not a GIF or is truncated.
 *
 * @example
 * ```ts
 * import { addGifComments, readGifComments } from "./gif.ts";
 * const gif = Uint8Array.of(...new TextEncoder().encode("GIF89a"), 1, 0, 1, 0, 0, 0, 0, 0x3b);
 * console.assert(readGifComments(addGifComments(gif, ["hi"]))[0] === "hi");
 * ```
 */
export function readGifComments(bytes: Uint8Array): string[] {
  const comments: string[] = [];
  let at = firstBlock(bytes);
  while (at < bytes.length) {
    const kind = bytes[at]!;
    if (kind === 0x3b) break;
    if (kind === 0x21) {
      const label = bytes[at + 1];
      const start = at + 2;
      at = skipSubBlocks(bytes, start);
      if (label === 0xfe) {
        const parts: Uint8Array[] = [];
        for (let p = start; bytes[p]! !== 0; p += 1 + bytes[p]!) {
          parts.push(bytes.subarray(p + 1, p + 1 + bytes[p]!));
        }
        comments.push(decodeUtf8(concatBytes(parts)));
      }
    } else if (kind === 0x2c) {
      // Image descriptor (10 bytes), local colour table, LZW code size, image data.
      if (at + 10 > bytes.length) throw new SyntaxError("GIF is truncated in an image descriptor");
      const flags = bytes[at + 9]!;
      at += 10 + ((flags & 0x80) !== 0 ? 3 * (2 << (flags & 7)) : 0) + 1;
      at = skipSubBlocks(bytes, at);
    } else {
      throw new SyntaxError(`GIF has an unknown block 0x${kind.toString(16)} at byte ${at}`);
    }
  }
  return comments;
}

/** One comment extension block. */
function commentBlock(text: string): Uint8Array {
  const data = encodeUtf8(text);
  const parts: Uint8Array[] = [Uint8Array.of(0x21, 0xfe)];
  for (let i = 0; i < data.length; i += 255) {
    const piece = data.subarray(i, i + 255);
    parts.push(Uint8Array.of(piece.length), piece);
  }
  parts.push(Uint8Array.of(0));
  return concatBytes(parts);
}

/**
 * The GIF with comment extensions added before its first block (in the given order).
 *
 * @example
 * ```ts
 * import { addGifComments, readGifComments } from "./gif.ts";
 * const gif = Uint8Array.of(...new TextEncoder().encode("GIF87a"), 1, 0, 1, 0, 0, 0, 0, 0x3b);
 * const out = addGifComments(gif, ["a", "b"]);
 * console.assert(readGifComments(out).join() === "a,b");
 * ```
 */
export function addGifComments(bytes: Uint8Array, comments: readonly string[]): Uint8Array {
  const at = firstBlock(bytes);
  // Comment extensions are GIF89a; an 87a file becomes 89a.
  const head = bytes.slice(0, at);
  head.set(encodeUtf8("GIF89a"), 0);
  return concatBytes([head, ...comments.map(commentBlock), bytes.subarray(at)]);
}
