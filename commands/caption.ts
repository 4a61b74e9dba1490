/**
 * `denoise caption [FILE|DIR...|-] --model PATH|ALIAS`: one caption per image, with BLIP (built
 * from its transformers folder), Florence-2 or a LLaVA-class model (their ONNX exports). Flags
 * become a CaptionJob; lib/caption does the work; this file prints the results and maps
 * failures to exit codes (docs/caption.md, docs/exit-codes.md).
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import builtinLock from "../models.lock.json" with { type: "json" };
import { InputError, PartialFailureError, UsageError } from "../lib/errors.ts";
import { cacheRoot, type ModelsLock, parseLock } from "../lib/hub/mod.ts";
import { readInput } from "../lib/io/input.ts";
import { writeOutput } from "../lib/io/output.ts";
import { CaptionJob } from "../lib/job/mod.ts";
import { captionFiles, type FileCaption } from "../lib/caption/caption_files.ts";
import {
  type GenerationOverrides,
  resolveGenerationConfig,
} from "../lib/caption/generation_config.ts";
import { IMAGE_EXTENSIONS, listImageInputs } from "../lib/caption/image_inputs.ts";
import { loadCaptionModel, resolveCaptionModel } from "../lib/caption/load.ts";
import {
  commandJob,
  examples,
  finiteNumber,
  nonNegativeInt,
  positiveInt,
  runContext,
  withJobOptions,
  writeStderr,
} from "./common.ts";

function modelsLock(): ModelsLock {
  const path = Deno.env.get("DENOISE_MODELS_LOCK");
  return path === undefined
    ? parseLock(JSON.stringify(builtinLock), "the built-in models.lock.json")
    : parseLock(Deno.readTextFileSync(path), path);
}

/** The generation settings a Job overrides (the rest come from the model). */
function generationOverrides(job: CaptionJob): GenerationOverrides {
  const o: GenerationOverrides = {};
  if (job.maxTokens !== undefined) o.maxNewTokens = job.maxTokens;
  if (job.beams !== undefined) o.numBeams = job.beams;
  if (job.sample) {
    o.doSample = true;
    // A model whose default is beam search (Florence-2) samples with one beam.
    if (job.beams === undefined) o.numBeams = 1;
  }
  if (job.temperature !== undefined) o.temperature = job.temperature;
  if (job.topK !== undefined) o.topK = job.topK;
  if (job.topP !== undefined) o.topP = job.topP;
  return o;
}

/** A caption on one line of plain output. */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

