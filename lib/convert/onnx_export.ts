/**
 * Diffusers folder -> ONNX export in the layout Hugging Face Optimum writes
 * (`optimum-cli export onnx`, `ORTStableDiffusionPipeline.save_pretrained`):
 *
 * ```
 * model_index.json  scheduler/  tokenizer/ (tokenizer_2/)
 * text_encoder/model.onnx (+ text_encoder_2/)    input_ids int32 [batch, sequence]
 *   -> last_hidden_state, pooler_output (text_embeds with projection), hidden_states.N
 * unet/model.onnx + unet/model.onnx.data         sample, timestep (float32 [steps]),
 *   encoder_hidden_states (+ text_embeds, time_ids for SDXL) -> out_sample
 * vae_encoder/model.onnx                         sample -> latent_parameters
 * vae_decoder/model.onnx                         latent_sample -> sample
 * ```
 *
 * Names follow Optimum's `model_configs.py` (UNetOnnxConfig, VaeEncoderOnnxConfig,
 * VaeDecoderOnnxConfig, CLIPTextOnnxConfig). The VAE encoder returns the posterior's moments
 * (`latent_parameters`, mean and log-variance stacked on the channel axis) as Optimum >= 1.22
 * does, not a sampled latent: sampling needs a generator the caller controls. The timestep is
 * float32, as Optimum's current dummy inputs make it; Diffusers' ONNX pipelines read the
 * declared type. `input_ids` is int32 as in Diffusers' ONNX pipelines, cast to int64 inside.
 * Attention uses plain ONNX operators (no com.microsoft ops) so other runtimes load the files.
 *
 * @module
 */
import * as fsp from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildClipTextModel } from "../models/clip_text.ts";
import { buildUnet } from "../models/unet.ts";
import { buildVaeDecoder, buildVaeEncoder } from "../models/vae.ts";
import type { AttentionKernel } from "../models/layers.ts";
import type { OnnxModel } from "../onnx/graph.ts";
import { writeModel } from "../onnx/model_file.ts";
import { DataType, type NodeMessage } from "../onnx/proto.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { openDiffusersModel } from "../model_io/diffusers_folder.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";

/** Options of {@linkcode exportOnnx}. */
export interface ExportOnnxOptions {
  /** Attention kernel: "onnx" (default, portable) or "fused" (onnxruntime's contrib op). */
  attention?: AttentionKernel;
  /** Replace a non-empty output folder. */
  overwrite?: boolean;
  /** Called after each component. */
  onMessage?: (message: string) => void;
}

/** Graph input/output names of each exported component. */
export const OPTIMUM_NAMES = {
  text_encoder: { inputs: ["input_ids"], outputs: ["last_hidden_state", "pooler_output"] },
  unet: { inputs: ["sample", "timestep", "encoder_hidden_states"], outputs: ["out_sample"] },
  vae_encoder: { inputs: ["sample"], outputs: ["latent_parameters"] },
  vae_decoder: { inputs: ["latent_sample"], outputs: ["sample"] },
} as const;

function sortedJson(value: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) sorted[k] = value[k];
  return JSON.stringify(sorted, null, 2) + "\n";
}

/**
 * Optimum's text-encoder interface on a builder graph: `input_ids` becomes int32 (cast to int64
 * inside) and the extra `normed_hidden_states.N` outputs the pipeline uses are dropped.
 */
export function toOptimumTextEncoder(model: OnnxModel): OnnxModel {
  const graph = model.proto.graph;
  const internal = "input_ids_int64";
  const cast: NodeMessage = {
    input: ["input_ids"],
    output: [internal],
    name: "input_ids_cast",
    opType: "Cast",
    attribute: [{ name: "to", type: 2, /* INT */ i: DataType.int64 }],
  };
  const node = graph.node.map((n) => ({
    ...n,
    input: n.input.map((i) => i === "input_ids" ? internal : i),
  }));
  const input = graph.input.map((v) =>
    v.name === "input_ids"
      ? { ...v, type: { tensorType: { ...v.type.tensorType, elemType: DataType.int32 } } }
      : v
  );
  const output = graph.output.filter((o) => !o.name.startsWith("normed_hidden_states."));
  return {
    proto: { ...model.proto, graph: { ...graph, node: [cast, ...node], input, output } },
    initializers: model.initializers,
  };
}

async function buildAndWrite(
  weights: string,
  outPath: string,
  build: (sources: ReturnType<typeof tensorSources>) => OnnxModel,
): Promise<void> {
  // The file stays open until writeModel has read every tensor.
  const file = await SafetensorsFile.open(weights);
  try {
    const model = build(tensorSources(file, { floatType: "float32" }));
    await writeModel(model, outPath, { fileSources: "copy" });
  } finally {
    file.close();
  }
}

