/**
 * The OpenPose control image: whole-body keypoints drawn on black exactly as controlnet_aux's
 * DWPose path does (`dwpose/__init__.py` `DWposeDetector.__call__` and `draw_pose`, and
 * `dwpose/util.py` `draw_bodypose`, `draw_handpose`, `draw_facepose`):
 *
 * - keypoints are normalised by the image size; a body point counts when its score is above
 *   0.3, a hand or face point is dropped (set to -1) when its score is below 0.3;
 * - body: for each of the first 17 limbs of OpenPose's limb sequence, a filled ellipse
 *   (`cv2.ellipse2Poly` at the limb's midpoint, half its length by 4 pixels, at its angle, 1
 *   degree steps; `cv2.fillConvexPoly`) in the limb's colour; the canvas is then multiplied by
 *   0.6; then a filled circle of radius 4 on each of the 18 points in its colour;
 * - hands: the 20 bones as 2-pixel lines coloured around the HSV hue circle (matplotlib's
 *   `hsv_to_rgb([i / 20, 1, 1]) * 255`), and a blue circle of radius 4 on each point;
 * - face: a white circle of radius 3 on each of the 68 points;
 * - a point is drawn only when both its pixel coordinates (truncated) are above 0.01.
 *
 * The drawing primitives are OpenCV's, pixel for pixel (lib/image/draw.ts).
 *
 * @module
 */
import { drawLine, ellipse2Poly, fillCircle, fillConvexPoly } from "../image/draw.ts";
import type { RgbImage } from "../image/gray.ts";
import type { PersonKeypoints } from "./dwpose.ts";

/** OpenPose's limbs as pairs of 1-based body point numbers (the first 17 are drawn). */
const LIMB_SEQUENCE: ReadonlyArray<readonly [number, number]> = [
  [2, 3],
  [2, 6],
  [3, 4],
  [4, 5],
  [6, 7],
  [7, 8],
  [2, 9],
  [9, 10],
  [10, 11],
  [2, 12],
  [12, 13],
  [13, 14],
  [2, 1],
  [1, 15],
  [15, 17],
  [1, 16],
  [16, 18],
  [3, 17],
  [6, 18],
];

/** OpenPose's 18 body colours (RGB), one per limb and per point. */
const BODY_COLORS: ReadonlyArray<readonly [number, number, number]> = [
  [255, 0, 0],
  [255, 85, 0],
  [255, 170, 0],
  [255, 255, 0],
  [170, 255, 0],
  [85, 255, 0],
  [0, 255, 0],
  [0, 255, 85],
  [0, 255, 170],
  [0, 255, 255],
  [0, 170, 255],
  [0, 85, 255],
  [0, 0, 255],
  [85, 0, 255],
  [170, 0, 255],
  [255, 0, 255],
  [255, 0, 170],
  [255, 0, 85],
];

/** The 20 bones of a 21-point hand. */
const HAND_EDGES: ReadonlyArray<readonly [number, number]> = [
  [0, 1],
  [1, 2],
  [2, 3],
  [3, 4],
  [0, 5],
  [5, 6],
  [6, 7],
  [7, 8],
  [0, 9],
  [9, 10],
  [10, 11],
  [11, 12],
  [0, 13],
  [13, 14],
  [14, 15],
  [15, 16],
  [0, 17],
  [17, 18],
  [18, 19],
  [19, 20],
];

const EPS = 0.01;

/** What to draw. */
export interface DrawPoseOptions {
  body?: boolean;
  hands?: boolean;
  face?: boolean;
}

