/**
 * `denoise lora-train DATASET -o out.safetensors --model M`: trains a LoRA on a folder of
 * captioned images (lib/train) and writes it in kohya format, loadable by A1111, ComfyUI,
 * Diffusers and `denoise generate --lora`.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { existsSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { UsageError } from "../lib/errors.ts";
import { writeFileAtomic, writeOutput } from "../lib/io/output.ts";
import {
  GenerateJob,
  LORA_TRAIN_LR_SCHEDULERS,
  LoraTrainJob,
  pickJobFlags,
  resolveJob,
  withFields,
} from "../lib/job/mod.ts";
import { modelName, resolveModel } from "../lib/pipeline/resolve.ts";
import { runJobs } from "../lib/pipeline/run.ts";
import { randomSeed } from "../lib/pipeline/sampling.ts";
import { seedValue } from "../lib/pipeline/batch.ts";
import { loadCheckpoint } from "../lib/train/checkpoint.ts";
import { trainLora } from "../lib/train/train_lora.ts";
import {
  examples,
  explicitOptions,
  finiteNumber,
  loadJobOption,
  nonNegativeInt,
  positiveInt,
  runContext,
  withJobOptions,
} from "./common.ts";
import { runEnvironment } from "./diffusion.ts";

function seedArg(value: string): string {
  if (!/^\d{1,20}$/.test(value) || BigInt(value) >= 2n ** 64n) {
    throw new UsageError(`"--seed" must be an integer from 0 to 2^64-1, got "${value}"`);
  }
  return value;
}

function positiveNumber(name: string) {
  const parse = finiteNumber(name);
  return (value: string): number => {
    const n = parse(value);
    if (!(n > 0)) throw new UsageError(`"${name}" must be a number > 0, got "${value}"`);
    return n;
  };
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${Math.ceil(s)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${Math.ceil(s - m * 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}

/** The `lora-train` command. */
export function loraTrainCommand() {
  const command = new Command("lora-train")
    .description("train a LoRA on a folder of captioned images (kohya-format .safetensors out)")
    .argument(
      "[dataset]",
      "folder of images with same-name .txt captions (kohya N_name folders), or with a metadata.jsonl",
    )
    .option("-o, --output <file>", "the LoRA file to write (.safetensors)")
    .option("-m, --model <path|alias>", "base model: Diffusers folder, single file or alias")
    .option("--rank <n>", "LoRA rank (default 4)", positiveInt("--rank"))
    .option(
      "--alpha <a>",
      "LoRA alpha; modules scale by alpha/rank (default: the rank)",
      positiveNumber("--alpha"),
    )
    .option("--lr <lr>", "learning rate (default 1e-4)", positiveNumber("--lr"))
    .option(
      "--text-encoder-lr <lr>",
      "learning rate of the text encoders (default --lr)",
      positiveNumber("--text-encoder-lr"),
    )
    .option("--steps <n>", "optimiser steps in all", positiveInt("--steps"))
    .option(
      "--epochs <n>",
      "passes over the dataset (default 100 when --steps is not given)",
      positiveInt("--epochs"),
    )
    .option("--batch-size <n>", "images per step (default 1)", positiveInt("--batch-size"))
    .option(
      "--resolution <px>",
      "training size: square side, or bucket area side (default 512)",
      positiveInt("--resolution"),
    )
    .option(
      "--seed <n>",
      "seed of the run: data order, noise, timesteps, LoRA start (default random)",
      seedArg,
    )
    .option("--text-encoder", "also train LoRA modules on the text encoder(s) (lora_te_*)")
    .option(
      "--noise-offset <f>",
      "Diffusers' noise offset (default 0)",
      finiteNumber("--noise-offset"),
    )
    .option(
      "--snr-gamma <f>",
      "min-SNR loss weighting gamma (5 is the paper's value)",
      positiveNumber("--snr-gamma"),
    )
    .addOption(
      new Option("--lr-scheduler <name>", "learning-rate schedule (default constant)").choices(
        LORA_TRAIN_LR_SCHEDULERS,
      ),
    )
    .option(
      "--lr-warmup-steps <n>",
      "warm-up steps of the schedule (default 0)",
      nonNegativeInt("--lr-warmup-steps"),
    )
    .option(
      "--save-every <n>",
      "write a resumable checkpoint every n steps",
      positiveInt("--save-every"),
    )
    .option("--checkpoint-dir <dir>", "checkpoint folder (default <output stem>-checkpoints/)")
    .option(
      "--keep-checkpoints <n>",
      "checkpoints kept, newest first (default 2)",
      positiveInt("--keep-checkpoints"),
    )
    .option("--resume <dir>", "continue from a checkpoint folder (or one of its step-N folders)")
    .option(
      "--validation-prompt <prompt>",
      "after training, make <output stem>-validation.png of this prompt with the LoRA",
    )
    .option("--checkpointing", "recompute activations in the backward pass: less memory, slower")
    .option("--buckets", "kohya aspect-ratio buckets instead of square crops")
    .addOption(
      new Option("--crop <mode>", "where the square crop is cut (default center)").choices(
        ["center", "random"] as const,
      ),
    )
    .option("--no-flip", "no random horizontal flips")
    .addOption(
      new Option("--prediction-type <type>", "override the scheduler's prediction type").choices(
        ["epsilon", "v_prediction"] as const,
      ),
    )
    .option(
      "--threads <n>",
      "threads per model evaluation (default: all cores)",
      positiveInt("--threads"),
    )
    .addOption(
      new Option("--device <device>", "execution provider").choices(["cpu", "cuda"] as const),
    )
    .option("--overwrite", "replace the output file if it exists")
    .option("--json", "print a JSON summary (output, steps, loss, hashes, job) on stdout");
  command.addHelpText(
    "after",
    examples([
      [
        "denoise lora-train data/ -o cat.safetensors -m sd15 --steps 500 --seed 0",
        "train on images with .txt captions (or kohya 10_name folders)",
      ],
      [
        "denoise lora-train data/ -o cat.safetensors -m sd15 --steps 2000 --save-every 250 --snr-gamma 5 --lr-scheduler cosine --lr-warmup-steps 100",
        "min-SNR weighting, cosine schedule, a checkpoint every 250 steps",
      ],
      [
        "denoise lora-train --resume cat-checkpoints/",
        "continue a run that was stopped (the options come from the checkpoint)",
      ],
      [
        'denoise generate "a photo of sks cat" -m sd15 --lora cat.safetensors:0.8 -o cat.png',
        "use the result",
      ],
    ]) +
      "\nProgress: loss, learning rate, it/s and ETA on stderr (--progress json: one JSON line per step).\n" +
      "See docs/lora-train.md.\n",
  );
  return withJobOptions(command).action(async (datasetArg, options, cmd) => {
    const ctx = runContext(cmd);
    // 1. The Job: checkpoint (with --resume) < --job < flags.
    const flags = pickJobFlags(LoraTrainJob, explicitOptions(cmd));
    if (datasetArg !== undefined) flags.dataset = datasetArg;
    const loaded = await loadJobOption(options.job);
    const checkpoint = options.resume !== undefined
      ? await loadCheckpoint(options.resume)
      : undefined;
    let document = loaded?.document;
    let label = loaded?.label;
    if (document === undefined && checkpoint !== undefined) {
      document = { ...checkpoint.state.job };
      delete document.resume;
      label = `the checkpoint ${checkpoint.path}`;
    }
    const resolved = resolveJob(LoraTrainJob, "lora-train", {
      flags,
      ...(document !== undefined ? { document, documentLabel: label ?? "--job" } : {}),
    });
    const job = withFields(LoraTrainJob, resolved, {
      alpha: resolved.alpha ?? resolved.rank,
      seed: resolved.seed ?? seedValue(randomSeed()),
    });
    if (options.dryRun) {
      await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
      return;
    }
    // 2. Output, model, checkpoints.
    if (extname(job.output).toLowerCase() !== ".safetensors") {
      throw new UsageError(`"-o ${job.output}" must end in .safetensors`);
    }
    if (existsSync(job.output) && !options.overwrite) {
      throw new UsageError(`"${job.output}" exists`, { hint: "pass --overwrite to replace it" });
    }
    if (!existsSync(dirname(resolve(job.output)))) {
      throw new UsageError(`The folder of "${job.output}" does not exist`);
    }
    const env = runEnvironment({ threads: options.threads, device: options.device });
    const modelDir = await resolveModel(job.model, env);
    const stem = basename(job.output, extname(job.output));
    const checkpointDir = job.checkpointDir ?? join(dirname(job.output), `${stem}-checkpoints`);
    // 3. Train.
    const seed = BigInt(job.seed!);
    let lastBar = 0;
    const result = await trainLora({
      model: modelDir,
      modelName: modelName(job.model, modelDir),
      dataset: job.dataset,
      output: job.output,
      rank: job.rank,
      alpha: job.alpha!,
      lr: job.lr,
      ...(job.textEncoderLr !== undefined ? { textEncoderLr: job.textEncoderLr } : {}),
      ...(job.steps !== undefined ? { steps: job.steps } : {}),
      ...(job.epochs !== undefined ? { epochs: job.epochs } : {}),
      batchSize: job.batchSize,
      resolution: job.resolution,
      seed,
      textEncoder: job.textEncoder,
      noiseOffset: job.noiseOffset,
      ...(job.snrGamma !== undefined ? { snrGamma: job.snrGamma } : {}),
      lrScheduler: job.lrScheduler,
      lrWarmupSteps: job.lrWarmupSteps,
      ...(job.saveEvery !== undefined ? { saveEvery: job.saveEvery } : {}),
      checkpointDir,
      keepCheckpoints: job.keepCheckpoints,
      ...(checkpoint !== undefined ? { resume: checkpoint } : {}),
      checkpointing: job.checkpointing,
      buckets: job.buckets,
      crop: job.crop,
      flip: job.flip,
      ...(job.predictionType !== undefined ? { predictionType: job.predictionType } : {}),
      cacheDir: env.cacheDir,
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      ...(options.device !== undefined ? { executionProvider: options.device } : {}),
      job: { ...job, resume: undefined },
    }, {
      onInfo: (m) => ctx.info(m),
      onWarning: (m) => ctx.warn(m),
      onCheckpoint: (path, step) => {
        ctx.progress.finish();
        ctx.info(`checkpoint at step ${step}: ${path}`);
      },
      onProgress: (p) => {
        const detail = `loss ${p.loss.toFixed(4)} (avg ${p.averageLoss.toFixed(4)}) lr ${
          p.lr.toExponential(2)
        } epoch ${p.epoch}`;
        if (ctx.progress.mode === "none" && !ctx.globals.quiet) {
          // Not a terminal: a plain line every 10 seconds and at the end.
          const now = performance.now();
          if (now - lastBar < 10_000 && p.step < p.total) return;
          lastBar = now;
          ctx.info(
            `lora-train step ${p.step}/${p.total} ${detail} ${p.itPerSecond.toFixed(2)} it/s ETA ${
              formatSeconds(p.etaSeconds)
            }`,
          );
          return;
        }
        ctx.progress.report({
          task: "lora-train",
          step: p.step,
          total: p.total,
          detail,
          rate: p.itPerSecond,
          values: {
            loss: p.loss,
            avg_loss: p.averageLoss,
            lr: p.lr,
            epoch: p.epoch,
            it_s: p.itPerSecond,
            eta_s: Math.round(p.etaSeconds * 10) / 10,
          },
        });
      },
    }).finally(() => ctx.progress.finish());
    ctx.info(
      `wrote ${job.output} (${result.modules} modules, ${result.steps} steps, loss ${
        result.loss.toFixed(4)
      }, sshs_model_hash ${result.hashes.modelHash.slice(0, 12)})`,
    );
    // 4. Validation image.
    let validation: string | undefined;
    if (job.validationPrompt !== undefined) {
      validation = join(dirname(job.output), `${stem}-validation.png`);
      const genJob = resolveJob(GenerateJob, "generate", {
        flags: {
          prompt: job.validationPrompt,
          model: job.model,
          seed: job.seed,
          width: job.resolution,
          height: job.resolution,
          lora: [{ path: job.output, scale: 1 }],
        },
      });
      await runJobs(env, [genJob], {
        format: "png",
        onImage: async (image) => await writeFileAtomic(validation!, image.bytes),
      });
      ctx.info(`wrote ${validation}`);
    }
    if (options.json) {
      await writeOutput(
        JSON.stringify({
          output: job.output,
          steps: result.steps,
          epochs: result.epochs,
          loss: result.loss,
          images: result.images,
          train_images: result.trainImages,
          modules: result.modules,
          seconds: Math.round(result.seconds * 1000) / 1000,
          sshs_model_hash: result.hashes.modelHash,
          sshs_legacy_hash: result.hashes.legacyHash,
          ...(validation !== undefined ? { validation } : {}),
          job,
        }) + "\n",
        { binary: false },
      );
    }
  });
}
