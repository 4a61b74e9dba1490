/**
 * BLIP preprocessing against transformers 4.30 BlipImageProcessor. testdata/blip_preprocess.json
 * holds the processor's pixels for the PNG files beside it (Pillow 9.4.0, numpy 1.24.2); its
 * "how" field lists the calls that made them.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { decodeImage } from "../image/codec.ts";
import { blipPixelValues, parseBlipImageProcessorConfig, toRgb } from "./blip_image_processor.ts";

interface Case {
  file: string;
  shape: number[];
  sha256_f32: string;
  sample_index: number[];
  sample_values: number[];
}

const fixture = JSON.parse(
  Deno.readTextFileSync(new URL("./testdata/blip_preprocess.json", import.meta.url)),
) as { versions: { PIL: string; numpy: string }; size: number; cases: Case[] };

function sha256(data: Float32Array): string {
  return createHash("sha256").update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    .digest("hex");
}

Deno.test(
  `blipPixelValues() equals BlipImageProcessor's pixels bit for bit (PIL ${fixture.versions.PIL}, numpy ${fixture.versions.numpy})`,
  async () => {
    const config = parseBlipImageProcessorConfig({
      size: { height: fixture.size, width: fixture.size },
      resample: 3,
    });
    for (const c of fixture.cases) {
      const bytes = await Deno.readFile(new URL(`./testdata/${c.file}`, import.meta.url));
      // Decoded with alpha: the processor drops it (PIL convert("RGB")), it does not composite.
      const image = await decodeImage(bytes, { channels: 4 });
      const pixels = blipPixelValues([image], config);
      let worst = 0;
      c.sample_index.forEach((i, k) => {
        worst = Math.max(worst, Math.abs(pixels[i]! - c.sample_values[k]!));
      });
      assert.equal(pixels.length, c.shape.reduce((a, b) => a * b, 1));
      assert.equal(sha256(pixels), c.sha256_f32, `${c.file}: sample maxdiff ${worst}`);
    }
  },
);

Deno.test({
  name: "blipPixelValues() on the tiny_blip golden image equals transformers' pixel_values",
  ignore: !hasShared,
  fn: async () => {
    const dir = "golden/models/tiny_blip";
    const ref = readSharedJson<{
      preprocess: { gradient_64: { sha256_f32: string; pixel_values: { values: number[] } } };
    }>(`${dir}/reference.json`).preprocess.gradient_64;
    const config = parseBlipImageProcessorConfig(readSharedJson(`${dir}/preprocessor_config.json`));
    const image = await decodeImage(await Deno.readFile(sharedPath(`${dir}/gradient_64x64.png`)), {
      channels: 4,
    });
    const pixels = blipPixelValues([image], config);
    let worst = 0;
    ref.pixel_values.values.forEach((v, i) => (worst = Math.max(worst, Math.abs(pixels[i]! - v))));
    console.log(`pixel_values maxdiff ${worst} (golden rounded to 7 digits)`);
    assert.equal(sha256(pixels), ref.sha256_f32);
  },
});

Deno.test("toRgb() replicates gray and drops alpha without compositing", () => {
  const la = { width: 1, height: 1, channels: 2 as const, data: Uint8Array.of(10, 0) };
  assert.deepEqual([...toRgb(la).data], [10, 10, 10]);
  const rgba = { width: 1, height: 1, channels: 4 as const, data: Uint8Array.of(1, 2, 3, 0) };
  assert.deepEqual([...toRgb(rgba).data], [1, 2, 3]);
});

Deno.test("blipPixelValues() refuses an image of the wrong size when resizing is off", () => {
  const config = parseBlipImageProcessorConfig({ size: { height: 2, width: 2 }, do_resize: false });
  const image = { width: 1, height: 1, channels: 3 as const, data: Uint8Array.of(0, 0, 0) };
  assert.throws(() => blipPixelValues([image], config), RangeError);
});

Deno.test("parseBlipImageProcessorConfig() reads BLIP's defaults and refuses bad values", () => {
  const c = parseBlipImageProcessorConfig({});
  assert.equal(c.width, 384);
  assert.equal(c.resample, "bicubic");
  assert.throws(() => parseBlipImageProcessorConfig({ resample: 0 }), /resample/);
  assert.throws(() => parseBlipImageProcessorConfig({ image_std: [1, 0, 1] }), /image_std/);
});
