/**
 * Fuzzing the image metadata readers (lib/meta): PNG chunks and text, JPEG segments, WebP
 * chunks, EXIF, A1111 infotext, stealth pnginfo, and `writeMetadata` (which reads its input).
 */
import fc from "fast-check";
import { parseInfotext, summarizeInfotext } from "../../lib/meta/a1111.ts";
import { parseExif, readExifFields } from "../../lib/meta/exif.ts";
import { readMetadata } from "../../lib/meta/read.ts";
import { decodeStealthInfo } from "../../lib/meta/stealth.ts";
import { writeMetadata } from "../../lib/meta/write.ts";
import { fuzz, mutatedBytes } from "./harness.ts";
import { jpegWebpGifSeeds, pngSeeds } from "./seeds.ts";

const PNGS = pngSeeds();
const OTHERS = await jpegWebpGifSeeds();

function readBoth(bytes: Uint8Array): void {
  readMetadata(bytes);
  const lenient = readMetadata(bytes, { lenient: true });
  // The result must be JSON-ready (meta read prints it).
  JSON.stringify(lenient);
}

Deno.test("fuzz: readMetadata() on mutated PNGs", async () => {
  await fuzz(mutatedBytes(PNGS), readBoth);
});

Deno.test("fuzz: readMetadata() on mutated JPEG, WebP and GIF files", async () => {
  await fuzz(mutatedBytes(OTHERS), readBoth);
});

Deno.test("fuzz: writeMetadata() on mutated PNG, JPEG and WebP files", async () => {
  await fuzz(mutatedBytes([...PNGS.slice(0, 3), ...OTHERS.slice(0, 3)]), (bytes) => {
    const out = writeMetadata(bytes, { set: { parameters: "x\nSteps: 1, Seed: 2, Size: 3x4" } });
    readMetadata(out);
  });
});

Deno.test("fuzz: parseExif() on mutated TIFF blocks", async () => {
  // The TIFF inside the seeds' EXIF: after "Exif\0\0" in JPEG APP1, or a PNG eXIf chunk.
  const tiffs: Uint8Array[] = [];
  for (const bytes of [...PNGS, ...OTHERS]) {
    for (let i = 0; i + 4 <= bytes.length && tiffs.length < 8; i++) {
      const le = bytes[i] === 0x49 && bytes[i + 1] === 0x49 && bytes[i + 2] === 42 &&
        bytes[i + 3] === 0;
      const be = bytes[i] === 0x4d && bytes[i + 1] === 0x4d && bytes[i + 2] === 0 &&
        bytes[i + 3] === 42;
      if (le || be) {
        tiffs.push(bytes.slice(i, i + 4096));
        break;
      }
    }
  }
  await fuzz(mutatedBytes(tiffs), (tiff) => {
    const warnings: string[] = [];
    JSON.stringify(readExifFields(parseExif(tiff, warnings)));
  });
});

const INFOTEXT_CHARS = fc.constantFrom(
  ...'ab ,:"\\\n\r\t()[]<>|{}0123456789.-_/'.split(""),
  "Negative prompt:",
  "Steps:",
  "Size: 512x768",
  "ControlNet 0:",
  "Lora hashes:",
  "Hires upscale:",
  "\u3000",
  "\u0085",
  "\ufeff",
  "テ",
  "\ud800",
);

Deno.test("fuzz: parseInfotext() and summarizeInfotext() on infotext-like text", async () => {
  const text = fc.oneof(
    fc.array(INFOTEXT_CHARS, { maxLength: 200 }).map((parts) => parts.join("")),
    fc.string({ unit: "binary", maxLength: 300 }),
    fc.nat({ max: 50_000 }).map((n) => "Steps: 1, " + '"\\'.repeat(n)),
    fc.nat({ max: 50_000 }).map((n) => "a\n".repeat(n) + "Steps: 1, Seed: 2, Size: 3x4"),
  );
  await fuzz(text, (t) => {
    const info = parseInfotext(t);
    JSON.stringify(summarizeInfotext(info.params));
  });
});

/** Alpha-LSB stealth payload: signature, 32-bit big-endian bit count, data. */
function stealthPayload(text: string, compressed: boolean): Uint8Array {
  const sig = new TextEncoder().encode(compressed ? "stealth_pngcomp" : "stealth_pnginfo");
  const data = compressed
    ? new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    : new TextEncoder().encode(text);
  const out = new Uint8Array(sig.length + 4 + data.length);
  out.set(sig);
  new DataView(out.buffer).setUint32(sig.length, data.length * 8);
  out.set(data, sig.length + 4);
  return out;
}

Deno.test("fuzz: decodeStealthInfo() on pixels carrying mutated stealth payloads", async () => {
  const seeds = [stealthPayload("a cat\nSteps: 20, Seed: 1", false), stealthPayload("", true)];
  await fuzz(mutatedBytes(seeds), (payload) => {
    // Write the payload's bits into the alpha LSBs, column by column, of a 64x64 RGBA image.
    const size = 64;
    const data = new Uint8Array(size * size * 4).fill(255);
    let bit = 0;
    for (let x = 0; x < size; x++) {
      for (let y = 0; y < size; y++, bit++) {
        const byte = payload[bit >> 3];
        if (byte === undefined) continue;
        data[(y * size + x) * 4 + 3] = 254 | ((byte >> (7 - (bit & 7))) & 1);
      }
    }
    decodeStealthInfo({ width: size, height: size, channels: 4, data });
  });
});
