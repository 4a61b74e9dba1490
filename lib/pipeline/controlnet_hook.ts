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
 * A1111's control modes (the ControlNet extension's `control_mode`, hook.py) change steps 1-4:
 * "My prompt is more important" (`"prompt"`) scales residual k by `0.825 ** (12 - k)` times the
 * weight on every pass (its "soft injection"); "ControlNet is more important" (`"control"`) does
 * that and zeroes the residuals of the unconditional pass (its "cfg injection", `control *
 * cond_mark`), which is what running the net on the conditional passes only and feeding zeros
 * for the unconditional one gives, since a net treats every batch row alone.
 *
 * Tiled runs (MultiDiffusion, multidiffusion.ts) cannot cut residuals computed for the whole
 * latent into tiles (a net's group norms and attention see the whole input), so
 * {@linkcode controlnetTileHooks} runs the nets per tile, on the tile's latents and the tile's
 * crop of the control image.
 *
 * @module
 */
import type { ControlMode } from "../job/controlnet.ts";
import type { ControlnetConfig } from "../models/controlnet_config.ts";
import { controlnetConditioningScales, controlnetResidualSpecs } from "../models/controlnet.ts";
import { type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import type { LoopHook, NamedInput, StepState, UnetInput } from "./denoise.ts";
import { cropNchw, type LatentTile, type TileHook } from "./multidiffusion.ts";

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
  /**
   * A1111's control mode (default `"balanced"`); see the module documentation. Its soft weights
   * replace guess mode's scales; both skip the unconditional pass.
   */
  controlMode?: ControlMode;
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

/** Where the nets of one call look: the latents and the control image of a region. */
interface NetView {
  /** The scaled latents of one pass over the region, `[n, C, h, w]`. */
  latentInput: Float32Array;
  /** Unit `u`'s `controlnet_cond` over the region, `[1, C, h * f, w * f]`. */
  image: (unit: ControlnetUnit) => Promise<Float32Array>;
}

/**
 * Runs the nets for one UNet call (the whole latent, or one tile of it) and returns the input
 * with the summed residuals under the UNet's residual input names (the module's steps 1-5).
 */
async function withResiduals(
  units: readonly ControlnetUnit[],
  options: ControlnetHookOptions,
  input: UnetInput,
  state: StepState,
  view: NetView,
): Promise<UnetInput> {
  const specs = controlnetResidualSpecs(units[0]!.config);
  const [batch, , h, w] = input.sampleShape;
  const { n } = state;
  const plane = h * w;
  const latentChannels = view.latentInput.length / (n * plane);
  const mode = options.controlMode ?? "balanced";
  // 1. The net's batch: every pass, or the conditional ones in guess mode (and A1111's
  // "ControlNet is more important") with CFG.
  const skip = (options.guessMode || mode === "control") && state.withUncond ? 1 : 0;
  const netPasses = state.passes.length - skip;
  const netBatch = netPasses * n;
  const [, sequence, width] = input.hiddenShape;
  const common: Record<string, HostTensor> = {
    sample: hostTensor("float32", repeat(view.latentInput, netPasses), [
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
      soft: mode !== "balanced",
    });
    const f = options.vaeFactor;
    const feeds: Record<string, HostTensor> = {
      ...common,
      controlnet_cond: hostTensor(
        "float32",
        await view.image(unit),
        [1, unit.config.conditioningChannels, h * f, w * f],
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
}

function checkUnits(units: readonly ControlnetUnit[]): void {
  if (units.length === 0) throw new RangeError("Cannot run ControlNet without a net");
}

/**
 * The loop hook that runs the nets of a step and feeds their summed residuals to the UNet (see
 * the module documentation).
 */
export function controlnetHook(
  units: readonly ControlnetUnit[],
  options: ControlnetHookOptions,
): LoopHook {
  checkUnits(units);
  return {
    async beforeUnet(input: UnetInput, state: StepState): Promise<UnetInput> {
      const [, , h, w] = input.sampleShape;
      const f = options.vaeFactor;
      const out = await withResiduals(units, options, input, state, {
        latentInput: state.latentInput,
        image: (unit) => unit.image(w * f, h * f),
      });
      if (state.loopIndex === state.loopLength - 1) await options.onLastStep?.();
      return out;
    },
  };
}

/** The two halves of a tiled ControlNet step: see {@linkcode controlnetTileHooks}. */
export interface ControlnetTileHooks {
  /** A loop hook: notes the step (the nets need it per tile) and picks the residual UNet. */
  hook: LoopHook;
  /** A tile hook (`upscaleImg2Img`'s `tileHooks`): runs the nets on one tile. */
  tileHook: TileHook;
}

/**
 * ControlNet for a MultiDiffusion run (multidiffusion.ts): the loop hook notes each step's
 * state and the whole latent's size; the tile hook runs the nets on each latent tile, with the
 * tile's latents (`latentInput[:, :, y:y+h, x:x+w]`) and its crop of each control image (pixels
 * `f*x .. f*(x+w)` by `f*y .. f*(y+h)` of the image at the whole output size), and feeds the
 * residuals to the tile's UNet call. With one tile covering the latent this is
 * {@linkcode controlnetHook} exactly.
 *
 * @example
 * ```ts ignore
 * const { hook, tileHook } = controlnetTileHooks(units, { guessMode: false, vaeFactor: 8, unet });
 * await upscaleImg2Img(sd, { ...params, hooks: [hook], tileHooks: [tileHook], image, strength });
 * ```
 */
export function controlnetTileHooks(
  units: readonly ControlnetUnit[],
  options: ControlnetHookOptions,
): ControlnetTileHooks {
  checkUnits(units);
  let step: { state: StepState; width: number; height: number } | undefined;
  return {
    hook: {
      beforeUnet(input: UnetInput, state: StepState): UnetInput {
        const [, , height, width] = input.sampleShape;
        step = { state, width, height };
        return { ...input, unet: options.unet };
      },
    },
    tileHook: async (input: UnetInput, tile: LatentTile): Promise<UnetInput> => {
      if (step === undefined) {
        throw new RangeError("The ControlNet tile hook ran before its loop hook saw the step");
      }
      const { state, width: W, height: H } = step;
      const f = options.vaeFactor;
      const channels = state.latentInput.length / (state.n * H * W);
      const out = await withResiduals(units, options, input, state, {
        latentInput: cropNchw(
          state.latentInput,
          [state.n, channels, H, W],
          tile.x,
          tile.y,
          tile.width,
          tile.height,
        ),
        image: async (unit) =>
          cropNchw(
            await unit.image(W * f, H * f),
            [1, unit.config.conditioningChannels, H * f, W * f],
            tile.x * f,
            tile.y * f,
            tile.width * f,
            tile.height * f,
          ),
      });
      if (state.loopIndex === state.loopLength - 1 && tile.index === tile.count - 1) {
        await options.onLastStep?.();
      }
      return out;
    },
  };
}
