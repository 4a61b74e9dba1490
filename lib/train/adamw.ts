/**
 * AdamW with `torch.optim.AdamW` semantics (Loshchilov & Hutter 2019, decoupled weight decay):
 * per parameter, `p *= 1 - lr * wd`, then Adam with bias corrections:
 * `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
 * `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
 * Each tensor operation rounds to float32 as torch's single-tensor CPU path does (torch 1.13
 * `_single_tensor_adamw`). The step counter is per parameter, as in torch.
 *
 * @module
 */

const f32 = Math.fround;

/** Options of {@linkcode AdamW}. */
export interface AdamWOptions {
  /** Learning rate (may be changed between steps through {@linkcode AdamW.lr}). */
  lr: number;
  /** Moment decay rates (default `[0.9, 0.999]`). */
  betas?: [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 1e-2, torch's default). */
  weightDecay?: number;
}

/** One parameter's optimiser state. */
export interface AdamWParameterState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/**
 * The optimiser; {@linkcode AdamW.step} updates parameters in place.
 *
 * @example
 * ```ts
 * import { AdamW } from "./adamw.ts";
 * const opt = new AdamW({ lr: 1e-3, weightDecay: 0 });
 * const params = { w: Float32Array.of(1, -1) };
 * opt.step(params, { w: Float32Array.of(0.5, -2) });
 * console.assert(Math.abs(params.w[0]! - (1 - 1e-3)) < 1e-6); // first step moves by lr * sign(g)
 * ```
 */
export class AdamW {
  /** Learning rate used by the next step (schedulers set it). */
  lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  #state = new Map<string, AdamWParameterState>();

  constructor(opts: AdamWOptions) {
    const betas = opts.betas ?? [0.9, 0.999];
    const eps = opts.eps ?? 1e-8;
    const wd = opts.weightDecay ?? 1e-2;
    if (!(opts.lr >= 0)) throw new RangeError(`AdamW: lr must be >= 0, got ${opts.lr}`);
    if (!betas.every((b) => b >= 0 && b < 1)) {
      throw new RangeError(`AdamW: betas must be in [0, 1), got [${betas}]`);
    }
    if (!(eps >= 0)) throw new RangeError(`AdamW: eps must be >= 0, got ${eps}`);
    if (!(wd >= 0)) throw new RangeError(`AdamW: weightDecay must be >= 0, got ${wd}`);
    this.lr = opts.lr;
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.weightDecay = wd;
  }

  /**
   * One update of every parameter that has a gradient (a parameter without one is left alone,
   * as torch skips `grad is None`). Throws on a gradient without a parameter or of another size.
   */
  step(
    params: Record<string, Float32Array>,
    grads: Readonly<Record<string, Float32Array>>,
  ): void {
    for (const [name, grad] of Object.entries(grads)) {
      const p = params[name];
      if (p === undefined) {
        throw new RangeError(`AdamW: gradient "${name}" has no parameter; pass matching records`);
      }
      if (p.length !== grad.length) {
        throw new RangeError(
          `AdamW: "${name}" has ${p.length} values but its gradient ${grad.length}`,
        );
      }
    }
    const lr = this.lr;
    const [beta1, beta2] = this.betas;
    // torch turns Python-float scalars into float32 for float32 tensor ops.
    const decay = f32(1 - lr * this.weightDecay);
    const b1 = f32(beta1);
    const b2 = f32(beta2);
    const oneMinusB1 = f32(1 - beta1);
    const oneMinusB2 = f32(1 - beta2);
    const eps = f32(this.eps);
    for (const [name, p] of Object.entries(params)) {
      const grad = grads[name];
      if (grad === undefined) continue;
      let state = this.#state.get(name);
      if (state === undefined) {
        state = {
          step: 0,
          expAvg: new Float32Array(p.length),
          expAvgSq: new Float32Array(p.length),
        };
        this.#state.set(name, state);
      } else if (state.expAvg.length !== p.length) {
        throw new RangeError(
          `AdamW: "${name}" changed size from ${state.expAvg.length} to ${p.length}`,
        );
      }
      state.step += 1;
      const t = state.step;
      const bc1 = 1 - beta1 ** t;
      const bc2 = 1 - beta2 ** t;
      const negStepSize = f32(-lr / bc1);
      const bc2Sqrt = f32(Math.sqrt(bc2));
      const { expAvg: m, expAvgSq: v } = state;
      for (let i = 0; i < p.length; i++) {
        const g = grad[i]!;
        // param.mul_(1 - lr * weight_decay)
        const pi = f32(p[i]! * decay);
        // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1): torch's vectorised add is a fused
        // multiply-add (one rounding; the float32 product is exact in float64)
        m[i] = f32(f32(m[i]! * b1) + g * oneMinusB1);
        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): self + (value * g) * g
        v[i] = f32(f32(v[i]! * b2) + f32(f32(oneMinusB2 * g) * g));
        // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        const denom = f32(f32(f32(Math.sqrt(v[i]!)) / bc2Sqrt) + eps);
        // param.addcdiv_(exp_avg, denom, value=-step_size): self + (value * m) / denom
        p[i] = f32(pi + f32(f32(negStepSize * m[i]!) / denom));
      }
    }
  }

  /** The state of one parameter (undefined before its first step). */
  stateOf(name: string): Readonly<AdamWParameterState> | undefined {
    return this.#state.get(name);
  }

  /** Every parameter's state, for checkpoints. */
  stateDict(): Record<string, AdamWParameterState> {
    const out: Record<string, AdamWParameterState> = {};
    for (const [name, s] of this.#state) {
      out[name] = { step: s.step, expAvg: s.expAvg.slice(), expAvgSq: s.expAvgSq.slice() };
    }
    return out;
  }

  /** Restores state saved by {@linkcode AdamW.stateDict} (a resumed run). */
  loadStateDict(state: Readonly<Record<string, AdamWParameterState>>): void {
    this.#state.clear();
    for (const [name, s] of Object.entries(state)) {
      if (s.expAvg.length !== s.expAvgSq.length || !Number.isInteger(s.step) || s.step < 0) {
        throw new RangeError(`AdamW: the saved state of "${name}" is inconsistent`);
      }
      this.#state.set(name, {
        step: s.step,
        expAvg: s.expAvg.slice(),
        expAvgSq: s.expAvgSq.slice(),
      });
    }
  }
}
