import assert from "node:assert/strict";
import { join } from "node:path";
import { writeTinyDwposeModels } from "../../tests/fixtures/preprocess_models.ts";
import { decodeDetections, detectorInput, poseCrop, toOpenposeOrder } from "./dwpose.ts";
import { openposePreprocessor } from "./openpose.ts";
import { drawPose, hueToRgb } from "./pose_draw.ts";

const W = 200;
const H = 150;

function testImage() {
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 5)) % 256;
  return { width: W, height: H, channels: 3 as const, data };
}

function pixel(image: { width: number; data: Uint8Array }, x: number, y: number): number[] {
  const i = (Math.trunc(y) * image.width + Math.trunc(x)) * 3;
  return [...image.data.subarray(i, i + 3)];
}

Deno.test("detectorInput() letterboxes into 640x640 with 114 padding, as onnxdet.preprocess", () => {
  const { data, ratio } = detectorInput(testImage());
  assert.equal(ratio, 3.2); // min(640 / 150, 640 / 200)
  const plane = 640 * 640;
  // Rows 480.. are padding in every channel.
  for (const c of [0, 1, 2]) {
    assert.equal(data[c * plane + 480 * 640 + 3], 114);
    assert.equal(data[c * plane + 639 * 640 + 639], 114);
  }
  // The top-left pixel is the image's (an exact copy at the corner of a 3.2x enlargement).
  assert.deepEqual([data[0], data[plane], data[2 * plane]], [0, 7, 14]);
});

Deno.test("decodeDetections() keeps persons above 0.3 and suppresses overlaps at IoU 0.45", () => {
  const out = new Float32Array(8400 * 85);
  const put = (anchor: number, values: number[]) => out.set(values, anchor * 85);
  // Stride 32 anchors (6400 + 1600 + ...): two overlapping boxes, one separate, one weak.
  put(8000 + 7 * 20 + 10, [0, 0.5, Math.log(4), Math.log(8), 0.9, 0.9]); // 320,240 128x256
  put(8000 + 7 * 20 + 11, [0, 0.5, Math.log(4), Math.log(8), 0.8, 0.8]); // overlaps the first
  put(8000 + 2 * 20 + 2, [0.5, 0.5, 0, 0, 0.9, 0.9]); // 80,80 32x32
  put(8000 + 15 * 20 + 15, [0.5, 0.5, 0, 0, 0.5, 0.5]); // 0.25: dropped
  const boxes = decodeDetections(out, 2);
  assert.equal(boxes.length, 2);
  assert.deepEqual(boxes[0]!.map((v) => Math.round(v * 100) / 100), [128, 56, 192, 184]);
  assert.deepEqual(boxes[1], [32, 32, 48, 48]);
});

Deno.test("toOpenposeOrder() inserts the neck and moves COCO points to OpenPose order", () => {
  const points = Array.from({ length: 133 }, (_, i) => [i, -i] as [number, number]);
  const scores = Array.from({ length: 133 }, () => 0.9);
  scores[6] = 0.2; // right shoulder hidden: the neck is hidden too
  const out = toOpenposeOrder({ points, scores });
  assert.equal(out.points.length, 134);
  assert.deepEqual(out.points[1], [5.5, -5.5]);
  assert.equal(out.scores[1], 0);
  // OpenPose 2..4 = right shoulder, elbow, wrist = COCO 6, 8, 10; 8 = right hip = COCO 12.
  assert.deepEqual([2, 3, 4, 8, 14].map((i) => out.points[i]![0]), [6, 8, 10, 12, 2]);
  // Feet, face and hands follow the inserted neck.
  assert.deepEqual(out.points[18], [17, -17]);
  assert.deepEqual(out.points[133], [132, -132]);
});

Deno.test("hueToRgb() is matplotlib's hsv_to_rgb with s = v = 1", () => {
  assert.deepEqual(hueToRgb(0), [1, 0, 0]);
  assert.deepEqual(hueToRgb(0.05).map((c) => c * 255), [255, 76.50000000000001, 0]);
  assert.deepEqual(hueToRgb(0.5), [0, 1, 1]);
});

