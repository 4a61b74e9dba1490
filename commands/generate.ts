/**
 * `denoise generate [PROMPT]`: text to image. Flags become a GenerateJob (lib/job.ts); the
 * pipeline (lib/pipeline) makes the images; this file decides where they go.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { InputError, UsageError } from "../lib/errors.ts";
import { writeOutput } from "../lib/io/output.ts";
import { GenerateJob, pickJobFlags, readJobLines, resolveJob } from "../lib/job/mod.ts";
import { parseShard, seedValue } from "../lib/pipeline/batch.ts";
import { countImages, runJobs } from "../lib/pipeline/run.ts";
import { randomSeed } from "../lib/pipeline/sampling.ts";
import { resolveHiresUpscaler, upscalerOpener } from "../lib/upscale/model_upscaler.ts";
import {
  examples,
  explicitOptions,
  finiteNumber,
  loadJobOption,
  positiveInt,
  runContext,
} from "./common.ts";
import {
  addDiffusionOptions,
  debugLedger,
  type DiffusionOptions,
  madeCheck,
  planOutput,
  runEnvironment,
  SEED_NOTE,
  writeImage,
} from "./diffusion.ts";

/** Fixes a random seed for a job that has none, so it is recorded and every shard agrees. */
function withSeed(job: GenerateJob, index: number, jobsFile: boolean): GenerateJob {
  if (job.seed !== undefined) return job;
  if (jobsFile) {
    throw new InputError(`Job ${index + 1} of the jobs file has no seed`, {
      hint: "give every job a seed so shards and reruns agree on the images",
    });
  }
  return { ...job, seed: seedValue(randomSeed()) };
}

/** The `generate` command. */
export function generateCommand() {
  const command = new Command("generate")
    .description("make images from a text prompt (txt2img)")
    .argument("[prompt]", "the prompt, in A1111 syntax: (word:1.2), [a:b:0.5], AND, BREAK")
    .option("--width <px>", "image width (default from the model)", positiveInt("--width"))
    .option("--height <px>", "image height (default from the model)", positiveInt("--height"))
    .option("--refiner <path|alias>", "an SDXL refiner model that finishes the denoising")
    .option(
      "--refiner-switch <fraction>",
      "fraction of the schedule done by the base model before the refiner (default 0.8)",
      finiteNumber("--refiner-switch"),
    )
    .option(
      "--hires-scale <f>",
      "A1111 hires fix: upscale the first pass by f and denoise again",
      finiteNumber("--hires-scale"),
    )
    .option(
      "--hires-steps <n>",
      "steps of the hires pass (default: --steps)",
      positiveInt("--hires-steps"),
    )
    .option(
      "--hires-strength <s>",
      "denoising strength of the hires pass, 0..1 (default 0.7)",
      finiteNumber("--hires-strength"),
    )
    .option(
      "--hires-upscaler <name|file|alias>",
      "hires upscaler: latent (default), lanczos, or an ESRGAN-family .pth/.safetensors or " +
        "alias (e.g. realesrgan-x4plus) run on the decoded pixels",
    )
    .option("--jobs <file>", "run every job of a JSON-lines file (one job per line)")
    .option("--shard <i/n>", "run only shard i of n of the batches (with --jobs or --batch-count)");
  addDiffusionOptions(command);
  command.addHelpText(
    "after",
    examples([
      ['denoise generate "a red fox in snow" -m ./sd15 --seed 7 -o fox.png', "one image"],
      [
        'denoise generate "a lighthouse, (golden hour:1.2)" -m sd15 --sampler "DPM++ 2M Karras" | denoise meta read',
        "A1111 sampler labels, image on stdout",
      ],
      [
        'denoise generate "a cat" -m sd15 --batch-count 8 -o out/ --json',
        "eight images into a folder, a JSON line each",
      ],
      [
        'denoise generate "a castle" -m sd15 --hires-scale 2 --hires-strength 0.5 -o big.png',
        "A1111 hires fix: 512 -> 1024",
      ],
      [
        'denoise generate "a castle" -m sd15 --hires-scale 2 --hires-upscaler realesrgan-x4plus -o big.png',
        "hires fix with an ESRGAN upscaler on the decoded pixels",
      ],
      ["denoise generate --jobs batch.jsonl --shard 2/4 -o out/", "one of four CI shards"],
      ["denoise meta read fox.png | denoise generate --job - -o again.png", "remake an image"],
    ]) + SEED_NOTE,
  );
  return command.action(async (prompt, commandOptions, cmd) => {
    const options = commandOptions as typeof commandOptions & DiffusionOptions;
    const ctx = runContext(cmd);
    const flags = pickJobFlags(GenerateJob, explicitOptions(cmd));
    if (prompt !== undefined) flags.prompt = prompt;
    let jobs: GenerateJob[];
    if (options.jobs !== undefined) {
      if (options.job !== undefined) throw new UsageError("Pass --jobs or --job, not both");
      jobs = (await readJobLines(options.jobs, GenerateJob, "generate", flags))
        .map((j, i) => withSeed(j, i, true));
    } else {
      const loaded = await loadJobOption(options.job);
      const job = resolveJob(GenerateJob, "generate", {
        flags,
        ...(loaded ? { document: loaded.document, documentLabel: loaded.label } : {}),
      });
      jobs = [withSeed(job, 0, false)];
    }
    if (options.dryRun) {
      await writeOutput(
        jobs.map((j) => JSON.stringify(j, null, jobs.length > 1 ? 0 : 2)).join("\n") + "\n",
        { binary: false },
      );
      return;
    }
    const shard = options.shard === undefined ? undefined : parseShard(options.shard);
    const count = countImages(jobs, shard);
    const plan = await planOutput(
      options.output,
      options.format,
      count,
      options.jobs !== undefined || shard !== undefined,
    );
    const env = runEnvironment(options, ctx);
    // A bad --hires-upscaler fails now, not after the first pass.
    for (const spec of new Set(jobs.map((j) => j.hiresUpscaler))) {
      if (spec !== "latent" && spec !== "lanczos") await resolveHiresUpscaler(spec, env);
    }
    let summary;
    try {
      summary = await runJobs(env, jobs, {
        upscalers: upscalerOpener(env),
        shard,
        isMade: madeCheck(plan, options.overwrite),
        onPlan: ({ skippedBatches }) => {
          if (skippedBatches > 0) {
            ctx.info(
              `skipping ${skippedBatches} batch(es) whose images exist (--overwrite remakes them)`,
            );
          }
        },
        format: plan.format,
        ...(options.quality !== undefined ? { quality: options.quality } : {}),
        onProgress: ctx.progress.report,
        onAdapters: debugLedger(ctx),
        onImage: (image) => writeImage(plan, image, { json: options.json, ctx }),
      });
    } finally {
      ctx.progress.finish();
    }
    if (options.jobs !== undefined || count > 1) {
      ctx.info(
        `generate: ${summary.made} image(s) made, ${count - summary.made} skipped${
          shard ? ` (shard ${shard.index}/${shard.count})` : ""
        }`,
      );
    }
  });
}
