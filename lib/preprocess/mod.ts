/**
 * ControlNet preprocessors: each turns decoded pixels into the RGB control image a ControlNet 1.1
 * net expects (canny edges, a tile blur, a content shuffle, an XDoG scribble, standard line art,
 * an inversion; with a published ONNX model, Depth Anything depth and DWPose skeletons; with
 * annotator weights built into graphs, HED/PiDiNet soft edges and model line art), reproducing
 * the reference implementation it names.
 *
 * @example
 * ```ts
 * import { PREPROCESSOR_KINDS, preprocess } from "./mod.ts";
 * console.assert(PREPROCESSOR_KINDS.includes("canny"));
 * const data = Uint8Array.from({ length: 48 }, (_, i) => ((i / 3 | 0) % 4 >= 2 ? 255 : 0));
 * const edges = await preprocess({ width: 4, height: 4, channels: 3, data }, "canny", { low: 100, high: 200 });
 * console.assert(edges.channels === 3);
 * ```
 *
 * @module
 */
export { CANNY_OPTIONS, cannyControl, type CannyControlOptions } from "./canny.ts";
export {
  annotatorInput,
  type AnnotatorSession,
  cropGray,
  grayToRgb,
  openAnnotator,
  padEdge,
} from "./annotator_session.ts";
export {
  DEPTH_OPTIONS,
  depthControl,
  depthInputSize,
  depthPixelValues,
  depthToImage,
} from "./depth.ts";
export {
  type Box,
  decodeDetections,
  detectPersons,
  estimatePoses,
  type PersonKeypoints,
  toOpenposeOrder,
} from "./dwpose.ts";
export {
  OPENPOSE_OPTIONS,
  openposeControl,
  type OpenposeModels,
  type OpenposeOptions,
} from "./openpose.ts";
export { drawPose, type DrawPoseOptions } from "./pose_draw.ts";
export {
  type ResolvedModelFiles,
  resolvePreprocessorModel,
  type ResolvePreprocessorModelOptions,
} from "./model_files.ts";
export { detectResize, resizeControl, resolutionSize } from "./resolution.ts";
export { invertControl } from "./invert.ts";
export { edgeNms, fakeScribble } from "./fake_scribble.ts";
export { invertedLine, LINEART_OPTIONS, lineartControl } from "./lineart.ts";
export {
  LINEART_STANDARD_OPTIONS,
  lineartStandardControl,
  type LineartStandardOptions,
} from "./lineart_standard.ts";
export {
  type OptionSpec,
  type OptionValue,
  type ResolvedOptions,
  resolveOptions,
} from "./options.ts";
export type {
  PreprocessContext,
  Preprocessor,
  PreprocessorKind,
  PreprocessorModel,
} from "./preprocessor.ts";
export {
  getPreprocessor,
  isPreprocessorKind,
  preprocess,
  PREPROCESSOR_KINDS,
  PREPROCESSORS,
  resolvePreprocessOptions,
} from "./registry.ts";
export {
  SCRIBBLE_XDOG_OPTIONS,
  scribbleXdogControl,
  type ScribbleXdogOptions,
} from "./scribble_xdog.ts";
export { SHUFFLE_OPTIONS, shuffleControl, type ShuffleOptions } from "./shuffle.ts";
export {
  type EdgeMap,
  hedEdges,
  pidinetEdges,
  safeStep,
  SOFTEDGE_OPTIONS,
  softedgeControl,
  type SoftedgeOptions,
} from "./softedge.ts";
export { TILE_OPTIONS, tileControl, type TileOptions } from "./tile.ts";
