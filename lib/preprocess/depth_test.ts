import assert from "node:assert/strict";
import { join } from "node:path";
import { interpolateBicubic } from "../image/torch_bicubic.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import { writeTinyDepthModel } from "../../tests/fixtures/preprocess_models.ts";
import {
  depthControl,
  depthInputSize,
  depthPixelValues,
  depthPreprocessor,
  depthToImage,
} from "./depth.ts";

interface PostCase {
  input: [number, number, number];
  size: [number, number];
  interpolated: string | null;
  image: string;
}

const POST = JSON.parse(
  Deno.readTextFileSync(new URL("./testdata/depth_post.json", import.meta.url)),
) as { versions: { torch: string }; cases: PostCase[] };

/** The reference generator's `noise()`: xorshift32 low bytes / 255 * 4, float32. */
function noise(n: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    out[i] = ((state & 0xff) / 255) * 4;
  }
  return out;
}

function bytes(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

Deno.test(`interpolateBicubic() and depthToImage() match torch ${POST.versions.torch} and the depth-estimation pipeline`, () => {
  for (const c of POST.cases) {
    const [w, h, seed] = c.input;
    const [ow, oh] = c.size;
    const depth = noise(w * h, seed);
    if (c.interpolated !== null) {
      const b = bytes(c.interpolated);
      const ref = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      const ours = interpolateBicubic(depth, w, h, ow, oh);
      let maxdiff = 0;
      for (let i = 0; i < ref.length; i++) {
        maxdiff = Math.max(maxdiff, Math.abs(ref[i]! - ours[i]!));
      }
      console.log(`bicubic ${w}x${h} -> ${ow}x${oh}: maxdiff ${maxdiff}`);
      assert.ok(maxdiff <= 4e-6, `maxdiff ${maxdiff}`); // values up to 4: a few float32 ulps
    }
    const image = depthToImage(depth, w, h, ow, oh);
    const ref = bytes(c.image);
    let differ = 0;
    let max = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(image.data[i * 3]! - ref[i]!);
      if (d > 0) differ++;
      max = Math.max(max, d);
      assert.equal(image.data[i * 3 + 1], image.data[i * 3]);
    }
    console.log(`depth image ${ow}x${oh}: ${differ} of ${ref.length} pixels differ (max ${max})`);
    // float32 sums may differ from torch's (possibly fused) ones in the last bit, which moves a
    // truncation by one level at most, and rarely.
    assert.ok(max <= 1 && differ <= Math.ceil(ref.length / 1000), `${differ} differ`);
  }
});

Deno.test("depthInputSize() follows DPTImageProcessor's keep_aspect_ratio + ensure_multiple_of", () => {
  // transformers' own test (tests/models/dpt/test_image_processing_dpt.py).
  assert.deepEqual(depthInputSize(489, 640, 512, 32), [512, 672]);
  // Larger images scale by the factor closer to 1: the short side becomes 518.
  assert.deepEqual(depthInputSize(1024, 768, 518, 14), [686, 518]);
  assert.deepEqual(depthInputSize(480, 640, 518, 14), [518, 686]);
  // Smaller ones too, so the long side may end below 518.
  assert.deepEqual(depthInputSize(256, 384, 518, 14), [350, 518]);
  // Python's round halves to even: 7 / 14 = 0.5 -> 0; 21 / 14 = 1.5 -> 2.
  assert.deepEqual(depthInputSize(518, 518, 518, 14), [518, 518]);
});

Deno.test("depthPixelValues() rescales by 1/255 and normalises with ImageNet mean/std in float32", () => {
  const image = { width: 28, height: 28, channels: 3 as const, data: new Uint8Array(28 * 28 * 3) };
  for (let i = 0; i < 28 * 28; i++) image.data.set([200, 100, 0], i * 3);
  const { data, dims } = depthPixelValues(image, 28);
  assert.deepEqual(dims, [1, 3, 28, 28]);
  const f = Math.fround;
  const expect = [200, 100, 0].map((v, c) =>
    f(f(f(v * (1 / 255)) - f([0.485, 0.456, 0.406][c]!)) / f([0.229, 0.224, 0.225][c]!))
  );
  for (let c = 0; c < 3; c++) assert.equal(data[c * 784 + 100], expect[c]);
  assert.throws(() => depthPixelValues({ ...image, width: 1, height: 1 }, 7), RangeError);
});

Deno.test("depthControl() runs a model with the Depth Anything export's signature end to end", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "model.onnx");
    await writeTinyDepthModel(path);
    const image = {
      width: 40,
      height: 30,
      channels: 3 as const,
      data: new Uint8Array(40 * 30 * 3),
    };
    for (let i = 0; i < image.data.length; i++) image.data[i] = (i * 37) % 256;
    const control = await depthPreprocessor.run(image, { size: 56 }, { models: { depth: path } });
    assert.equal(control.width, 40);
    assert.equal(control.height, 30);
    // The same steps by hand: model input, the model, post-processing.
    const input = depthPixelValues(image, 56);
    assert.deepEqual(input.dims, [1, 3, 42, 56]); // scale 56 / 40 is closer to 1 than 56 / 30
    const session = await createSession(path);
    const out = await session.run({ pixel_values: hostTensor("float32", input.data, input.dims) });
    await session.release();
    assert.deepEqual(out.predicted_depth!.dims, [1, 42, 56]);
    const expected = depthToImage(out.predicted_depth!.data as Float32Array, 56, 42, 40, 30);
    assert.deepEqual(control.data, expected.data);
    const values = new Set(control.data);
    assert.ok(values.has(0) && values.has(255), "min-max normalised to 0..255");
    await assert.rejects(
      () => depthControl(image, join(dir, "missing.onnx")),
      /Cannot load ONNX model/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
