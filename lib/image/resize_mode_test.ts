import assert from "node:assert/strict";
import type { RawImage } from "./codec.ts";
import { type PixelResizeMode, resizeWithMode } from "./resize_mode.ts";

interface Case {
  width: number;
  height: number;
  channels: 1 | 3;
  input: number[];
  targetWidth: number;
  targetHeight: number;
  mode: 0 | 1 | 2;
  output: number[];
}

const MODES: PixelResizeMode[] = ["just-resize", "crop-and-resize", "resize-and-fill"];
const data = JSON.parse(
  await Deno.readTextFile(new URL("./testdata/resize_mode.json", import.meta.url)),
) as { cases: Case[] };

Deno.test("resizeWithMode() equals A1111's resize_image on Pillow 9.4 byte for byte (21 cases)", () => {
  for (const c of data.cases) {
    const image: RawImage = {
      width: c.width,
      height: c.height,
      channels: c.channels,
      data: Uint8Array.from(c.input),
    };
    const out = resizeWithMode(image, c.targetWidth, c.targetHeight, MODES[c.mode]!);
    let diff = 0;
    for (let i = 0; i < c.output.length; i++) {
      if (out.data[i] !== c.output[i]) diff++;
    }
    assert.equal(
      diff,
      0,
      `${c.width}x${c.height}x${c.channels} -> ${c.targetWidth}x${c.targetHeight} ${
        MODES[c.mode]
      }: ${diff} bytes differ`,
    );
  }
});

Deno.test("resizeWithMode() refuses sizes below 1", () => {
  const image: RawImage = { width: 2, height: 2, channels: 1, data: new Uint8Array(4) };
  assert.throws(() => resizeWithMode(image, 0, 2, "just-resize"), RangeError);
});