Deno.test("openpose runs models with the DWPose exports' signatures and draws the skeleton", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // One person: 200x400 in the detector's 640 space, centred at (320, 240) -> in the image
    // (ratio 3.2): centre (100, 75), 62.5 x 125.
    const keypoints = new Array(133).fill(undefined);
    keypoints[0] = { binX: 288, binY: 200 }; // nose
    keypoints[5] = { binX: 360, binY: 300 }; // left shoulder
    keypoints[6] = { binX: 216, binY: 300 }; // right shoulder
    keypoints[12] = { binX: 250, binY: 600, peak: 0.2 }; // a hip below the 0.3 threshold
    keypoints[23] = { binX: 300, binY: 120 }; // first face landmark
    keypoints[91] = { binX: 400, binY: 500 }; // left wrist (hand point 0)
    keypoints[92] = { binX: 440, binY: 540 }; // hand point 1
    await writeTinyDwposeModels(dir, [{ cx: 320, cy: 240, w: 200, h: 400 }], keypoints);
    const models = { detector: join(dir, "yolox_l.onnx"), pose: join(dir, "dw-ll_ucoco_384.onnx") };
    const control = await openposePreprocessor.run(testImage(), {}, { models });
    assert.equal(control.width, W);
    assert.equal(control.height, H);

    // Where the keypoints must land: SimCC bin / 2 / input size * scale + centre - scale / 2,
    // with the crop of the box (1.25x, widened to 3:4: scale 117.1875 x 156.25).
    const crop = poseCrop([68.75, 12.5, 131.25, 137.5], 288, 384);
    assert.deepEqual(crop.scale, [117.1875, 156.25]);
    const at = (binX: number, binY: number): [number, number] => [
      (binX / 2 / 288) * crop.scale[0] + crop.center[0] - crop.scale[0] / 2,
      (binY / 2 / 384) * crop.scale[1] + crop.center[1] - crop.scale[1] / 2,
    ];
    const nose = at(288, 200);
    const left = at(360, 300);
    const right = at(216, 300);
    const neck: [number, number] = [(left[0] + right[0]) / 2, (left[1] + right[1]) / 2];
    // Points carry their OpenPose colours (drawn last, at full brightness).
    assert.deepEqual(pixel(control, ...nose), [255, 0, 0]);
    assert.deepEqual(pixel(control, ...neck), [255, 85, 0]);
    assert.deepEqual(pixel(control, ...right), [255, 170, 0]);
    assert.deepEqual(pixel(control, ...left), [85, 255, 0]);
    // The neck-nose limb (colour 12, blue) at 60%, between the two points.
    const mid = [(nose[0] + neck[0]) / 2, (nose[1] + neck[1]) / 2] as const;
    assert.deepEqual(pixel(control, mid[0], mid[1]), [0, 0, 153]);
    // Hand points are blue, face landmarks white; the weak hip is not drawn.
    assert.deepEqual(pixel(control, ...at(400, 500)), [0, 0, 255]);
    assert.deepEqual(pixel(control, ...at(300, 120)), [255, 255, 255]);
    assert.deepEqual(pixel(control, ...at(250, 600)), [0, 0, 0]);

    // The same picture from the expected keypoints alone.
    const points = Array.from({ length: 133 }, () => [0, 0] as [number, number]);
    const scores = new Array<number>(133).fill(0);
    keypoints.forEach((k, i) => {
      if (k === undefined) return;
      points[i] = at(k.binX, k.binY);
      scores[i] = k.peak ?? 1;
    });
    const expected = drawPose([toOpenposeOrder({ points, scores })], W, H);
    let differ = 0;
    for (let i = 0; i < expected.data.length; i++) {
      differ += expected.data[i] !== control.data[i] ? 1 : 0;
    }
    console.log(`openpose canvas: ${differ} bytes differ from the expected keypoints' drawing`);
    assert.equal(differ, 0);

    // Options turn parts off.
    const bodyOnly = await openposePreprocessor.run(testImage(), { hands: false, face: false }, {
      models,
    });
    assert.deepEqual(pixel(bodyOnly, ...at(400, 500)), [0, 0, 0]);
    assert.deepEqual(pixel(bodyOnly, ...nose), [255, 0, 0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openpose with no person detected estimates the whole image, as the DWPose annotator", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const keypoints = new Array(133).fill(undefined);
    keypoints[0] = { binX: 288, binY: 384 }; // the centre of the crop
    await writeTinyDwposeModels(dir, [], keypoints);
    const models = { detector: join(dir, "yolox_l.onnx"), pose: join(dir, "dw-ll_ucoco_384.onnx") };
    const control = await openposePreprocessor.run(testImage(), {}, { models });
    // Whole-image box [0, 0, 200, 150]: the crop centre is the image centre.
    assert.deepEqual(pixel(control, 100, 75), [255, 0, 0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
