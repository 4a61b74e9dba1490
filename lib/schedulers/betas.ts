/**
 * The training noise schedule: betas exactly as the Diffusers constructors build them (float32,
 * with the zero-terminal-SNR rescale) and their cumulative product `alphas_cumprod`.
 *
 * @module
 */
import type { SchedulerConfig } from "./config.ts";
import { torchLinspaceF32 } from "./numpy.ts";

const f32 = Math.fround;

/**
 * Diffusers `betas_for_alpha_bar` (squaredcos_cap_v2): betas from the cosine alpha-bar of
 * Nichol & Dhariwal 2021, Eq. (17), computed in float64 and stored as float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { betasForAlphaBar } from "./betas.ts";
 * const betas = betasForAlphaBar(1000);
 * assert.equal(betas[999], Math.fround(0.999)); // clipped at max_beta
 * ```
 */
export function betasForAlphaBar(numDiffusionTimesteps: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
  const out = new Float32Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps;
    const t2 = (i + 1) / numDiffusionTimesteps;
    out[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return out;
}

/**
 * Diffusers `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1) in float32:
 * shift and scale sqrt(alpha_bar) so the last step has zero SNR.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeBetas, rescaleZeroTerminalSnr } from "./betas.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const betas = makeBetas(parseSchedulerConfig({ beta_schedule: "scaled_linear" }));
 * assert.equal(rescaleZeroTerminalSnr(betas)[999], 1); // alpha_bar of the last step is 0
 * ```
 */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const sqrtBar = new Float32Array(n);
  const bar0 = alphasCumprodFromBetas(betas);
  for (let i = 0; i < n; i++) sqrtBar[i] = Math.sqrt(bar0[i]!);
  const s0 = sqrtBar[0]!;
  const sT = sqrtBar[n - 1]!;
  const scale = f32(s0 / f32(s0 - sT));
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32(sqrtBar[i]! - sT) * scale);
    bar[i] = f32(v * v);
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(bar[i]! / bar[i - 1]!));
  return out;
}

/**
 * Betas exactly as the Diffusers constructors build them (float32), including the zero-SNR rescale.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeBetas } from "./betas.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const betas = makeBetas(parseSchedulerConfig({ beta_start: 0.00085, beta_end: 0.012 }));
 * assert.equal(betas.length, 1000);
 * assert.equal(betas[999], Math.fround(0.012));
 * ```
 */
export function makeBetas(config: SchedulerConfig): Float32Array {
  let betas: Float32Array;
  if (config.trainedBetas !== null) {
    betas = Float32Array.from(config.trainedBetas);
  } else if (config.betaSchedule === "linear") {
    betas = torchLinspaceF32(config.betaStart, config.betaEnd, config.numTrainTimesteps);
  } else if (config.betaSchedule === "scaled_linear") {
    // torch.linspace(beta_start**0.5, beta_end**0.5, n) ** 2; the roots are Python float64.
    const r = torchLinspaceF32(
      Math.sqrt(config.betaStart),
      Math.sqrt(config.betaEnd),
      config.numTrainTimesteps,
    );
    betas = r.map((x) => f32(x * x));
  } else {
    betas = betasForAlphaBar(config.numTrainTimesteps);
  }
  return config.rescaleBetasZeroSnr ? rescaleZeroTerminalSnr(betas) : betas;
}

/**
 * `torch.cumprod(1 - betas)` for a float32 tensor on CPU: the running product is kept in float64
 * (ATen's `acc_type<float>` on CPU) and each output is rounded to float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { alphasCumprodFromBetas } from "./betas.ts";
 * assert.deepEqual(Array.from(alphasCumprodFromBetas(new Float32Array([0.5, 0.5]))), [0.5, 0.25]);
 * ```
 */
export function alphasCumprodFromBetas(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f32(1 - betas[i]!);
    out[i] = acc;
  }
  return out;
}

/**
 * `alphas_cumprod` of a config: `makeBetas` then the float32 cumulative product.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { computeAlphasCumprod } from "./betas.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const ac = computeAlphasCumprod(parseSchedulerConfig({}));
 * assert.ok(ac[0]! > ac[999]!);
 * ```
 */
export function computeAlphasCumprod(config: SchedulerConfig): Float32Array {
  return alphasCumprodFromBetas(makeBetas(config));
}

/**
 * `alphas_cumprod` with Diffusers' zero-SNR fix, as the sigma-based and DPM-Solver multistep
 * constructors keep it: with betas rescaled to zero terminal SNR the last alpha_bar becomes 2^-24
 * so that its sigma stays finite.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { finiteAlphasCumprod } from "./betas.ts";
 * import { parseSchedulerConfig } from "./config.ts";
 * const ac = finiteAlphasCumprod(parseSchedulerConfig({ rescale_betas_zero_snr: true }));
 * assert.equal(ac[999], 2 ** -24);
 * ```
 */
export function finiteAlphasCumprod(config: SchedulerConfig): Float32Array {
  const ac = computeAlphasCumprod(config);
  if (config.rescaleBetasZeroSnr) ac[ac.length - 1] = 2 ** -24;
  return ac;
}
