/**
 * Resizing NCHW tensors as PyTorch's `F.interpolate` does (A1111's latent upscalers and its
 * "Just resize (latent upscale)" img2img mode).
 *
 * @module
 */

/** An `[N, C, H, W]` float32 tensor. */
export interface NchwTensor {
  data: Float32Array;
  dims: [number, number, number, number];
}

/**
 * `torch.nn.functional.interpolate(x, size=(outHeight, outWidth), mode="bilinear",
 * align_corners=False, antialias=False)` on `[N, C, H, W]`, in float32 like PyTorch's CPU kernel:
 * source coordinate `max(scale * (dst + 0.5) - 0.5, 0)` with `scale = in / out`.
 */
export function interpolateBilinear(
  x: NchwTensor,
  outHeight: number,
  outWidth: number,
): NchwTensor {
  const [n, c, h, w] = x.dims;
  const f = Math.fround;
  const axis = (inSize: number, outSize: number) => {
    const scale = f(inSize / outSize);
    const i0 = new Int32Array(outSize);
    const i1 = new Int32Array(outSize);
    const l0 = new Float32Array(outSize);
    const l1 = new Float32Array(outSize);
    for (let d = 0; d < outSize; d++) {
      const src = Math.max(f(f(scale * f(d + 0.5)) - 0.5), 0);
      const a = Math.trunc(src);
      const lambda = Math.min(Math.max(f(src - a), 0), 1);
      i0[d] = a;
      i1[d] = a < inSize - 1 ? a + 1 : a;
      l1[d] = lambda;
      l0[d] = f(1 - lambda);
    }
    return { i0, i1, l0, l1 };
  };
  const ys = axis(h, outHeight);
  const xs = axis(w, outWidth);
  const out = new Float32Array(n * c * outHeight * outWidth);
  for (let p = 0; p < n * c; p++) {
    const src = x.data.subarray(p * h * w, (p + 1) * h * w);
    const base = p * outHeight * outWidth;
    for (let oy = 0; oy < outHeight; oy++) {
      const r0 = ys.i0[oy]! * w;
      const r1 = ys.i1[oy]! * w;
      const h0 = ys.l0[oy]!;
      const h1 = ys.l1[oy]!;
      for (let ox = 0; ox < outWidth; ox++) {
        const c0 = xs.i0[ox]!;
        const c1 = xs.i1[ox]!;
        const w0 = xs.l0[ox]!;
        const w1 = xs.l1[ox]!;
        const top = f(f(w0 * src[r0 + c0]!) + f(w1 * src[r0 + c1]!));
        const bottom = f(f(w0 * src[r1 + c0]!) + f(w1 * src[r1 + c1]!));
        out[base + oy * outWidth + ox] = f(f(h0 * top) + f(h1 * bottom));
      }
    }
  }
  return { data: out, dims: [n, c, outHeight, outWidth] };
}
