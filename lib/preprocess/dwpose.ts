/**
 * DWPose whole-body keypoints from its published ONNX files, as the DWPose authors' ControlNet
 * annotator (`ControlNet-v1-1-nightly/annotator/dwpose`: `onnxdet.py`, `onnxpose.py`,
 * `wholebody.py`; the A1111 extension's `cv_ox_det.py`/`cv_ox_pose.py` are the same steps) runs
 * them:
 *
 * 1. Person detection with YOLOX-L (`yolox_l.onnx`: input [1, 3, 640, 640] float32 of 0..255 RGB,
 *    output [1, 8400, 85]): letterbox (OpenCV INTER_LINEAR resize by `r = min(640 / H, 640 / W)`
 *    into the top-left corner of a 640x640 canvas of 114), decode the grid of strides 8, 16, 32,
 *    score = objectness x class, NMS at IoU 0.45 over boxes scoring above 0.1, keep persons
 *    (class 0) scoring above 0.3.
 * 2. For each box (or the whole image when none): RTMPose (`dw-ll_ucoco_384.onnx`: input
 *    [1, 3, 384, 288], outputs `simcc_x` [1, 133, 576] and `simcc_y` [1, 133, 768]): the box
 *    grown 1.25x and widened to 3:4, warped to 288x384 (OpenCV warpAffine, INTER_LINEAR),
 *    normalised with mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375); each
 *    keypoint is the argmax of its SimCC rows divided by 2, its score the smaller of the two
 *    maxima, mapped back through the box.
 * 3. A neck (the mean of both shoulders, visible when both score above 0.3) is inserted and the
 *    17 COCO body points are reordered into OpenPose's 18-point order, giving 134 points per
 *    person: 18 body, 6 feet, 68 face, 21 left hand, 21 right hand.
 *
 * Arithmetic follows numpy's types (float32 for the detector's outputs, float64 for boxes and
 * keypoints). Ties in NMS order by index.
 *
 * @module
 */
import type { RgbImage } from "../image/gray.ts";
import { resizeLinear } from "../image/resize_linear.ts";
import { getAffineTransform, warpAffine } from "../image/warp_affine.ts";
import { hostTensor, type OnnxSession } from "../onnx/session.ts";

/** A box in image pixels: left, top, right, bottom. */
export type Box = [number, number, number, number];

/** The detector's input side. */
const DET_SIZE = 640;
/** RTMPose input mean and standard deviation (RGB). */
const POSE_MEAN = [123.675, 116.28, 103.53];
const POSE_STD = [58.395, 57.12, 57.375];

/**
 * The detector input: the image letterboxed into 640x640 (114 elsewhere) as float32
 * [1, 3, 640, 640], and the scale ratio `r`.
 */
export function detectorInput(image: RgbImage): { data: Float32Array; ratio: number } {
  const { width, height } = image;
  const ratio = Math.min(DET_SIZE / height, DET_SIZE / width);
  const w = Math.trunc(width * ratio);
  const h = Math.trunc(height * ratio);
  if (w < 1 || h < 1) {
    throw new RangeError(
      `openpose: a ${width}x${height} image is too thin to detect people in: use a less extreme aspect ratio`,
    );
  }
  const resized = resizeLinear(image, w, h);
  const plane = DET_SIZE * DET_SIZE;
  const data = new Float32Array(3 * plane).fill(114);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const s = (y * w + x) * 3;
      const d = y * DET_SIZE + x;
      data[d] = resized.data[s]!;
      data[plane + d] = resized.data[s + 1]!;
      data[2 * plane + d] = resized.data[s + 2]!;
    }
  }
  return { data, ratio };
}

/**
 * Persons in the detector's raw output ([1, N, 85] for N = 8400 anchors of strides 8, 16, 32),
 * as boxes in image pixels (see the module doc, step 1).
 *
 * @example
 * ```ts
 * import { decodeDetections } from "./dwpose.ts";
 * const out = new Float32Array(8400 * 85);
 * // Anchor 0 (stride 8, cell 0,0): centre (8 * (2 + 0), 8 * (3 + 0)) = (16, 24), size 8 e^1.
 * out.set([2, 3, Math.log(4), Math.log(4), 0.9, 0.9], 0);
 * const boxes = decodeDetections(out, 1);
 * console.assert(boxes.length === 1 && boxes[0]![0] === 0 && boxes[0]![3] === 40);
 * ```
 */
