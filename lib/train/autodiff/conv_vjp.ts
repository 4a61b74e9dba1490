/**
 * VJP of Conv (any number of spatial axes, strides, pads, dilations, groups for the input
 * gradient): the input gradient is the transposed convolution of the output gradient with the
 * same weight; the weight gradient is a convolution of the input with the output gradient
 * (batch and channel axes swapped, strides and dilations exchanged); the bias gradient sums the
 * output gradient over batch and space.
 *
 * @module
 */
import type { Value } from "../../onnx/graph.ts";
import { convOutSize } from "./shape_inference.ts";
import { reduceSum, single, unsupportedInput, type VjpContext, type VjpRule } from "./vjp.ts";

function conv(ctx: VjpContext, dY: ReadonlyArray<Value | null>): Array<Value | null> {
  const g = ctx.g;
  const a = ctx.attrs;
  const d = single(ctx, dY);
  const X = ctx.inInfo(0);
  const W = ctx.inInfo(1);
  const Y = ctx.outInfo(0);
  const spatial = X.shape.length - 2;
  const kernel = a.ints("kernel_shape", W.shape.slice(2));
  const strides = a.ints("strides", new Array(spatial).fill(1));
  const dil = a.ints("dilations", new Array(spatial).fill(1));
  const pads = a.ints("pads", new Array(2 * spatial).fill(0));
  const group = a.int("group", 1);
  let dX: Value | null = null;
  if (ctx.needs(0)) {
    // ConvTranspose gives s*(Ho-1) + (k-1)*d + 1 - pads; output_padding restores the rows the
    // forward stride skipped at the end.
    const outputPadding = X.shape.slice(2).map((h, i) =>
      h - (strides[i]! * (Y.shape[i + 2]! - 1) + (kernel[i]! - 1) * dil[i]! + 1 - pads[i]! -
        pads[i + spatial]!)
    );
    // [N, M, Ho, Wo] -> [N, C, H, W]
    dX = g.op("ConvTranspose", [d, ctx.input(1)!], {
      kernel_shape: kernel,
      strides,
      dilations: dil,
      pads,
      group,
      output_padding: outputPadding,
    });
  }
  let dW: Value | null = null;
  if (ctx.needs(1)) {
    if (group !== 1) {
      unsupportedInput(ctx, 1, `grouped convolutions (group ${group}) are not supported`);
    }
    const swap = [1, 0, ...Array.from({ length: spatial }, (_, i) => i + 2)];
    // dW[m, c, i] = sum_{n, y} dY[n, m, y] X[n, c, y*s + i*d]: a convolution over the batch
    // axis with dY as the kernel, dilated by the forward stride.
    const xt = g.op("Transpose", [ctx.input(0)!], { perm: swap }); // [C, N, H, W]
    const dt = g.op("Transpose", [d], { perm: swap }); // [M, N, Ho, Wo]
    const full = g.op("Conv", [xt, dt], {
      kernel_shape: Y.shape.slice(2),
      strides: dil,
      dilations: strides,
      pads,
    }); // [C, M, k' ...] with k' >= k
    const got = X.shape.slice(2).map((h, i) =>
      convOutSize(h, Y.shape[i + 2]!, dil[i]!, pads[i]!, pads[i + spatial]!, strides[i]!)
    );
    const axes = Array.from({ length: spatial }, (_, i) => i + 2);
    const cropped = got.every((k, i) => k === kernel[i])
      ? full
      : g.op("Slice", [full, g.ints(axes.map(() => 0)), g.ints(kernel), g.ints(axes)]);
    dW = g.op("Transpose", [cropped], { perm: swap }); // [M, C, k ...]
  }
  let dB: Value | null = null;
  if (ctx.needs(2)) {
    dB = reduceSum(g, d, [0, ...Array.from({ length: spatial }, (_, i) => i + 2)], false);
  }
  return [dX, dW, dB];
}

/** VJP rule of Conv. */
export const CONV_VJPS: Readonly<Record<string, VjpRule>> = { Conv: conv };
