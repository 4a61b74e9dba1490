/**
 * The `openpose` preprocessor: DWPose whole-body keypoints (lib/preprocess/dwpose.ts) drawn as
 * OpenPose skeletons (lib/preprocess/pose_draw.ts) for the openpose ControlNets
 * (`control_v11p_sd15_openpose`, the SDXL openpose nets), from the two published ONNX files
 * (`yzd-v/DWPose`: `yolox_l.onnx`, `dw-ll_ucoco_384.onnx`).
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { createSession, type SessionOptions } from "../onnx/session.ts";
import { detectPersons, estimatePoses, toOpenposeOrder } from "./dwpose.ts";
import { type OptionSpec, resolveOptions } from "./options.ts";
import type { Preprocessor } from "./preprocessor.ts";
import { drawPose } from "./pose_draw.ts";

/** The option schema of the openpose preprocessor. */
export const OPENPOSE_OPTIONS: readonly OptionSpec[] = [
  {
    name: "body",
    type: "boolean",
    default: true,
    description: "draw the body skeleton",
  },
  {
    name: "hands",
    type: "boolean",
    default: true,
    description: "draw the hands",
  },
  {
    name: "face",
    type: "boolean",
    default: true,
    description: "draw the face landmarks",
  },
];

/** Options for {@linkcode openposeControl}. */
export interface OpenposeOptions {
  body?: boolean;
  hands?: boolean;
  face?: boolean;
}

/** The model files of {@linkcode openposeControl}. */
export interface OpenposeModels {
  /** The person detector (YOLOX, `yolox_l.onnx`). */
  detector: string;
  /** The pose model (RTMPose SimCC, `dw-ll_ucoco_384.onnx`). */
  pose: string;
}

/**
 * OpenPose control image of an image: people detected, their keypoints estimated and drawn on
 * black at the image's size.
 */
export async function openposeControl(
  image: RawImage,
  models: OpenposeModels,
  options: OpenposeOptions = {},
  session: SessionOptions = {},
): Promise<RgbImage> {
  const o = resolveOptions("openpose", OPENPOSE_OPTIONS, { ...options });
  const rgb = toRgb(image);
  const detector = await createSession(models.detector, session);
  let boxes;
  try {
    boxes = await detectPersons(detector, rgb);
  } finally {
    await detector.release();
  }
  const pose = await createSession(models.pose, session);
  let people;
  try {
    const shape = pose.inputShape(pose.inputNames[0]!);
    const h = typeof shape?.[2] === "number" ? shape[2] : 384;
    const w = typeof shape?.[3] === "number" ? shape[3] : 288;
    people = await estimatePoses(pose, rgb, boxes, { width: w, height: h });
  } finally {
    await pose.release();
  }
  for (const person of people) {
    if (person.points.length !== 133) {
      throw new TypeError(
        `openpose: the pose model returned ${person.points.length} keypoints, expected 133 (COCO-WholeBody)`,
      );
    }
  }
  return drawPose(people.map(toOpenposeOrder), rgb.width, rgb.height, {
    body: o.body as boolean,
    hands: o.hands as boolean,
    face: o.face as boolean,
  });
}

/** The openpose preprocessor for the registry. */
export const openposePreprocessor: Preprocessor = {
  kind: "openpose",
  summary: "DWPose body, hand and face keypoints drawn as OpenPose skeletons",
  reference:
    "DWPose ONNX annotator (ControlNet-v1-1-nightly) + controlnet_aux draw_bodypose/handpose/facepose",
  options: OPENPOSE_OPTIONS,
  model: {
    defaultAlias: "dwpose",
    files: { detector: ["yolox_l.onnx"], pose: ["dw-ll_ucoco_384.onnx"] },
  },
  run: async (image, options, context) => {
    const o = resolveOptions("openpose", OPENPOSE_OPTIONS, options);
    const detector = context?.models?.detector;
    const pose = context?.models?.pose;
    if (detector === undefined || pose === undefined) {
      throw new TypeError(
        "openpose: no model files given: pass context.models.detector and context.models.pose",
      );
    }
    return await openposeControl(
      image,
      { detector, pose },
      o as OpenposeOptions,
      context?.session ?? {},
    );
  },
};