export function decodeDetections(output: Float32Array, ratio: number): Box[] {
  const f = Math.fround;
  const channels = 85;
  const n = output.length / channels;
  const boxes: Box[] = [];
  const scores: number[] = [];
  let anchor = 0;
  for (const stride of [8, 16, 32]) {
    const size = Math.floor(DET_SIZE / stride);
    for (let gy = 0; gy < size; gy++) {
      for (let gx = 0; gx < size; gx++, anchor++) {
        if (anchor >= n) break;
        const o = anchor * channels;
        // Only class 0 (person) survives the final filter, so only its scores are needed.
        const score = f(output[o + 4]! * output[o + 5]!);
        if (!(score > 0.1)) continue;
        const cx = f((output[o]! + gx) * stride);
        const cy = f((output[o + 1]! + gy) * stride);
        const w = f(f(Math.exp(output[o + 2]!)) * stride);
        const h = f(f(Math.exp(output[o + 3]!)) * stride);
        boxes.push([
          f(f(cx - f(w / 2)) / ratio),
          f(f(cy - f(h / 2)) / ratio),
          f(f(cx + f(w / 2)) / ratio),
          f(f(cy + f(h / 2)) / ratio),
        ]);
        scores.push(score);
      }
    }
  }
  if (anchor !== n) {
    throw new TypeError(
      `openpose: the detector returned ${n} anchors, expected 8400 (strides 8, 16, 32 on 640x640)`,
    );
  }
  const keep = nms(boxes, scores, 0.45);
  return keep.filter((i) => scores[i]! > 0.3).map((i) => boxes[i]!);
}

/** Single-class NMS as the annotator's numpy `nms` (float32, +1 pixel areas). */
function nms(boxes: readonly Box[], scores: readonly number[], threshold: number): number[] {
  const f = Math.fround;
  const area = boxes.map((b) => f(f(f(b[2] - b[0]) + 1) * f(f(b[3] - b[1]) + 1)));
  let order = scores.map((_, i) => i).sort((a, b) => scores[a]! - scores[b]! || a - b).reverse();
  const keep: number[] = [];
  while (order.length > 0) {
    const i = order[0]!;
    keep.push(i);
    const bi = boxes[i]!;
    order = order.slice(1).filter((j) => {
      const bj = boxes[j]!;
      const w = Math.max(0, f(f(Math.min(bi[2], bj[2]) - Math.max(bi[0], bj[0])) + 1));
      const h = Math.max(0, f(f(Math.min(bi[3], bj[3]) - Math.max(bi[1], bj[1])) + 1));
      const inter = f(w * h);
      const overlap = f(inter / f(f(area[i]! + area[j]!) - inter));
      return overlap <= threshold;
    });
  }
  return keep;
}

/** Runs the person detector on an image; boxes in image pixels. */
export async function detectPersons(session: OnnxSession, image: RgbImage): Promise<Box[]> {
  const { data, ratio } = detectorInput(image);
  const name = session.inputNames[0]!;
  const result = await session.run({
    [name]: hostTensor("float32", data, [1, 3, DET_SIZE, DET_SIZE]),
  });
  const out = result[session.outputNames[0]!]!;
  if (out.type !== "float32" || out.dims[out.dims.length - 1] !== 85) {
    throw new TypeError(
      `openpose: the detector returned ${out.type} [${out.dims}], expected float32 [1, 8400, 85] (YOLOX)`,
    );
  }
  return decodeDetections(out.data as Float32Array, ratio);
}

/** Where a person's box is cropped from: centre and (aspect-fixed) scale, float64. */
export interface PoseCrop {
  center: [number, number];
  scale: [number, number];
}

/**
 * The crop of one box for the pose model: centre, scale = size x 1.25 widened to `inputWidth /
 * inputHeight`, and the affine matrix that maps it onto the model input.
 */
export function poseCrop(
  box: Box,
  inputWidth: number,
  inputHeight: number,
): PoseCrop & { matrix: ReturnType<typeof getAffineTransform> } {
  const f = Math.fround;
  const center: [number, number] = [(box[0] + box[2]) * 0.5, (box[1] + box[3]) * 0.5];
  let scale: [number, number] = [(box[2] - box[0]) * 1.25, (box[3] - box[1]) * 1.25];
  const aspect = inputWidth / inputHeight;
  const [w, h] = scale;
  scale = w > h * aspect ? [w, w / aspect] : [h * aspect, h];
  // get_warp_matrix with rot 0: points stored as float32 there.
  const src0: [number, number] = [f(center[0]), f(center[1])];
  const src1: [number, number] = [f(center[0] + 0), f(center[1] + scale[0] * -0.5)];
  const src2 = thirdPoint(src0, src1);
  const dst0: [number, number] = [inputWidth * 0.5, inputHeight * 0.5];
  const dst1: [number, number] = [inputWidth * 0.5, inputHeight * 0.5 + inputWidth * -0.5];
  const dst2 = thirdPoint(dst0, dst1);
  const matrix = getAffineTransform([src0, src1, src2], [dst0, dst1, dst2]);
  return { center, scale, matrix };
}

/** `_get_3rd_point` in float32: b + rot90(a - b). */
function thirdPoint(a: [number, number], b: [number, number]): [number, number] {
  const f = Math.fround;
  const d0 = f(a[0] - b[0]);
  const d1 = f(a[1] - b[1]);
  return [f(b[0] - d1), f(b[1] + d0)];
}

/** The pose model input for one crop: float32 [1, 3, H, W], normalised. */
export function poseInput(
  image: RgbImage,
  matrix: ReturnType<typeof getAffineTransform>,
  inputWidth: number,
  inputHeight: number,
): Float32Array {
  const warped = warpAffine(image, matrix, inputWidth, inputHeight);
  const plane = inputWidth * inputHeight;
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      data[c * plane + i] = (warped.data[i * 3 + c]! - POSE_MEAN[c]!) / POSE_STD[c]!;
    }
  }
  return data;
}

