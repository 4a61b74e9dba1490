/**
 * Gradient clipping by global norm with `torch.nn.utils.clip_grad_norm_` semantics (torch 2.x,
 * the foreach path): the total norm is the 2-norm of the per-tensor 2-norms, each computed in
 * float32; every gradient is then multiplied by `min(1, max_norm / (total + 1e-6))`.
 *
 * @module
 */
const f32 = Math.fround;

/**
 * Clips `grads` in place so that their global 2-norm is at most `maxNorm`; returns the norm
 * before clipping (what Accelerate's `clip_grad_norm_` returns).
 *
 * @example
 * ```ts
 * import { clipGradNorm } from "./clip_grad_norm.ts";
 * const grads = { a: Float32Array.of(3), b: Float32Array.of(4) };
 * const norm = clipGradNorm(grads, 1);
 * console.assert(norm === 5 && Math.abs(grads.a[0]! - 0.6) < 1e-6);
 * ```
 */
export function clipGradNorm(grads: Record<string, Float32Array>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new RangeError(`Cannot clip gradients to a norm of ${maxNorm}`);
  const norms: number[] = [];
  for (const g of Object.values(grads)) {
    let sum = 0;
    for (let i = 0; i < g.length; i++) sum += g[i]! * g[i]!;
    norms.push(f32(Math.sqrt(sum)));
  }
  let total = 0;
  for (const n of norms) total += n * n;
  total = f32(Math.sqrt(total));
  // clip_coef = max_norm / (total_norm + 1e-6), clamped to 1; torch multiplies even by 1.
  const coef = Math.min(1, f32(f32(maxNorm) / f32(total + 1e-6)));
  if (coef < 1) {
    for (const g of Object.values(grads)) {
      for (let i = 0; i < g.length; i++) g[i] = f32(g[i]! * coef);
    }
  }
  return total;
}