/** The `caption` command. */
export function captionCommand() {
  return withJobOptions(
    new Command("caption")
      .description(
        "describe images: one caption per image on stdout (BLIP, Florence-2, LLaVA-class models)",
      )
      .argument("[inputs...]", 'image files and folders (walked for images); "-" or none: stdin')
      .option("-m, --model <path|alias>", "a captioning model folder or an alias (blip-base)")
      .option("--prompt <text>", "condition the caption (BLIP continues it; others answer it)")
      .addOption(
        new Option("--task <task>", "how much to say (Florence-2 tasks; a chat model's request)")
          .choices(["caption", "detailed", "more-detailed"] as const),
      )
      .option(
        "--max-tokens <n>",
        "new tokens at most (default: the model's)",
        positiveInt("--max-tokens"),
      )
      .option(
        "--beams <k>",
        "beam search with k beams (default: the model's)",
        positiveInt("--beams"),
      )
      .option("--sample", "sample instead of searching (seeded, see --seed)")
      .option("--temperature <t>", "sampling temperature", finiteNumber("--temperature"))
      .option(
        "--top-k <k>",
        "sampling: keep the k most likely tokens (0 = all)",
        nonNegativeInt("--top-k"),
      )
      .option(
        "--top-p <p>",
        "sampling: keep the smallest set with this probability",
        finiteNumber("--top-p"),
      )
      .option(
        "--seed <n>",
        "sampling seed of the first image; image k uses seed + k",
        nonNegativeInt("--seed"),
      )
      .option(
        "--batch-size <n>",
        "images captioned together (default 8)",
        positiveInt("--batch-size"),
      )
      .option("--json", 'one JSON object per image: {"file", "caption", ...}')
      .option(
        "--write-meta",
        "store each caption in its image (PNG iTXt Description, EXIF ImageDescription)",
      )
      .option("--sidecar", "write name.txt beside each image (the kohya caption convention)")
      .addOption(
        new Option("--device <device>", "execution provider").choices(["cpu", "cuda"] as const),
      )
      .option(
        "--threads <n>",
        "threads per model evaluation (default: all cores)",
        positiveInt("--threads"),
      ),
  )
    .addHelpText(
      "after",
      examples([
        ["denoise caption photo.jpg -m blip-base", "print one caption"],
        [
          "denoise caption shots/ -m blip-large --sidecar",
          "kohya .txt captions for a LoRA dataset",
        ],
        [
          "denoise caption shots/ -m ./Florence-2-base --task detailed --json",
          "detailed captions as JSON lines",
        ],
        ['denoise caption cat.png -m blip-base --prompt "a photograph of"', "conditional caption"],
        ['denoise generate "a fox" -m sd15 | denoise caption -m blip-base', "caption from a pipe"],
        ["denoise caption a.png -m blip-base --write-meta", "store the caption in the file"],
      ]) +
        "\nOutput: the caption alone for one image (a FILE or stdin); `file: caption` lines for\n" +
        "several images or a folder. Folders are walked for " + IMAGE_EXTENSIONS.join(" ") +
        " files, sorted.\nExit 7 when some of several images failed (each is named on stderr), " +
        "4 for a folder that is not a captioning model. See docs/caption.md.\n",
    )
    .action(async (inputs, _options, command) => {
      const job = await commandJob(command, CaptionJob, "caption", {
        inputs: inputs.length > 0 ? inputs : undefined,
      });
      if (job === undefined) return;
      const ctx = runContext(command);
      const env = {
        cacheDir: cacheRoot({
          DENOISE_HOME: Deno.env.get("DENOISE_HOME"),
          XDG_CACHE_HOME: Deno.env.get("XDG_CACHE_HOME"),
          HOME: Deno.env.get("HOME"),
        }),
        lock: modelsLock(),
      };
      const dir = await resolveCaptionModel(job.model, env);
      const { images, single } = await listImageInputs(job.inputs);
      for (const image of images) {
        if (image.path === undefined) image.bytes = (await readInput("-", { what: "image" })).bytes;
      }
      if (images.length === 0) {
        throw new InputError(`No images found in ${job.inputs.map((i) => `"${i}"`).join(", ")}`, {
          hint: `folders are searched for ${IMAGE_EXTENSIONS.join(" ")} files`,
        });
      }
      const session = {
        executionProvider: job.device,
        ...(job.threads === undefined ? {} : { threads: job.threads }),
      };
      const model = await loadCaptionModel(dir, { session, cacheDir: env.cacheDir });
      const overrides = generationOverrides(job);
      try {
        if (!model.tasks.includes(job.task)) {
          throw new UsageError(
            `--task ${job.task} is not a task of this ${model.family} model; it has ` +
              `${model.tasks.join(", ")}`,
            { hint: "use Florence-2 or a LLaVA model for detailed captions" },
          );
        }
        try {
          resolveGenerationConfig(model.generationConfig, overrides);
        } catch (error) {
          throw new UsageError((error as Error).message, { hint: 'see "denoise caption --help"' });
        }
      } catch (error) {
        await model.release();
        throw error;
      }
      ctx.debug(`caption: ${model.family} model from ${dir}, ${images.length} image(s)`);
      const failed: FileCaption[] = [];
      const print = async (r: FileCaption) => {
        const file = r.input.path ?? "-";
        if (job.json) {
          const line: Record<string, unknown> = { file };
          if (r.caption !== undefined) {
            Object.assign(line, { caption: r.caption, model: job.model, family: model.family });
            line.task = job.task;
            if (job.prompt !== undefined) line.prompt = job.prompt;
            if (r.metaWritten) line.meta = true;
            if (r.sidecar !== undefined) line.sidecar = r.sidecar;
          }
          if (r.error !== undefined) line.error = r.error.message.split("\n")[0];
          await writeOutput(JSON.stringify(line) + "\n", { binary: false });
        } else if (r.caption !== undefined) {
          const text = oneLine(r.caption);
          await writeOutput((single ? text : `${r.input.label}: ${text}`) + "\n", {
            binary: false,
          });
        }
        if (r.error !== undefined) {
          failed.push(r);
          // With one image the error itself ends the run (and its exit code stands).
          if (!single) {
            writeStderr(`denoise: ${r.input.label}: ${r.error.message.split("\n")[0]}\n`);
          }
        }
      };
      try {
        await captionFiles(model, images, {
          ...overrides,
          task: job.task,
          ...(job.prompt === undefined ? {} : { prompt: job.prompt }),
          seed: job.seed,
          batchSize: job.batchSize,
          writeMeta: job.writeMeta,
          sidecar: job.sidecar,
          onResult: print,
          onProgress: (step, total) => ctx.progress.report({ task: "caption", step, total }),
        });
      } finally {
        ctx.progress.finish();
        await model.release();
      }
      if (failed.length === 0) return;
      if (single) throw failed[0]!.error;
      throw new PartialFailureError(
        `${failed.length} of ${images.length} images failed (named above); the others were captioned`,
      );
    });
}
