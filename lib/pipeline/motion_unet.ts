/**
 * The motion UNet of `animate` as a component of a loaded model: Diffusers'
 * `UNetMotionModel.from_unet2d(unet, motion_adapter)` built from the model's UNet weights (with
 * the run's LoRAs merged, as every UNet of the model) plus a motion module (with its motion LoRAs
 * merged), registered as `"unet_motion"` in the model's component registry so it is opened once,
 * cached on disk like every built graph and released with the rest.
 *
 * The build-cache key holds the UNet's config and file, the motion module's config and file
 * identity, the image LoRAs' key and each motion LoRA's file identity and scale: any change
 * rebuilds, nothing else does.
 *
 * @module
 */
import { basename } from "node:path";
import { applyMotionLoras, type MotionLoraSpec } from "../adapters/motion_lora.ts";
import { IoError } from "../errors.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { fileIdentity } from "../onnx/cache.ts";
import { openComponent } from "../model_io/engine.ts";
import { assertMotionFits, motionConfigJson } from "../models/motion.ts";
import { type MotionAdapterFile, openMotionAdapter } from "../models/motion_adapter.ts";
import { buildUnet } from "../models/unet.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";

/** The component name the motion UNet is registered under. */
export const MOTION_UNET = "unet_motion";

/** A motion-module weight name (`down_blocks.0.motion_modules.1.…`, `mid_block.motion_modules.0.…`). */
const MOTION_NAME = /^(?:(?:down|up)_blocks\.\d+|mid_block)\.motion_modules\.\d+\./;

/**
 * Opens a motion module (AnimateDiff file or Diffusers MotionAdapter folder) for a model whose
 * UNet has `unet` config, checking first that it fits (a module for another base model is a
 * RangeError naming both shapes). Close it when the run is done.
 *
 * @example
 * ```ts ignore
 * using motion = await openMotionModule("mm_sd_v15_v2.ckpt", sd.model.unet.config);
 * ```
 */
export async function openMotionModule(
  path: string,
  unet: StableDiffusion["model"]["unet"]["config"],
): Promise<MotionAdapterFile> {
  const motion = await openMotionAdapter(path);
  try {
    assertMotionFits(unet, motion.config);
  } catch (error) {
    motion.close();
    throw error;
  }
  return motion;
}

/** Options of {@linkcode registerMotionUnet}. */
export interface RegisterMotionUnetOptions {
  /** Motion LoRAs merged into the motion module, in order. */
  motionLoras?: readonly MotionLoraSpec[];
  /** What the motion LoRAs changed (called once, when the graph is built). */
  onMotionLoras?: (ledgers: Awaited<ReturnType<typeof applyMotionLoras>>["ledgers"]) => void;
}

/** A motion LoRA file's identity for the cache key; a missing file is an IoError naming it. */
async function loraIdentity(path: string) {
  try {
    return await fileIdentity(path);
  } catch (error) {
    throw new IoError(`Cannot read the motion LoRA "${path}": ${(error as Error).message}`, {
      hint: "check the --motion-lora path",
      cause: error,
    });
  }
}

/**
 * Registers the motion UNet (`"unet_motion"`) of `sd` with the motion module `motion` (kept
 * open by the caller until the session is open). The graph is built on first use.
 *
 * @example
 * ```ts ignore
 * using motion = await openMotionModule("mm_sd_v15_v2.ckpt", sd.model.unet.config);
 * await registerMotionUnet(sd, motion, { motionLoras: [{ path: "v2_lora_ZoomIn.ckpt", scale: 0.8 }] });
 * const unet = sd.unetCall("unet_motion");
 * ```
 */
export async function registerMotionUnet(
  sd: StableDiffusion,
  motion: MotionAdapterFile,
  options: RegisterMotionUnetOptions = {},
): Promise<void> {
  const m = sd.model;
  if (m.onnx !== undefined) {
    throw new RangeError(
      `Cannot add motion modules to the ONNX export in ${m.dir}: its UNet is a fixed graph; ` +
        `use the Diffusers folder or single file it was exported from`,
    );
  }
  assertMotionFits(m.unet.config, motion.config);
  const loras = options.motionLoras ?? [];
  const floatType = sd.options.floatType ?? "float32";
  // --precision int8 quantises the motion modules' linears with the UNet's (one ModelContext).
  const quantize = sd.options.quantize;
  const imageLoras = sd.options.transforms?.unet;
  const motionKey = {
    config: motionConfigJson(motion.config),
    file: await fileIdentity(motion.path),
    layout: motion.layout,
    loras: await Promise.all(
      loras.map(async (l) => ({ file: await loraIdentity(l.path), scale: l.scale })),
    ),
  };
  await sd.components.register(MOTION_UNET, () =>
    openComponent({
      kind: MOTION_UNET,
      weights: m.unet.weights,
      config: { unet: m.unet.rawConfig, motion: motionKey },
      floatType,
      quantize,
      // Runs only when the graph is built: image LoRAs on the UNet's weights, then the motion
      // module's weights (motion LoRAs merged) joined to them, all checked and cast as one.
      transform: {
        key: JSON.stringify({ lora: imageLoras?.key ?? null, motion: motionKey }),
        apply: async (sources) => {
          const unet = imageLoras ? await imageLoras.apply(sources) : sources;
          let weights: ReadonlyMap<string, TensorSource> = motion.weights;
          if (loras.length > 0) {
            const merged = await applyMotionLoras(motion.weights, loras);
            options.onMotionLoras?.(merged.ledgers);
            weights = merged.weights;
          }
          const joined = new Map(unet);
          for (const [name, source] of weights) {
            if (joined.has(name)) {
              throw new RangeError(
                `Cannot add the motion module "${basename(motion.path)}": "${name}" is also a ` +
                  `weight of the model's UNet`,
              );
            }
            joined.set(name, source);
          }
          return joined;
        },
      },
      build: (sources) => {
        const unet = new Map<string, TensorSource>();
        const modules = new Map<string, TensorSource>();
        for (const [name, source] of sources) {
          (MOTION_NAME.test(name) ? modules : unet).set(name, source);
        }
        return buildUnet(m.unet.config, unet, {
          floatType,
          quantize,
          name: "unet_motion",
          motion: { config: motion.config, weights: modules },
        });
      },
    }, sd.engineOptions));
}
