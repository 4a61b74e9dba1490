/**
 * pilResize() against Pillow 9.4.0's Image.resize, bit for bit. testdata/pil_resample.json holds
 * Pillow's outputs; its "how" field says how they were made (Pillow's calls and the inputs,
 * which this file regenerates from their seeds).
 */
import assert from "node:assert/strict";
import { type RawImage, resizeImage } from "./codec.ts";
import { type PilFilter, pilResize } from "./pil_resample.ts";

interface Case {
  input: { kind: "noise" | "smooth"; width: number; height: number; seed: number };
  filter: PilFilter;
  width: number;
  height: number;
  output_b64: string;
}

const golden = JSON.parse(
  Deno.readTextFileSync(new URL("./testdata/pil_resample.json", import.meta.url)),
) as { versions: { PIL: string }; cases: Case[] };

/** The fixture's "noise" input: xorshift32, the low byte of each draw. */
function noise(width: number, height: number, seed: number): Uint8Array {
  let state = seed >>> 0;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < out.length; i++) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    out[i] = state & 0xff;
  }
  return out;
}

/** The fixture's "smooth" input: a gradient plus noise / 8. */
function smooth(width: number, height: number, seed: number): Uint8Array {
  const n = noise(width, height, seed);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * width + x) * 3 + c;
        const gx = Math.floor(x * 255 / Math.max(width - 1, 1));
        const gy = Math.floor(y * 255 / Math.max(height - 1, 1)) * (c + 1);
        out[i] = (Math.floor((gx + gy) / 2) + Math.floor(n[i]! / 8)) & 0xff;
      }
    }
  }
  return out;
}

function decodeBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));
}

function input(c: Case): RawImage {
  const { kind, width, height, seed } = c.input;
  const data = kind === "noise" ? noise(width, height, seed) : smooth(width, height, seed);
  return { width, height, channels: 3, data };
}

function differing(a: Uint8Array, b: Uint8Array): { count: number; max: number } {
  let count = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > 0) count++;
    max = Math.max(max, d);
  }
  return { count, max };
}

Deno.test(`pilResize() equals Pillow ${golden.versions.PIL} byte for byte`, () => {
  for (const c of golden.cases) {
    const out = pilResize(input(c), c.width, c.height, c.filter);
    const want = decodeBase64(c.output_b64);
    const { count, max } = differing(out.data, want);
    const what = `${c.input.width}x${c.input.height} ${c.input.kind} -> ${c.width}x${c.height} ` +
      `${c.filter}`;
    assert.equal(out.data.length, want.length, what);
    assert.equal(count, 0, `${what}: ${count} bytes differ, maxdiff ${max}`);
  }
});

Deno.test("pilResize() returns the image itself at the same size, as Pillow copies", () => {
  const image: RawImage = { width: 3, height: 2, channels: 3, data: noise(3, 2, 5) };
  assert.equal(pilResize(image, 3, 2, "bicubic"), image);
});

Deno.test("pilResize() rejects sizes below 1", () => {
  const image: RawImage = { width: 3, height: 2, channels: 3, data: noise(3, 2, 5) };
  assert.throws(() => pilResize(image, 0, 2, "bicubic"), RangeError);
});

// Why the port exists: sharp's (libvips) cubic kernel does not give PIL's pixels. The numbers
// are printed, not asserted beyond "not identical" (they depend on the libvips build).
Deno.test("sharp's cubic resize differs from Pillow's bicubic (the reason for pilResize)", async () => {
  let total = 0;
  let worst = 0;
  let bytes = 0;
  for (const c of golden.cases.filter((c) => c.filter === "bicubic")) {
    const out = await resizeImage(input(c), c.width, c.height, { kernel: "cubic" });
    const { count, max } = differing(out.data, decodeBase64(c.output_b64));
    total += count;
    bytes += out.data.length;
    worst = Math.max(worst, max);
  }
  console.log(`sharp cubic vs PIL bicubic: ${total} of ${bytes} bytes differ, maxdiff ${worst}`);
  assert.ok(total > 0);
});
