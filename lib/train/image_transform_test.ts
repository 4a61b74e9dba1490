import assert from "node:assert/strict";
import { pilResize } from "../image/pil_resample.ts";
import { flipHorizontal, pixelsToTensor, resizedSize, squareCrop } from "./image_transform.ts";

function ramp(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
  return { width, height, channels: 3 as const, data };
}

Deno.test("squareCrop() is torchvision Resize(shorter side, PIL bilinear) + CenterCrop", () => {
  // Resize: shorter side to the size, the longer int(size * long / short).
  assert.deepEqual(resizedSize(640, 480, 512), [682, 512]);
  assert.deepEqual(resizedSize(300, 1000, 64), [64, 213]);
  const image = ramp(50, 33);
  const out = squareCrop(image, 16, "center");
  const [w, h] = resizedSize(50, 33, 16); // 24 x 16
  const resized = pilResize(image, w, h, "bilinear");
  // CenterCrop: left = round((24 - 16) / 2) = 4, top = 0.
  assert.deepEqual(out.cropTopLeft, [0, 4]);
  assert.deepEqual(out.originalSize, [33, 50]);
  for (let y = 0; y < 16; y++) {
    for (let x = 0; x < 16; x++) {
      for (let c = 0; c < 3; c++) {
        assert.equal(out.pixels.data[(y * 16 + x) * 3 + c], resized.data[(y * w + x + 4) * 3 + c]);
      }
    }
  }
  // Python's round: (17 - 16) / 2 = 0.5 rounds to 0.
  assert.deepEqual(squareCrop(ramp(17, 16), 16, "center").cropTopLeft, [0, 0]);
  const draws: number[] = [];
  const random = squareCrop(ramp(30, 16), 16, "random", (n) => (draws.push(n), n - 1));
  assert.deepEqual(draws, [1, 15]);
  assert.deepEqual(random.cropTopLeft, [0, 14]);
});

Deno.test("flipHorizontal() mirrors rows; pixelsToTensor() is ToTensor + Normalize(0.5, 0.5)", () => {
  const image = {
    width: 2,
    height: 1,
    channels: 3 as const,
    data: Uint8Array.of(0, 51, 255, 1, 2, 3),
  };
  assert.deepEqual([...flipHorizontal(image).data], [1, 2, 3, 0, 51, 255]);
  const t = pixelsToTensor(image);
  // [3, 1, 2]: channel planes
  const f = Math.fround;
  const norm = (v: number) => f(f(f(v / 255) - 0.5) / 0.5);
  assert.deepEqual([...t], [0, 1, 51, 2, 255, 3].map(norm));
});
