/**
 * The ControlNet step of the denoising loop, as diffusers 0.27 `StableDiffusionControlNetPipeline`
 * (and its img2img, inpaint and SDXL siblings) runs it before every UNet call:
 *
 * 1. the net's input is the step's scaled latents (`control_model_input`: the 4-channel latents
 *    even when an inpainting UNet gets 9 channels), the timestep and the same hidden states (and
 *    SDXL `text_embeds`/`time_ids`) as the UNet, for every pass of the batch; in guess mode with
 *    classifier-free guidance, for the conditional passes only;
 * 2. each net's scale is `conditioning_scale * controlnet_keep[i]` with
 *    `keep = 1 - (i / len(timesteps) < start or (i + 1) / len(timesteps) > end)`, guess mode
 *    scaling residual k by `logspace(-1, 0, n)[k]` (the net's `conditioning_scales` input);
 * 3. several nets add their residuals (`MultiControlNetModel`), in order;
 * 4. guess mode feeds zeros for the unconditional pass;
 * 5. the residuals go to the UNet under the names its residual inputs have, and the step runs the
 *    UNet built with those inputs.
 *
 * With A1111 composable prompts (`a AND b`) a step has several conditional passes: every pass gets
 * the net's residuals computed with its own hidden states, the unconditional one too unless in
 * guess mode, which generalises Diffusers' one conditional pass.
 *
 * @module
 */
