import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { canny } from "../image/canny.ts";
import { decodeImage, type RawImage } from "../image/codec.ts";
import { rgbToGray } from "../image/gray.ts";
import { cannyControl, cannyPreprocessor } from "./canny.ts";

function stripes(width: number, height: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const x = i % width;
    data.set([x >= width / 2 ? 200 : 10, (i * 37) % 256, x % 3 === 0 ? 90 : 30], i * 3);
  }
  return { width, height, channels: 3, data };
}

Deno.test("cannyControl() is cv2.Canny on the RGB array, repeated into 3 channels", () => {
  const image = stripes(16, 12);
  const control = cannyControl(image, { low: 50, high: 150 });
  const edges = canny(image, { low: 50, high: 150 });
  assert.equal(control.channels, 3);
  assert.equal(control.width, 16);
  edges.forEach((v, i) =>
    assert.deepEqual([...control.data.subarray(i * 3, i * 3 + 3)], [v, v, v])
  );
  // gray first converts with OpenCV's formula; l2 passes through.
  const grayEdges = canny(rgbToGray(image), { low: 50, high: 150, l2Gradient: true });
  const grayControl = cannyControl(image, { low: 50, high: 150, gray: true, l2: true });
  grayEdges.forEach((v, i) => assert.equal(grayControl.data[i * 3], v));
  // Defaults are controlnet_aux's (100, 200).
  assert.deepEqual(cannyControl(image).data, cannyControl(image, { low: 100, high: 200 }).data);
});

Deno.test("the canny preprocessor validates its options", async () => {
  const image = stripes(4, 4);
  await assert.rejects(() => cannyPreprocessor.run(image, { low: -1 }), RangeError);
  await assert.rejects(() => cannyPreprocessor.run(image, { high: Infinity }), RangeError);
  await assert.rejects(() => cannyPreprocessor.run(image, { l2: "yes" }), TypeError);
  await assert.rejects(() => cannyPreprocessor.run(image, { threshold: 3 }), RangeError);
  // low > high is swapped, as cv2 does.
  assert.deepEqual(
    (await cannyPreprocessor.run(image, { low: 200, high: 100 })).data,
    (await cannyPreprocessor.run(image, { low: 100, high: 200 })).data,
  );
});

Deno.test({
  name: "canny preprocessor with gray equals cv2.Canny(cvtColor(rgb)) on ../shared/golden/canny",
  ignore: !hasShared,
  async fn() {
    const golden = readSharedJson<{
      inputs: Record<string, string>;
      cases: Record<string, Record<string, unknown>>;
    }>("golden/canny/canny.json");
    let checked = 0;
    for (const [name, entry] of Object.entries(golden.cases)) {
      const bytes = await Deno.readFile(sharedPath(`golden/canny/${golden.inputs[name]}`));
      const image = await decodeImage(bytes, { channels: 3 });
      for (const [key, value] of Object.entries(entry)) {
        const match = /^gray_(\d+)_(\d+)$/.exec(key);
        if (!match) continue;
        const expected = new Set((value as { edge_flat_indices: number[] }).edge_flat_indices);
        const control = await cannyPreprocessor.run(image, {
          low: Number(match[1]),
          high: Number(match[2]),
          gray: true,
        });
        let differ = 0;
        for (let i = 0; i < image.width * image.height; i++) {
          if ((control.data[i * 3] === 255) !== expected.has(i)) differ++;
        }
        console.log(`${name} ${key}: ${differ} pixels differ`);
        assert.equal(differ, 0);
        checked++;
      }
    }
    assert.equal(checked, 2);
  },
});
