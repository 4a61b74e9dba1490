/**
 * PyTorch's `torch.nn.functional.interpolate(x, size, mode="bicubic", align_corners=False)` on
 * one float32 plane: how transformers' `post_process_depth_estimation` brings a predicted depth
 * map back to the image size.
 *
 * Source: PyTorch `aten/src/ATen/native/UpSample.h` (`area_pixel_compute_scale`:
 * `float(in) / out`; `area_pixel_compute_source_index`: `scale · (i + 0.5) - 0.5`, not clamped
 * for cubic; `get_cubic_upsample_coefficients` with A = -0.75) and
 * `native/cpu/UpSampleKernel.cpp` (`cpu_upsample_generic<scalar_t, 2, 4>`: source indices clamped
 * to the border, 4 weighted columns summed per row, then 4 weighted rows, all in float32). The
 * source index and the weight polynomials are rounded as fused multiply-adds, as PyTorch's x86-64
 * build computes them; the sums are not, so results can differ from torch's by a few float32
 * units in the last place (measured in lib/preprocess/depth_test.ts).
 *
 * @module
 */

const A = -0.75;

/**
 * PyTorch's cubic convolution weights for a fractional offset `t` (float32). Each `a · x + b`
 * is rounded once, as the fused multiply-adds (FMA) of PyTorch's compiled kernel do.
 */
function cubicCoefficients(t: number): [number, number, number, number] {
  const f = Math.fround;
  // ((A + 2) x - (A + 3)) x x + 1, for |x| <= 1
  const c1 = (x: number) => f(f(f(f(A + 2) * x - f(A + 3)) * x) * x + 1);
  // ((A x - 5A) x + 8A) x - 4A, for 1 < |x| < 2
  const c2 = (x: number) => f(f(f(A * x - f(5 * A)) * x + f(8 * A)) * x - f(4 * A));
  const x2 = f(1 - t);
  return [c2(f(t + 1)), c1(t), c1(x2), c2(f(x2 + 1))];
}

interface AxisTaps {
  index: Int32Array;
  weight: Float32Array;
}

function axisTaps(inSize: number, outSize: number): AxisTaps {
  const f = Math.fround;
  const scale = f(inSize / outSize);
  const index = new Int32Array(outSize * 4);
  const weight = new Float32Array(outSize * 4);
  for (let i = 0; i < outSize; i++) {
    // scale · (i + 0.5) - 0.5 with one rounding (a fused multiply-add).
    const real = f(scale * (i + 0.5) - 0.5);
    const input = Math.min(Math.floor(real), inSize - 1);
    const t = Math.min(Math.max(f(real - input), 0), 1);
    const w = cubicCoefficients(t);
    for (let j = 0; j < 4; j++) {
      index[i * 4 + j] = Math.min(Math.max(input - 1 + j, 0), inSize - 1);
      weight[i * 4 + j] = w[j]!;
    }
  }
  return { index, weight };
}

/**
 * Resizes a `width` x `height` float32 plane (row-major) to `outWidth` x `outHeight` with
 * PyTorch's bicubic interpolation (`align_corners=False`).
 *
 * @example
 * ```ts
 * import { interpolateBicubic } from "./torch_bicubic.ts";
 * const out = interpolateBicubic(Float32Array.of(1, 1, 1, 1), 2, 2, 3, 3);
 * console.assert(out.every((v) => Math.abs(v - 1) < 1e-6));
 * ```
 */
export function interpolateBicubic(
  plane: Float32Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Float32Array {
  if (plane.length < width * height) {
    throw new TypeError(
      `interpolateBicubic: a ${width}x${height} plane needs ${
        width * height
      } values, got ${plane.length}`,
    );
  }
  if (!(outWidth >= 1 && outHeight >= 1)) {
    throw new RangeError(`interpolateBicubic: the output size ${outWidth}x${outHeight} is invalid`);
  }
  const f = Math.fround;
  const xs = axisTaps(width, outWidth);
  const ys = axisTaps(height, outHeight);
  const out = new Float32Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let acc = 0;
      for (let j = 0; j < 4; j++) {
        const row = ys.index[y * 4 + j]! * width;
        let t = 0;
        for (let i = 0; i < 4; i++) {
          const v = f(plane[row + xs.index[x * 4 + i]!]! * xs.weight[x * 4 + i]!);
          t = i === 0 ? v : f(t + v);
        }
        const v = f(t * ys.weight[y * 4 + j]!);
        acc = j === 0 ? v : f(acc + v);
      }
      out[y * outWidth + x] = acc;
    }
  }
  return out;
}