/**
 * Exports a Diffusers folder as Optimum-layout ONNX models. Weights are float32 copies in
 * external data files beside each graph, so the export is self-contained.
 *
 * @example
 * ```ts ignore
 * import { exportOnnx } from "./onnx_export.ts";
 * await exportOnnx("models/sd15", "sd15-onnx");
 * ```
 */
export async function exportOnnx(
  diffusersDir: string,
  outDir: string,
  options: ExportOnnxOptions = {},
): Promise<string[]> {
  const attention = options.attention ?? "onnx";
  const model = await openDiffusersModel(diffusersDir);
  const target = resolve(outDir);
  if (existsSync(target) && (await Array.fromAsync(Deno.readDir(target))).length > 0) {
    if (!options.overwrite) {
      throw new RangeError(
        `Cannot write to "${outDir}": the folder exists and is not empty; remove it or pass another -o`,
      );
    }
  }
  const temp = `${target}.partial-${crypto.randomUUID().slice(0, 8)}`;
  const written: string[] = [];
  const say = options.onMessage ?? (() => {});
  try {
    // 1. Text encoders.
    const encoders = [
      ["text_encoder", model.textEncoder, model.tokenizerDir],
      ["text_encoder_2", model.textEncoder2, model.tokenizer2Dir],
    ] as const;
    for (const [name, te, tok] of encoders) {
      if (te === undefined) continue;
      await buildAndWrite(
        te.weights,
        join(temp, name, "model.onnx"),
        (sources) =>
          toOptimumTextEncoder(buildClipTextModel(te.config, sources, { source: te.weights })),
      );
      await fsp.writeFile(join(temp, name, "config.json"), sortedJson(te.rawConfig));
      if (tok !== undefined) {
        await fsp.cp(tok, join(temp, name.replace("text_encoder", "tokenizer")), {
          recursive: true,
        });
      }
      written.push(name);
      say(`${name}: written`);
    }

    // 2. UNet.
    await buildAndWrite(
      model.unet.weights,
      join(temp, "unet", "model.onnx"),
      (sources) => buildUnet(model.unet.config, sources, { attention }),
    );
    await fsp.writeFile(join(temp, "unet", "config.json"), sortedJson(model.unet.rawConfig));
    written.push("unet");
    say("unet: written");

    // 3. VAE encoder and decoder.
    await buildAndWrite(
      model.vae.weights,
      join(temp, "vae_encoder", "model.onnx"),
      (sources) => buildVaeEncoder(model.vae.config, sources, { attention }),
    );
    await buildAndWrite(
      model.vae.weights,
      join(temp, "vae_decoder", "model.onnx"),
      (sources) => buildVaeDecoder(model.vae.config, sources, { attention }),
    );
    for (const name of ["vae_encoder", "vae_decoder"]) {
      await fsp.writeFile(join(temp, name, "config.json"), sortedJson(model.vae.rawConfig));
      written.push(name);
    }
    say("vae_encoder, vae_decoder: written");

    // 4. Scheduler and index.
    await fsp.mkdir(join(temp, "scheduler"), { recursive: true });
    await fsp.writeFile(
      join(temp, "scheduler", "scheduler_config.json"),
      sortedJson(model.schedulerConfig),
    );
    const isXl = model.family === "sdxl" || model.family === "sdxl-refiner";
    const onnx = ["diffusers", "OnnxRuntimeModel"];
    const index: Record<string, unknown> = {
      _class_name: isXl
        ? (model.family === "sdxl"
          ? "ORTStableDiffusionXLPipeline"
          : "ORTStableDiffusionXLImg2ImgPipeline")
        : model.inpainting
        ? "OnnxStableDiffusionInpaintPipeline"
        : "OnnxStableDiffusionPipeline",
      _diffusers_version: "0.27.2",
      scheduler: ["diffusers", String(model.schedulerConfig["_class_name"] ?? "PNDMScheduler")],
      unet: onnx,
      vae_decoder: onnx,
      vae_encoder: onnx,
    };
    for (const name of written.filter((w) => w.startsWith("text_encoder"))) {
      index[name] = onnx;
      index[name.replace("text_encoder", "tokenizer")] = ["transformers", "CLIPTokenizer"];
    }
    if (!isXl) {
      index["feature_extractor"] = [null, null];
      index["safety_checker"] = [null, null];
      index["requires_safety_checker"] = false;
    } else {
      index["force_zeros_for_empty_prompt"] = model.forceZerosForEmptyPrompt;
      if (model.requiresAestheticsScore) index["requires_aesthetics_score"] = true;
    }
    await fsp.writeFile(join(temp, "model_index.json"), sortedJson(index));

    if (existsSync(target)) await fsp.rm(target, { recursive: true, force: true });
    await fsp.rename(temp, target);
  } catch (error) {
    await fsp.rm(temp, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
  return written;
}
