/**
 * `denoise convert-ckpt`: single-file checkpoints (original LDM layout, .safetensors or .ckpt)
 * to Diffusers folders, and Diffusers folders back to single files, with no Python.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  convertCheckpoint,
  exportOnnx,
  findOriginalConfig,
  resolveTokenizerDir,
  writeSingleFile,
} from "../lib/convert/mod.ts";
import { UsageError } from "../lib/errors.ts";
import { cacheRoot } from "../lib/hub/mod.ts";
import { ConvertCkptJob } from "../lib/job/mod.ts";
import { CHECKPOINT_CONFIGS } from "../lib/convert/mod.ts";
import { commandJob, examples, runContext, withJobOptions } from "./common.ts";

function root(): string {
  return cacheRoot({
    DENOISE_HOME: Deno.env.get("DENOISE_HOME"),
    XDG_CACHE_HOME: Deno.env.get("XDG_CACHE_HOME"),
    HOME: Deno.env.get("HOME"),
  });
}

/** The `convert-ckpt` command. */
export function convertCkptCommand() {
  const command = new Command("convert-ckpt")
    .description(
      "convert a single-file checkpoint (.safetensors/.ckpt, LDM layout) to a Diffusers folder, " +
        "or a Diffusers folder to a single file",
    )
    .argument("[input]", "checkpoint file (or, with --to single-file, a Diffusers folder)")
    .option(
      "-o, --output <path>",
      "output folder (or .safetensors file with --to single-file)",
    )
    .addOption(
      new Option("--to <format>", "what to write").choices(
        ["diffusers", "onnx", "single-file"] as const,
      )
        .default("diffusers" as const),
    )
    .addOption(
      new Option("--dtype <dtype>", "output precision (default: as stored)").choices(
        ["fp32", "fp16", "bf16"] as const,
      ),
    )
    .addOption(
      new Option("--config <family>", "model family; auto detects it from keys and shapes")
        .choices([...CHECKPOINT_CONFIGS, "auto"] as const).default("auto" as const),
    )
    .option(
      "--original-config <yaml>",
      "the checkpoint's LDM inference YAML (default: <name>.yaml beside it)",
    )
    .option(
      "--config-from <dir>",
      "take component configs from this Diffusers folder of the same architecture",
    )
    .option(
      "--vae <file>",
      "use this VAE (LDM or Diffusers key layout) instead of the checkpoint's",
    )
    .option(
      "--tokenizer <dir>",
      "folder with the CLIP vocab.json and merges.txt (default: tokenizer/ beside the file, a " +
        "cached model's, else the vocabulary shipped with denoise)",
    )
    .option("--extract-ema", "use the EMA copy of the UNet weights (model_ema.*)")
    .option("--overwrite", "replace a non-empty output folder")
    .addHelpText(
      "after",
      examples([
        [
          "denoise convert-ckpt v1-5-pruned-emaonly.safetensors -o sd15",
          "single file -> Diffusers folder (the CLIP vocabulary ships with denoise)",
        ],
        [
          "denoise convert-ckpt 768-v-ema.ckpt -o sd21 --config sd2-v --dtype fp16",
          "a .ckpt (restricted unpickler) with the family forced",
        ],
        [
          "denoise convert-ckpt model.safetensors --to onnx -o model-onnx --tokenizer clip/",
          "Optimum-layout ONNX export (text_encoder/, unet/, vae_encoder/, vae_decoder/)",
        ],
        [
          "denoise convert-ckpt sd15/ --to single-file -o sd15.safetensors",
          "Diffusers folder -> LDM single file for A1111 / ComfyUI",
        ],
      ]) + "\nEnvironment: DENOISE_TOKENIZER (tokenizer folder), DENOISE_HOME (cache folder).\n" +
        "See docs/convert-ckpt.md.\n",
    );
  return withJobOptions(command)
    .action(async (inputArg, _flags, command) => {
      const ctx = runContext(command);
      const options = await commandJob(command, ConvertCkptJob, "convert-ckpt", {
        input: inputArg,
      });
      if (options === undefined) return; // --dry-run printed the Job
      const input = options.input;
      if (!existsSync(input)) {
        throw new UsageError(`"${input}" does not exist`);
      }
      const isDir = statSync(input).isDirectory();
      if (options.to === "single-file") {
        if (!isDir) {
          throw new UsageError(
            `--to single-file needs a Diffusers folder, and "${input}" is a file`,
          );
        }
        if (existsSync(options.output) && !options.overwrite) {
          throw new UsageError(`"${options.output}" exists`, {
            hint: "pass --overwrite to replace it",
          });
        }
        const n = await writeSingleFile(input, options.output, {
          ...(options.dtype ? { dtype: options.dtype } : {}),
          onMessage: (m) => ctx.debug(m),
        });
        ctx.info(`wrote ${options.output} (${n} tensors)`);
        return;
      }
      if (options.to === "onnx" && isDir) {
        const written = await exportOnnx(input, options.output, {
          overwrite: options.overwrite,
          onMessage: (m) => ctx.debug(m),
        });
        ctx.info(`wrote ${options.output} (${written.join(", ")})`);
        return;
      }
      if (isDir) {
        throw new UsageError(
          `"${input}" is a folder; convert-ckpt reads a single-file checkpoint`,
          {
            hint: "pass --to single-file to write a folder as a single file",
          },
        );
      }
      // Asked for once the file is known to be a checkpoint.
      const tokenizerDir = () =>
        resolveTokenizerDir(input, {
          tokenizerDir: options.tokenizer ?? Deno.env.get("DENOISE_TOKENIZER"),
          cacheDir: root(),
        });
      const originalConfig = options.originalConfig ?? findOriginalConfig(input);
      if (originalConfig !== undefined && options.originalConfig === undefined) {
        ctx.info(`using the original config ${originalConfig}`);
      }
      // --to onnx from a single file goes through a temporary Diffusers folder.
      const folder = options.to === "onnx"
        ? join(await Deno.makeTempDir({ prefix: "denoise-convert-" }), "diffusers")
        : options.output;
      const result = await convertCheckpoint(input, folder, {
        config: options.config,
        tokenizerDir,
        ...(options.dtype ? { dtype: options.dtype } : {}),
        ...(options.vae !== undefined ? { vae: options.vae } : {}),
        ...(originalConfig !== undefined ? { originalConfig } : {}),
        ...(options.configFrom !== undefined ? { configFrom: options.configFrom } : {}),
        extractEma: options.extractEma,
        overwrite: options.overwrite,
        onMessage: (m) => ctx.debug(m),
      });
      ctx.info(`detected: ${result.detected.label}`);
      for (const note of result.detected.notes) ctx.info(`  ${note}`);
      if (options.to === "onnx") {
        try {
          const written = await exportOnnx(folder, options.output, {
            overwrite: options.overwrite,
            onMessage: (m) => ctx.debug(m),
          });
          ctx.info(`wrote ${options.output} (${written.join(", ")})`);
        } finally {
          await Deno.remove(dirname(folder), { recursive: true }).catch(() => {});
        }
        return;
      }
      const counts = Object.entries(result.tensors).map(([k, v]) => `${k} ${v}`).join(", ");
      ctx.info(`wrote ${result.outDir} (${counts} tensors)`);
    });
}
