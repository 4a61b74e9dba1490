/**
 * VJP of Resize in `nearest` mode (the builders' upsampling). Nearest resizing is separable:
 * along each axis every output index copies one input index, so the output is `R_h X R_w^T`
 * with 0/1 matrices and the gradient is `R_h^T dY R_w`, summing the copies. The index maps are
 * computed statically with the ONNX formulas (coordinate_transformation_mode, nearest_mode) in
 * float32 as onnxruntime does.
 *
 * @module
 */
import type { Value } from "../../onnx/graph.ts";
import { onlyInputs, single, unsupportedInput, type VjpContext, type VjpRule } from "./vjp.ts";

const f32 = Math.fround;

/** For each output index along one axis, the input index nearest resizing copies. */
export function nearestSourceIndices(
  inSize: number,
  outSize: number,
  scale: number,
  coordinateMode: string,
  nearestMode: string,
): number[] {
  const s = f32(scale);
  const out: number[] = [];
  for (let x = 0; x < outSize; x++) {
    let orig: number;
    switch (coordinateMode) {
      case "half_pixel":
        orig = f32(f32(f32(x + 0.5) / s) - 0.5);
        break;
      case "pytorch_half_pixel":
        orig = outSize > 1 ? f32(f32(f32(x + 0.5) / s) - 0.5) : 0;
        break;
      case "align_corners":
        orig = outSize === 1 ? 0 : f32(f32(x * (inSize - 1)) / (outSize - 1));
        break;
      case "asymmetric":
        orig = f32(x / s);
        break;
      case "tf_half_pixel_for_nn":
        orig = f32(f32(x + 0.5) / s);
        break;
      default:
        throw new RangeError(
          `Resize: coordinate_transformation_mode "${coordinateMode}" is not supported`,
        );
    }
    let i: number;
    switch (nearestMode) {
      case "round_prefer_floor":
        i = orig === Math.floor(orig) + 0.5 ? Math.floor(orig) : Math.round(orig);
        break;
      case "round_prefer_ceil":
        i = orig === Math.floor(orig) + 0.5 ? Math.ceil(orig) : Math.round(orig);
        break;
      case "floor":
        i = Math.floor(orig);
        break;
      case "ceil":
        i = Math.ceil(orig);
        break;
      default:
        throw new RangeError(`Resize: nearest_mode "${nearestMode}" is not supported`);
    }
    out.push(Math.min(Math.max(i, 0), inSize - 1));
  }
  return out;
}

function resize(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  onlyInputs(ctx, [0], "only the resized tensor is differentiable");
  const a = ctx.attrs;
  const mode = a.string("mode", "nearest");
  if (mode !== "nearest") unsupportedInput(ctx, 0, `Resize mode "${mode}" is not supported`);
  if (a.has("axes")) unsupportedInput(ctx, 0, "Resize with axes is not supported");
  const coordinateMode = a.string("coordinate_transformation_mode", "half_pixel");
  if (coordinateMode === "tf_crop_and_resize") {
    unsupportedInput(ctx, 0, "tf_crop_and_resize is not supported");
  }
  const nearestMode = a.string("nearest_mode", "round_prefer_floor");
  const g = ctx.g;
  const X = ctx.inInfo(0);
  const Y = ctx.outInfo(0);
  const r = X.shape.length;
  const scalesGiven = ctx.node.input[2] ? ctx.inInfo(2).value : undefined;
  const useScales = !ctx.node.input[3] && scalesGiven !== undefined && scalesGiven.length > 0;
  let d = single(ctx, dY);
  for (let axis = 0; axis < r; axis++) {
    const inSize = X.shape[axis]!;
    const outSize = Y.shape[axis]!;
    const scale = useScales ? scalesGiven![axis]! : f32(outSize) / f32(inSize);
    const src = nearestSourceIndices(inSize, outSize, scale, coordinateMode, nearestMode);
    if (inSize === outSize && src.every((s, i) => s === i)) continue;
    if (axis < r - 2) {
      unsupportedInput(ctx, 0, `resizing axis ${axis} (only the last two axes) is not supported`);
    }
    // R^T with R^T[o, src[o]] = 1: [outSize, inSize]
    const data = new Array<number>(outSize * inSize).fill(0);
    src.forEach((s, o) => (data[o * inSize + s] = 1));
    if (axis === r - 1) {
      // [..., out] @ [out, in] -> [..., in]
      d = g.op("MatMul", [d, g.constant(data, X.dtype, [outSize, inSize])]);
    } else {
      // [in, out] @ [..., out, W] -> [..., in, W]
      const rt = g.constant(data, X.dtype, [outSize, inSize]);
      d = g.op("MatMul", [g.op("Transpose", [rt], { perm: [1, 0] }), d]);
    }
  }
  return [d];
}

/** VJP rule of Resize. */
export const RESIZE_VJPS: Readonly<Record<string, VjpRule>> = { Resize: resize };
