/**
 * The LoRA network a run trains: which linear layers get a module, how the modules start, and
 * what the saved file calls them.
 *
 * - UNet: `to_q`, `to_k`, `to_v` and `to_out.0` of every attention (the book's and Diffusers'
 *   train_text_to_image_lora.py target modules), as `lora_unet_<Diffusers path>`.
 * - Text encoders (`--text-encoder`): `q_proj`, `k_proj`, `v_proj` and `out_proj` of every
 *   layer's self-attention, as `lora_te_<transformers path>` (SDXL: `lora_te1_`, `lora_te2_`).
 * - Start (kohya-ss networks/lora.py `LoRAModule`): `lora_down` from
 *   `kaiming_uniform_(a=sqrt(5))`, i.e. uniform in `[-1/sqrt(in), 1/sqrt(in))`, and
 *   `lora_up` zero, so the untrained network changes nothing.
 * - Names on disk: SD 1.x/2.x modules keep the Diffusers spelling kohya uses for them; SDXL UNet
 *   modules take the original-LDM spelling kohya's SDXL trainer writes
 *   (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`).
 *
 * @module
 */
import { ldmUnetAliases, normalisePath } from "../adapters/lora_keys.ts";
import type { UnetConfig } from "../models/config.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import type { LoraTarget } from "./lora_parameters.ts";

/** One module of the network. */
export interface LoraModuleSpec {
  /** kohya module name used for training (`lora_unet_…`, `lora_te_…`). */
  module: string;
  target: LoraTarget;
  /** The layer's parameter prefix in its checkpoint (`…attn1.to_q`). */
  path: string;
  inFeatures: number;
  outFeatures: number;
}

const UNET_LAYERS = /\.attn[12]\.(?:to_q|to_k|to_v|to_out\.0)$/;
const TEXT_LAYERS =
  /^text_model\.encoder\.layers\.\d+\.self_attn\.(?:q_proj|k_proj|v_proj|out_proj)$/;

async function linearLayers(
  weights: string,
  pattern: RegExp,
): Promise<Array<{ path: string; inFeatures: number; outFeatures: number }>> {
  using file = await SafetensorsFile.open(weights);
  const out = [];
  for (const [name, info] of file.tensors) {
    if (!name.endsWith(".weight") || info.shape.length !== 2) continue;
    const path = name.slice(0, -".weight".length);
    if (pattern.test(path)) {
      out.push({ path, inFeatures: info.shape[1]!, outFeatures: info.shape[0]! });
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * The UNet modules: every attention's to_q, to_k, to_v and to_out.0 (from the weight file's
 * header).
 *
 * @example
 * ```ts ignore
 * const modules = await unetLoraModules("sd15/unet/diffusion_pytorch_model.safetensors");
 * console.log(modules.length); // 128 for SD 1.5 (16 transformers x 2 attentions x 4)
 * ```
 */
export async function unetLoraModules(weights: string): Promise<LoraModuleSpec[]> {
  const layers = await linearLayers(weights, UNET_LAYERS);
  if (layers.length === 0) {
    throw new RangeError(`The UNet in "${weights}" has no attention layers to train`);
  }
  return layers.map((l) => ({
    ...l,
    module: `lora_unet_${normalisePath(l.path)}`,
    target: "unet",
  }));
}

/**
 * A text encoder's modules: each layer's self-attention q/k/v/out projections.
 *
 * @example
 * ```ts ignore
 * const te = await textEncoderLoraModules("sd15/text_encoder/model.safetensors", "text_encoder", "lora_te_");
 * console.log(te[0]!.module); // lora_te_text_model_encoder_layers_0_self_attn_k_proj
 * ```
 */
export async function textEncoderLoraModules(
  weights: string,
  target: "text_encoder" | "text_encoder_2",
  prefix: string,
): Promise<LoraModuleSpec[]> {
  const layers = await linearLayers(weights, TEXT_LAYERS);
  if (layers.length === 0) {
    throw new RangeError(`The text encoder in "${weights}" has no self-attention layers to train`);
  }
  return layers.map((l) => ({ ...l, module: prefix + normalisePath(l.path), target }));
}

/**
 * A new network of rank `rank`: `lora_down` kaiming-uniform, `lora_up` zero (kohya's start), from
 * a torch-compatible generator seeded `seed`, module by module in order.
 *
 * @example
 * ```ts
 * import { initLora } from "./lora_network.ts";
 * const lora = initLora([{ module: "lora_unet_a", target: "unet", path: "a", inFeatures: 16, outFeatures: 8 }], 4, 0n);
 * const down = lora["lora_unet_a.lora_down.weight"]!;
 * console.assert(down.length === 64 && down.every((v) => Math.abs(v) <= 0.25));
 * console.assert(lora["lora_unet_a.lora_up.weight"]!.every((v) => v === 0));
 * ```
 */
export function initLora(
  modules: readonly LoraModuleSpec[],
  rank: number,
  seed: bigint,
): Record<string, Float32Array> {
  if (!Number.isInteger(rank) || rank < 1) {
    throw new RangeError(`Cannot make a LoRA of rank ${rank}; pass an integer >= 1`);
  }
  const rng = new TorchCpuGenerator(seed);
  const out: Record<string, Float32Array> = {};
  for (const m of modules) {
    if (rank > Math.min(m.inFeatures, m.outFeatures)) {
      throw new RangeError(
        `Cannot make a LoRA of rank ${rank} for "${m.path}" (${m.inFeatures} -> ${m.outFeatures}); ` +
          `pass --rank ${Math.min(m.inFeatures, m.outFeatures)} or less`,
      );
    }
    // kaiming_uniform_(a=sqrt(5)): bound = sqrt(6 / ((1 + a^2) fan_in)) = 1 / sqrt(fan_in)
    const bound = Math.fround(1 / Math.sqrt(m.inFeatures));
    const u = rng.rand([rank, m.inFeatures]);
    out[`${m.module}.lora_down.weight`] = u.map((x) =>
      Math.fround(-bound + Math.fround(2 * bound * x))
    );
    out[`${m.module}.lora_up.weight`] = new Float32Array(m.outFeatures * rank);
  }
  return out;
}

/**
 * The name each module is saved under: SDXL UNet modules in the original-LDM spelling of
 * kohya's SDXL trainer, everything else as trained.
 *
 * @example
 * ```ts ignore
 * const names = savedModuleNames(modules, { sdxl: true, unetConfig, unetParameters });
 * names.get("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q");
 * // "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
 * ```
 */
export function savedModuleNames(
  modules: readonly LoraModuleSpec[],
  options: { sdxl: boolean; unetConfig: UnetConfig; unetParameters: Iterable<string> },
): Map<string, string> {
  const out = new Map<string, string>();
  const aliases = options.sdxl
    ? ldmUnetAliases(options.unetConfig, options.unetParameters)
    : undefined;
  for (const m of modules) {
    let name = m.module;
    if (aliases !== undefined && m.target === "unet") {
      const ldm = aliases.get(`${m.path}.weight`);
      if (ldm === undefined) {
        throw new RangeError(`No original-LDM name for the SDXL UNet layer "${m.path}"`);
      }
      name = `lora_unet_${normalisePath(ldm.slice(0, -".weight".length))}`;
    }
    out.set(m.module, name);
  }
  return out;
}