/** matplotlib's `hsv_to_rgb([h, 1, 1])`, float64, in 0..1. */
export function hueToRgb(h: number): [number, number, number] {
  const s = 1;
  const v = 1;
  const i = Math.trunc(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  switch (i % 6) {
    case 0:
      return [v, t, p];
    case 1:
      return [q, v, p];
    case 2:
      return [p, v, t];
    case 3:
      return [p, q, v];
    case 4:
      return [t, p, v];
    default:
      return [v, p, q];
  }
}

/**
 * Draws people's 134-point keypoints (OpenPose order, see dwpose.ts `toOpenposeOrder`; positions
 * in pixels of a `width` x `height` image) as the OpenPose control image.
 *
 * @example
 * ```ts
 * import { drawPose } from "./pose_draw.ts";
 * const points = Array.from({ length: 134 }, () => [0, 0] as [number, number]);
 * const scores = new Array<number>(134).fill(0);
 * points[0] = [10, 10];
 * scores[0] = 0.9; // the nose alone: a red dot of radius 4
 * const image = drawPose([{ points, scores }], 20, 20);
 * console.assert(image.data[(10 * 20 + 10) * 3] === 255 && image.data[0] === 0);
 * ```
 */
export function drawPose(
  people: readonly PersonKeypoints[],
  width: number,
  height: number,
  options: DrawPoseOptions = {},
): RgbImage {
  const W = width;
  const H = height;
  // DWposeDetector.__call__: normalised candidates; body subset; hands and faces with
  // low-scoring points set to -1.
  const normalised = people.map((p) => ({
    points: p.points.map(([x, y]) => [x / W, y / H] as [number, number]),
    scores: p.scores,
  }));
  const canvas: RgbImage = {
    width: W,
    height: H,
    channels: 3,
    data: new Uint8Array(W * H * 3),
  };
  if (options.body ?? true) drawBody(canvas, normalised);
  const hidden = (
    p: { points: Array<[number, number]>; scores: number[] },
    from: number,
    to: number,
  ) =>
    p.points.slice(from, to).map((pt, k) =>
      (p.scores[from + k]! < 0.3 ? [-1, -1] : pt) as [number, number]
    );
  if (options.hands ?? true) {
    const hands = [
      ...normalised.map((p) => hidden(p, 92, 113)),
      ...normalised.map((p) => hidden(p, 113, 134)),
    ];
    drawHands(canvas, hands);
  }
  if (options.face ?? true) drawFaces(canvas, normalised.map((p) => hidden(p, 24, 92)));
  return canvas;
}

/** `draw_bodypose` on normalised candidates. */
function drawBody(
  canvas: RgbImage,
  people: ReadonlyArray<{ points: Array<[number, number]>; scores: number[] }>,
): void {
  const W = canvas.width;
  const H = canvas.height;
  const visible = (n: number, i: number) => people[n]!.scores[i]! > 0.3;
  for (let i = 0; i < 17; i++) {
    const [a, b] = LIMB_SEQUENCE[i]!;
    for (let n = 0; n < people.length; n++) {
      if (!visible(n, a - 1) || !visible(n, b - 1)) continue;
      const pa = people[n]!.points[a - 1]!;
      const pb = people[n]!.points[b - 1]!;
      const Y = [pa[0] * W, pb[0] * W];
      const X = [pa[1] * H, pb[1] * H];
      const mX = (X[0]! + X[1]!) / 2;
      const mY = (Y[0]! + Y[1]!) / 2;
      const length = Math.sqrt(
        (X[0]! - X[1]!) * (X[0]! - X[1]!) + (Y[0]! - Y[1]!) * (Y[0]! - Y[1]!),
      );
      const angle = Math.atan2(X[0]! - X[1]!, Y[0]! - Y[1]!) * (180 / Math.PI);
      const polygon = ellipse2Poly(
        { x: Math.trunc(mY), y: Math.trunc(mX) },
        { width: Math.trunc(length / 2), height: 4 },
        Math.trunc(angle),
        0,
        360,
        1,
      );
      fillConvexPoly(canvas, polygon, BODY_COLORS[i]!);
    }
  }
  for (let k = 0; k < canvas.data.length; k++) canvas.data[k] = Math.trunc(canvas.data[k]! * 0.6);
  for (let i = 0; i < 18; i++) {
    for (let n = 0; n < people.length; n++) {
      if (!visible(n, i)) continue;
      const [x, y] = people[n]!.points[i]!;
      fillCircle(canvas, { x: Math.trunc(x * W), y: Math.trunc(y * H) }, 4, BODY_COLORS[i]!);
    }
  }
}

/** `draw_handpose` on normalised hand points (-1 for hidden ones). */
function drawHands(canvas: RgbImage, hands: ReadonlyArray<Array<[number, number]>>): void {
  const W = canvas.width;
  const H = canvas.height;
  for (const peaks of hands) {
    HAND_EDGES.forEach(([e0, e1], ie) => {
      const x1 = Math.trunc(peaks[e0]![0] * W);
      const y1 = Math.trunc(peaks[e0]![1] * H);
      const x2 = Math.trunc(peaks[e1]![0] * W);
      const y2 = Math.trunc(peaks[e1]![1] * H);
      if (x1 > EPS && y1 > EPS && x2 > EPS && y2 > EPS) {
        const color = hueToRgb(ie / HAND_EDGES.length).map((c) => c * 255);
        drawLine(canvas, { x: x1, y: y1 }, { x: x2, y: y2 }, color, 2);
      }
    });
    for (const [px, py] of peaks) {
      const x = Math.trunc(px * W);
      const y = Math.trunc(py * H);
      if (x > EPS && y > EPS) fillCircle(canvas, { x, y }, 4, [0, 0, 255]);
    }
  }
}

/** `draw_facepose` on normalised face points (-1 for hidden ones). */
function drawFaces(canvas: RgbImage, faces: ReadonlyArray<Array<[number, number]>>): void {
  const W = canvas.width;
  const H = canvas.height;
  for (const landmarks of faces) {
    for (const [px, py] of landmarks) {
      const x = Math.trunc(px * W);
      const y = Math.trunc(py * H);
      if (x > EPS && y > EPS) fillCircle(canvas, { x, y }, 3, [255, 255, 255]);
    }
  }
}
