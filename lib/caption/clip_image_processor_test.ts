import assert from "node:assert/strict";
import { pilResize } from "../image/pil_resample.ts";
import { blipPixelValues, parseBlipImageProcessorConfig } from "./blip_image_processor.ts";
import {
  centerCrop,
  clipPixelValues,
  parseClipImageProcessorConfig,
  shortestEdgeSize,
} from "./clip_image_processor.ts";

function gradient(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 29 + (i >> 5)) & 0xff;
  return { width, height, channels: 3 as const, data };
}

Deno.test("parseClipImageProcessorConfig() reads Florence-2's and LLaVA-1.5's configs", () => {
  // Florence-2's preprocessor_config.json: exact 768x768, no crop, ImageNet mean/std.
  const florence = parseClipImageProcessorConfig({
    do_center_crop: false,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.485, 0.456, 0.406],
    image_std: [0.229, 0.224, 0.225],
    resample: 3,
    rescale_factor: 1 / 255,
    size: { height: 768, width: 768 },
  });
  assert.deepEqual([florence.outputWidth, florence.outputHeight], [768, 768]);
  assert.equal(florence.crop, null);
  assert.deepEqual(florence.imageMean, [0.485, 0.456, 0.406]);
  // CLIP defaults (LLaVA-1.5 gives shortest_edge 336 and crop 336 explicitly).
  const clip = parseClipImageProcessorConfig({});
  assert.equal(clip.shortestEdge, 224);
  assert.deepEqual(clip.crop, { width: 224, height: 224 });
  assert.equal(clip.resample, "bicubic");
  assert.throws(
    () => parseClipImageProcessorConfig({ size: { shortest_edge: 8 }, do_center_crop: false }),
    /cannot be batched/,
  );
  assert.throws(() => parseClipImageProcessorConfig({ size: { shortest_edge: 0 } }), /shortest/);
});

Deno.test("shortestEdgeSize() is get_resize_output_image_size(default_to_square=False)", () => {
  // short side -> edge, long side int(edge * long / short) (truncated, not rounded)
  assert.deepEqual(shortestEdgeSize(640, 480, 336), { width: 448, height: 336 });
  assert.deepEqual(shortestEdgeSize(480, 641, 336), { width: 336, height: 448 });
  assert.deepEqual(shortestEdgeSize(3, 7, 2), { width: 2, height: 4 });
  assert.deepEqual(shortestEdgeSize(5, 5, 3), { width: 3, height: 3 });
});

Deno.test("centerCrop() takes the centre with floor((h - ch) / 2) offsets", () => {
  const image = {
    width: 5,
    height: 4,
    channels: 1 as const,
    data: Uint8Array.from({ length: 20 }, (_, i) => i),
  };
  // top = (4 - 2) // 2 = 1, left = (5 - 2) // 2 = 1
  assert.deepEqual([...centerCrop(image, 2, 2).data], [6, 7, 11, 12]);
  assert.throws(() => centerCrop(image, 6, 2), /smaller/);
});

Deno.test("clipPixelValues() equals BLIP's pipeline for an exact size and crops the centre", () => {
  const image = gradient(23, 17);
  const exact = { size: { height: 12, width: 12 }, do_center_crop: false, resample: 3 };
  assert.deepEqual(
    clipPixelValues([image], parseClipImageProcessorConfig(exact)),
    blipPixelValues([image], parseBlipImageProcessorConfig(exact)),
  );
  // Shortest edge 8 then centre crop 8x8: the same as resizing to 11x8 and cropping by hand.
  const config = parseClipImageProcessorConfig({
    size: { shortest_edge: 8 },
    crop_size: { height: 8, width: 8 },
    do_normalize: false,
  });
  const pixels = clipPixelValues([image, image], config);
  assert.equal(pixels.length, 2 * 3 * 64);
  const resized = pilResize(image, 10, 8, "bicubic");
  const cropped = centerCrop(resized, 8, 8);
  for (let i = 0; i < 64; i++) {
    for (let c = 0; c < 3; c++) {
      assert.equal(pixels[c * 64 + i], Math.fround(cropped.data[i * 3 + c]! / 255));
      assert.equal(pixels[192 + c * 64 + i], pixels[c * 64 + i]);
    }
  }
});
