/**
 * Diffusers folder -> original-LDM single-file .safetensors (what A1111 / ComfyUI load), the
 * reverse of {@linkcode convertCheckpoint} through the same key table. The Diffusers configs are
 * stored in the file's metadata so that converting it back restores them exactly (shapes cannot
 * tell head counts or sample size); other tools ignore that metadata.
 *
 * @module
 */
import { SafetensorsFile } from "../weights/safetensors.ts";
import { type TensorToWrite, writeSafetensors } from "../weights/safetensors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type DiffusersModel, openDiffusersModel } from "../model_io/diffusers_folder.ts";
import type { DetectedTextEncoder, SynthesizedConfigs } from "./detect.ts";
import { LDM_PREFIX } from "../model_io/key_map.ts";
import { castTensor, diffusersToLdm, fuseQkv, type OutputDtype } from "./tensor_ops.ts";
import { componentMappings, CONFIGS_METADATA_KEY } from "./to_diffusers.ts";

/** Options of {@linkcode writeSingleFile}. */
export interface WriteSingleFileOptions {
  /** Output precision (default "keep"). */
  dtype?: OutputDtype;
  /** Called with progress messages. */
  onMessage?: (message: string) => void;
}

/**
 * The LDM text-encoder layout of a Diffusers model: SDXL (two encoders) or the refiner (only
 * the second); otherwise OpenCLIP (SD 2.x) when the encoder uses exact GELU, as ViT-H and
 * ViT-bigG do, and OpenAI CLIP (SD 1.x, quick GELU) otherwise.
 */
export function textEncodersFor(model: DiffusersModel): DetectedTextEncoder[] {
  if (model.textEncoder2 !== undefined) {
    return model.textEncoder === undefined
      ? [{ folder: "text_encoder_2", layout: "openclip", prefix: LDM_PREFIX.refinerText2 }]
      : [
        { folder: "text_encoder", layout: "clip", prefix: LDM_PREFIX.sdxlText },
        { folder: "text_encoder_2", layout: "openclip", prefix: LDM_PREFIX.sdxlText2 },
      ];
  }
  const act = model.textEncoder?.rawConfig["hidden_act"] ?? "quick_gelu";
  return act === "gelu"
    ? [{ folder: "text_encoder", layout: "openclip", prefix: LDM_PREFIX.sd2Text }]
    : [{ folder: "text_encoder", layout: "clip", prefix: LDM_PREFIX.sd1Text }];
}

function withoutPrivate(c: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(c).filter(([k]) => !k.startsWith("_")));
}

/**
 * Writes a Diffusers folder's UNet, VAE and text encoder(s) as one LDM-layout .safetensors.
 * Returns the number of tensors written.
 *
 * @example
 * ```ts ignore
 * import { writeSingleFile } from "./to_single_file.ts";
 * await writeSingleFile("models/sd15", "sd15.safetensors", { dtype: "fp16" });
 * ```
 */
export async function writeSingleFile(
  diffusersDir: string,
  outPath: string,
  options: WriteSingleFileOptions = {},
): Promise<number> {
  const dtype = options.dtype ?? "keep";
  const model = await openDiffusersModel(diffusersDir);
  const textEncoders = textEncodersFor(model);
  const configs: SynthesizedConfigs = {
    unet: withoutPrivate(model.unet.rawConfig),
    vae: withoutPrivate(model.vae.rawConfig),
    scheduler: model.schedulerConfig,
    index: { _class_name: model.pipelineClass },
  };
  if (model.textEncoder2 !== undefined) {
    configs.index["force_zeros_for_empty_prompt"] = model.forceZerosForEmptyPrompt;
    if (model.requiresAestheticsScore) configs.index["requires_aesthetics_score"] = true;
  } else {
    configs.index["requires_safety_checker"] = false;
  }
  if (model.textEncoder) configs.textEncoder = model.textEncoder.rawConfig;
  if (model.textEncoder2) configs.textEncoder2 = model.textEncoder2.rawConfig;
  const files: Record<string, string | undefined> = {
    unet: model.unet.weights,
    vae: model.vae.weights,
    text_encoder: model.textEncoder?.weights,
    text_encoder_2: model.textEncoder2?.weights,
  };

  const out: TensorToWrite[] = [];
  for (const c of componentMappings({ textEncoders }, configs)) {
    const file = await SafetensorsFile.open(files[c.folder]!);
    try {
      const expected = new Set(c.maps.map((m) => m.diffusers));
      const leftover = [...file.tensors.keys()].filter((k) => !expected.has(k));
      if (leftover.length > 0) {
        throw new RangeError(
          `Cannot write the single file: ${c.folder} has ${leftover.length} tensor(s) the ` +
            `builders do not use, e.g. "${leftover[0]}"`,
        );
      }
      const fused = new Map<string, Tensor[]>();
      for (const m of c.maps) {
        if (m.op.kind === "positionIds") continue;
        if (!file.tensors.has(m.diffusers)) {
          if (m.diffusers.endsWith("position_ids")) continue;
          throw new RangeError(
            `Cannot write the single file: ${c.folder} has no "${m.diffusers}"`,
          );
        }
        const info = file.info(m.diffusers);
        let t: Tensor = {
          dtype: info.dtype,
          shape: [...info.shape],
          data: await file.read(m.diffusers),
        };
        t = castTensor(t, dtype);
        if (m.op.kind === "qkv") {
          const parts = fused.get(m.ldm) ?? [];
          parts[m.op.part] = t;
          fused.set(m.ldm, parts);
          if (parts.filter((p) => p !== undefined).length === 3) {
            const f = fuseQkv(parts, m.ldm);
            out.push({ name: m.ldm, dtype: f.dtype, shape: f.shape, data: f.data });
          }
          continue;
        }
        t = diffusersToLdm(t, m.op);
        out.push({ name: m.ldm, dtype: t.dtype, shape: t.shape, data: t.data });
      }
    } finally {
      file.close();
    }
    options.onMessage?.(`${c.folder}: done`);
  }
  await writeSafetensors(outPath, out, {
    format: "pt",
    [CONFIGS_METADATA_KEY]: JSON.stringify(configs),
  });
  return out.length;
}