/** Keypoints of one person: positions in image pixels and scores, 133 (COCO-WholeBody) or 134. */
export interface PersonKeypoints {
  points: Array<[number, number]>;
  scores: number[];
}

/**
 * SimCC decoding (`get_simcc_maximum`, split ratio 2) of one person, mapped back through the
 * crop: `loc / input_size * scale + center - scale / 2`.
 */
export function decodeSimcc(
  simccX: Float32Array,
  simccY: Float32Array,
  keypoints: number,
  crop: PoseCrop,
  inputWidth: number,
  inputHeight: number,
): PersonKeypoints {
  const wx = simccX.length / keypoints;
  const wy = simccY.length / keypoints;
  const points: Array<[number, number]> = [];
  const scores: number[] = [];
  for (let k = 0; k < keypoints; k++) {
    const [ix, vx] = argmax(simccX, k * wx, wx);
    const [iy, vy] = argmax(simccY, k * wy, wy);
    const value = vx > vy ? vy : vx;
    let lx = ix;
    let ly = iy;
    if (value <= 0) lx = ly = -1;
    const x = Math.fround(lx / 2);
    const y = Math.fround(ly / 2);
    points.push([
      (x / inputWidth) * crop.scale[0] + crop.center[0] - crop.scale[0] / 2,
      (y / inputHeight) * crop.scale[1] + crop.center[1] - crop.scale[1] / 2,
    ]);
    scores.push(value);
  }
  return { points, scores };
}

/** First index of the maximum of `data[start .. start + length)` and the maximum. */
function argmax(data: Float32Array, start: number, length: number): [number, number] {
  let best = 0;
  let value = data[start]!;
  for (let i = 1; i < length; i++) {
    const v = data[start + i]!;
    if (v > value) {
      value = v;
      best = i;
    }
  }
  return [best, value];
}

/** Runs the pose model on each box (the whole image when there is none). */
export async function estimatePoses(
  session: OnnxSession,
  image: RgbImage,
  boxes: readonly Box[],
  input: { width: number; height: number } = { width: 288, height: 384 },
): Promise<PersonKeypoints[]> {
  const crops: Box[] = boxes.length > 0 ? [...boxes] : [[0, 0, image.width, image.height]];
  const name = session.inputNames[0]!;
  const people: PersonKeypoints[] = [];
  for (const box of crops) {
    const crop = poseCrop(box, input.width, input.height);
    const data = poseInput(image, crop.matrix, input.width, input.height);
    const result = await session.run({
      [name]: hostTensor("float32", data, [1, 3, input.height, input.width]),
    });
    const x = result["simcc_x"] ?? result[session.outputNames[0]!]!;
    const y = result["simcc_y"] ?? result[session.outputNames[1]!]!;
    if (x === undefined || y === undefined || x.dims.length !== 3 || y.dims.length !== 3) {
      throw new TypeError(
        "openpose: the pose model must return simcc_x [1, K, W*2] and simcc_y [1, K, H*2] (RTMPose SimCC)",
      );
    }
    const keypoints = x.dims[1]!;
    people.push(
      decodeSimcc(
        x.data as Float32Array,
        y.data as Float32Array,
        keypoints,
        crop,
        input.width,
        input.height,
      ),
    );
  }
  return people;
}

const MMPOSE_INDEX = [17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3];
const OPENPOSE_INDEX = [1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17];

/**
 * `Wholebody.__call__`'s last step: insert the neck (mean of the shoulders, score 1 when both
 * shoulders score above 0.3, else 0) at index 17 and move the COCO body points into OpenPose's
 * order, giving 134 points.
 *
 * @example
 * ```ts
 * import { toOpenposeOrder } from "./dwpose.ts";
 * const points = Array.from({ length: 133 }, (_, i) => [i, 0] as [number, number]);
 * const scores = new Array<number>(133).fill(0.9);
 * const out = toOpenposeOrder({ points, scores });
 * console.assert(out.points[1]![0] === 5.5 && out.scores[1] === 1 && out.points[2]![0] === 6);
 * ```
 */
export function toOpenposeOrder(person: PersonKeypoints): PersonKeypoints {
  const p5 = person.points[5]!;
  const p6 = person.points[6]!;
  const s5 = person.scores[5]!;
  const s6 = person.scores[6]!;
  const neck: [number, number] = [(p5[0] + p6[0]) / 2, (p5[1] + p6[1]) / 2];
  const points = [...person.points.slice(0, 17), neck, ...person.points.slice(17)];
  const scores = [
    ...person.scores.slice(0, 17),
    s5 > 0.3 && s6 > 0.3 ? 1 : 0,
    ...person.scores.slice(17),
  ];
  const fromPoints = MMPOSE_INDEX.map((i) => points[i]!);
  const fromScores = MMPOSE_INDEX.map((i) => scores[i]!);
  OPENPOSE_INDEX.forEach((j, k) => {
    points[j] = fromPoints[k]!;
    scores[j] = fromScores[k]!;
  });
  return { points, scores };
}
