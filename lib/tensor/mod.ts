/**
 * Tensor element types, fp16/bf16 conversion, strided copies and video/frames layouts.
 *
 * @module
 */

export {
  bf16ToF32,
  bytesToFloat32,
  type Dtype,
  dtypeBits,
  dtypeByteLength,
  DTYPES,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  float32ToBytes,
  isDtype,
  shapeSize,
} from "./dtype.ts";
export { framesToVideo, videoToFrames } from "./frames.ts";
export { contiguousStrides, gatherStrided, stridedExtent, type Tensor } from "./tensor.ts";