import type { ControlnetConfig } from "../models/controlnet_config.ts";
import { controlnetConditioningScales, controlnetResidualSpecs } from "../models/controlnet.ts";
import { type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import type { LoopHook, NamedInput, StepState, UnetInput } from "./denoise.ts";

/** One ControlNet of a step. */
export interface ControlnetUnit {
  /** The net's parsed config (its residuals, guess-mode scaling, SDXL inputs). */
  config: ControlnetConfig;
  /** The net's session (opened on first use). */
  session: () => Promise<OnnxSession>;
  /** The `controlnet_cond` image at a pixel size, `[1, C, height, width]`. */
  image: (width: number, height: number) => Promise<Float32Array>;
  /** Diffusers `controlnet_conditioning_scale`. */
  scale: number;
  /** Diffusers `control_guidance_start` / `control_guidance_end`. */
  start: number;
  end: number;
}

/** Options of {@linkcode controlnetHook}. */
export interface ControlnetHookOptions {
  /**
   * Diffusers `guess_mode` (callers pass `guessMode || nets[0].global_pool_conditions`, as the
   * pipelines do).
   */
  guessMode: boolean;
  /** Pixels per latent (the VAE factor): the control image is the latents' size times this. */
  vaeFactor: number;
  /** The UNet component that takes residual inputs (`StableDiffusion.residualUnet()`). */
  unet: string;
  /** Called once the last step has run its nets (to release them in low-memory mode). */
  onLastStep?: () => Promise<void>;
}

/**
 * Diffusers' `controlnet_keep[i]`: 0 when step `i` of `length` lies outside `[start, end]`.
 *
 * @example
 * ```ts
 * import { controlnetKeep } from "./controlnet_hook.ts";
 * console.assert(controlnetKeep(0, 4, 0, 0.5) === 1 && controlnetKeep(2, 4, 0, 0.5) === 0);
 * ```
 */
export function controlnetKeep(i: number, length: number, start: number, end: number): number {
  return 1 - (i / length < start || (i + 1) / length > end ? 1 : 0);
}

/** Rows `[from, from + count)` of a `[B, ...]` tensor of `row` values each. */
function rows(data: Float32Array, row: number, from: number, count: number): Float32Array {
  return data.subarray(from * row, (from + count) * row);
}

function repeat(block: Float32Array, times: number): Float32Array {
  const out = new Float32Array(block.length * times);
  for (let k = 0; k < times; k++) out.set(block, k * block.length);
  return out;
}

/**
 * `a + b` in float32 for two nets' residuals, `[B, C, H, W]` each; a pooled one (`[B, C, 1, 1]`,
 * `global_pool_conditions`) broadcasts over the other's H and W, as torch's `+` does.
 */
function addResiduals(
  a: Float32Array,
  aDims: number[],
  b: Float32Array,
  bDims: number[],
  name: string,
): { data: Float32Array; dims: number[] } {
  const [batch, channels] = aDims as [number, number];
  const aPlane = aDims[2]! * aDims[3]!;
  const bPlane = bDims[2]! * bDims[3]!;
  const big = aPlane >= bPlane ? aDims : bDims;
  const plane = Math.max(aPlane, bPlane);
  if (
    bDims[0] !== batch || bDims[1] !== channels ||
    (aPlane !== bPlane && Math.min(aPlane, bPlane) !== 1)
  ) {
    throw new TypeError(
      `Cannot add the residuals "${name}" of two nets: shapes [${aDims.join(", ")}] and ` +
        `[${bDims.join(", ")}] differ`,
    );
  }
  const out = new Float32Array(batch * channels * plane);
  for (let bc = 0; bc < batch * channels; bc++) {
    for (let p = 0; p < plane; p++) {
      const x = a[bc * aPlane + (aPlane === 1 ? 0 : p)]!;
      const y = b[bc * bPlane + (bPlane === 1 ? 0 : p)]!;
      out[bc * plane + p] = x + y;
    }
  }
  return { data: out, dims: [...big] };
}

/**
 * The loop hook that runs the nets of a step and feeds their summed residuals to the UNet (see
 * the module documentation).
 */
export function controlnetHook(
  units: readonly ControlnetUnit[],
  options: ControlnetHookOptions,
): LoopHook {
  if (units.length === 0) throw new RangeError("Cannot run ControlNet without a net");
  const specs = controlnetResidualSpecs(units[0]!.config);
  return {
    async beforeUnet(input: UnetInput, state: StepState): Promise<UnetInput> {
      const [batch, , h, w] = input.sampleShape;
      const { n } = state;
      const plane = h * w;
      const latentChannels = state.latentInput.length / (n * plane);
      // 1. The net's batch: every pass, or the conditional ones in guess mode with CFG.
      const skip = options.guessMode && state.withUncond ? 1 : 0;
      const netPasses = state.passes.length - skip;
      const netBatch = netPasses * n;
      const [, sequence, width] = input.hiddenShape;
      const common: Record<string, HostTensor> = {
        sample: hostTensor("float32", repeat(state.latentInput, netPasses), [
          netBatch,
          latentChannels,
          h,
          w,
        ]),
        timestep: hostTensor("float32", Float32Array.of(state.t), [1]),
        encoder_hidden_states: hostTensor(
          "float32",
          rows(input.hiddenStates, sequence * width, skip * n, netBatch),
          [netBatch, sequence, width],
        ),
      };
      const added = (name: string): HostTensor => {
        const value = input.extra[name];
        if (value === undefined) {
          throw new RangeError(
            `Cannot run an SDXL ControlNet: the step has no "${name}" (is the model SDXL?)`,
          );
        }
        const row = value.data.length / batch;
        return hostTensor("float32", rows(value.data, row, skip * n, netBatch), [netBatch, row]);
      };
      // 2-3. Each net at its scale for this step; residuals summed in net order.
      let sums: Float32Array[] | undefined;
      let dims: number[][] | undefined;
      for (const unit of units) {
        const keep = controlnetKeep(state.loopIndex, state.loopLength, unit.start, unit.end);
        const scale = unit.scale * keep;
        // scale * residual with scale 0 is zero: the net need not run.
        if (scale === 0) continue;
        const scales = controlnetConditioningScales(unit.config, scale, {
          guessMode: options.guessMode,
        });
        const feeds: Record<string, HostTensor> = {
          ...common,
          controlnet_cond: hostTensor(
            "float32",
            await unit.image(w * options.vaeFactor, h * options.vaeFactor),
            [1, unit.config.conditioningChannels, h * options.vaeFactor, w * options.vaeFactor],
          ),
          conditioning_scales: hostTensor("float32", scales, [scales.length]),
        };
        if (unit.config.additionEmbedType === "text_time") {
          feeds.text_embeds = added("text_embeds");
          feeds.time_ids = added("time_ids");
        }
        const session = await unit.session();
        const out = await session.run(feeds, specs.map((s) => s.name));
        const residuals = specs.map((s) => {
          const t = out[s.name];
          if (t === undefined || !(t.data instanceof Float32Array)) {
            throw new TypeError(`Cannot read ControlNet output "${s.name}" as float32`);
          }
          return { data: t.data, dims: [...t.dims] };
        });
        if (sums === undefined) {
          sums = residuals.map((r) => r.data);
          dims = residuals.map((r) => r.dims);
          continue;
        }
        residuals.forEach((r, k) => {
          const sum = addResiduals(sums![k]!, dims![k]!, r.data, r.dims, specs[k]!.name);
          sums![k] = sum.data;
          dims![k] = sum.dims;
        });
      }
      if (state.loopIndex === state.loopLength - 1) await options.onLastStep?.();
      // 4-5. Zeros where no net ran (the unconditional pass in guess mode, steps outside every
      // net's window), under the UNet's residual input names.
      const extra: Record<string, NamedInput> = { ...input.extra };
      specs.forEach((s, k) => {
        const hk = dims?.[k]?.[2] ?? Math.ceil(h / s.downscale);
        const wk = dims?.[k]?.[3] ?? Math.ceil(w / s.downscale);
        const block = s.channels * hk * wk;
        const data = new Float32Array(batch * block);
        if (sums !== undefined) data.set(sums[k]!, skip * n * block);
        extra[s.name] = { data, dims: [batch, s.channels, hk, wk] };
      });
      return { ...input, extra, unet: options.unet };
    },
  };
}
