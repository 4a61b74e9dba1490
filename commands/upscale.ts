/**
 * `denoise upscale [IMAGE|-] --model PATH|ALIAS [--scale F]
 * [--mode esrgan|img2img|controlnet-tile|lanczos]`: make an image larger with an ESRGAN-family
 * network, with img2img super-resolution on a Stable Diffusion model (guided by the tile
 * ControlNet in controlnet-tile mode), or with Lanczos. The image comes from a file or stdin and goes to a file or
 * stdout, keeping its metadata: `denoise generate ... | denoise upscale ... | denoise meta read`.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { UsageError } from "../lib/errors.ts";
import { decodeFloatImage, type ImageFormat } from "../lib/image/codec.ts";
import { readInput } from "../lib/io/input.ts";
import { writeFileAtomic, writeOutput } from "../lib/io/output.ts";
import {
  CONTROL_MODES,
  jobFromImage,
  pickJobFlags,
  PRECISIONS,
  resolveJob,
  UPSCALE_MODES,
  UpscaleJob,
} from "../lib/job/mod.ts";
import { encodeFloatWithMetadata } from "../lib/meta/encode.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { SIGMA_SCHEDULES } from "../lib/schedulers/mod.ts";
import { DEFAULT_TILE_CONTROLNET } from "../lib/upscale/controlnet_tile.ts";
import { DEFAULT_MAX_PIXELS, runUpscale } from "../lib/upscale/run.ts";
import {
  examples,
  explicitOptions,
  finiteNumber,
  loadJobOption,
  nonNegativeInt,
  positiveInt,
  runContext,
} from "./common.ts";
import { embeddingArg, loraArg, planOutput, runEnvironment, seedArg } from "./diffusion.ts";

/** A commander parser for numbers > 0. */
function positiveNumber(name: string) {
  return (value: string): number => {
    const n = finiteNumber(name)(value);
    if (!(n > 0)) throw new UsageError(`"${name}" must be a number > 0, got "${value}"`);
    return n;
  };
}

/** The values of the flags only the command reads (not Job fields). */
interface UpscaleCommandOptions {
  output?: string;
  format?: ImageFormat;
  quality?: number;
  json?: true;
  maxPixels?: number;
  device: "cpu" | "cuda";
  threads?: number;
  lowMemory?: true;
  job?: string;
  dryRun?: true;
}

/** The `upscale` command. */
export function upscaleCommand() {
  const command = new Command("upscale")
    .description(
      "make an image larger: an ESRGAN-family model, img2img super-resolution (with the tile " +
        "ControlNet or without), or Lanczos",
    )
    .argument("[image]", "the input image, or - for stdin (default: stdin)")
    .option(
      "-m, --model <path|alias>",
      "an ESRGAN-family .pth/.safetensors or alias (e.g. realesrgan-x4plus), or a Stable " +
        "Diffusion model for img2img super-resolution; none: Lanczos",
    )
    .addOption(
      new Option(
        "--mode <mode>",
        "how to upscale (default from the model; controlnet-tile when --controlnet is given)",
      ).choices(UPSCALE_MODES),
    )
    .option(
      "--scale <f>",
      "output size / input size (default: the ESRGAN model's scale, else 2)",
      positiveNumber("--scale"),
    )
    .option(
      "--tile <px>",
      "tile size: input pixels for esrgan (0 = whole image; default from a 1 GiB budget), " +
        "output pixels for img2img and controlnet-tile (0 = one tile; default the model's " +
        "native size)",
      nonNegativeInt("--tile"),
    )
    .option(
      "--tile-overlap <px>",
      "pixels neighbouring tiles share (default: 32 model pixels; img2img a quarter tile)",
      nonNegativeInt("--tile-overlap"),
    )
    .addOption(
      new Option("--alpha-upsampler <how>", "esrgan: alpha through the model, or bilinear")
        .choices(["realesrgan", "linear"] as const),
    )
    .option(
      "--max-pixels <n>",
      `refuse outputs larger than this many pixels (default ${DEFAULT_MAX_PIXELS}, 8192x8192)`,
      positiveInt("--max-pixels"),
    )
    .option("--prompt <text>", "img2img: the prompt (default: the input's own, from its metadata)")
    .option("--negative <text>", "img2img: the negative prompt (default: the input's own)")
    .option(
      "--quality-prompt",
      'img2img: prefix the book\'s "8k, best quality, masterpiece, ..." to the prompt',
    )
    .option(
      "--strength <s>",
      "img2img: how much to redraw, 0..1 (default 0.3; controlnet-tile 0.8)",
      finiteNumber("--strength"),
    )
    .option(
      "--steps <n>",
      "img2img: schedule steps (default 80, of which 0.3 runs 24; controlnet-tile 50)",
      positiveInt("--steps"),
    )
    .option(
      "--cfg <scale>",
      "img2img: guidance scale (default 8; controlnet-tile 7)",
      finiteNumber("--cfg"),
    )
    .option(
      "--controlnet <net>",
      "controlnet-tile: the ControlNet, a Diffusers folder, control_*.pth / .safetensors or " +
        `alias (default ${DEFAULT_TILE_CONTROLNET}); implies --mode controlnet-tile`,
    )
    .option(
      "--controlnet-scale <s>",
      "controlnet-tile: the net's conditioning scale (default 1)",
      finiteNumber("--controlnet-scale"),
    )
    .addOption(
      new Option(
        "--control-mode <mode>",
        "controlnet-tile: A1111's control mode (balanced, prompt, control; default balanced)",
      ).choices(CONTROL_MODES),
    )
    .option(
      "--passes <n>",
      "img2img: Lanczos + img2img passes, each by scale^(1/n) (default 1)",
      positiveInt("--passes"),
    )
    .option("--sampler <name>", "img2img: sampler (default the model's scheduler)")
    .addOption(new Option("--schedule <name>", "img2img: sigma schedule").choices(SIGMA_SCHEDULES))
    .option("--seed <n>", "img2img: seed (default random, recorded)", seedArg)
    .addOption(
      new Option("--rng <source>", "img2img: noise source").choices(["cpu", "nv"] as const),
    )
    .option("--clip-skip <n>", "img2img: A1111 clip skip", positiveInt("--clip-skip"))
    .option("--vae <folder>", "img2img: decode with this VAE")
    .addOption(
      new Option("--precision <p>", "img2img: graph precision").choices(PRECISIONS),
    )
    .addOption(
      new Option("--prompt-syntax <syntax>", "img2img: prompt language").choices(
        ["a1111", "plain"] as const,
      ),
    )
    .addOption(
      new Option("--emphasis <mode>", "img2img: how (word:1.2) weights apply").choices(
        ["original", "no-norm", "ignore", "none"] as const,
      ),
    )
    .option(
      "--guidance-rescale <phi>",
      "img2img: Diffusers guidance_rescale",
      finiteNumber("--guidance-rescale"),
    )
    .option("--lora <file[:scale[:unet]]>", "img2img: merge a LoRA (repeatable)", loraArg)
    .option("--lora-dir <dir>", "img2img: folder of the LoRAs of <lora:name:scale> tags")
    .option("--embedding <file[:token]>", "img2img: a textual-inversion embedding", embeddingArg)
    .option("--embeddings-dir <dir>", "img2img: folder of embeddings usable by name")
    .option("-o, --output <file>", "output file (default: stdout)")
    .addOption(
      new Option("--format <format>", "image format (default from -o's extension, else png)")
        .choices(["png", "jpeg", "webp"] as const),
    )
    .option("--quality <q>", "JPEG/WebP quality 1-100 (default 95)", positiveInt("--quality"))
    .option("--json", "print a JSON line (path, sizes, mode, tiles, timings, job) on stdout")
    .addOption(
      new Option("--device <device>", "execution provider").choices(["cpu", "cuda"] as const)
        .default("cpu" as const),
    )
    .option("--threads <n>", "threads per model evaluation", positiveInt("--threads"))
    .option("--low-memory", "img2img: keep only one model in memory at a time")
    .option("--job <file>", "read the job from a JSON file, an image made by denoise, or - (stdin)")
    .option("--dry-run", "print the resolved job as JSON and do nothing else");
  command.addHelpText(
    "after",
    examples([
      [
        "denoise upscale photo.png -m realesrgan-x4plus -o big.png",
        "4x with Real-ESRGAN (denoise models pull realesrgan-x4plus first)",
      ],
      [
        "denoise upscale photo.png -m 4x-UltraSharp.pth --scale 2 --tile 256 -o big.png",
        "any ESRGAN-family file; x4 model, then Lanczos to 2x; 256-pixel tiles",
      ],
      [
        'denoise generate "a red fox" -m sd15 --seed 7 | denoise upscale -m realesrgan-x4plus | denoise meta read',
        "in a pipe: the upscaled image keeps the generate Job under job.source",
      ],
      [
        "denoise upscale face.png -m sd15 --scale 3 --quality-prompt -o face3x.png",
        "img2img super-resolution (book 11.1): Lanczos x3, then img2img at strength 0.3",
      ],
      [
        "denoise upscale face.png -m sd15 --controlnet control_v11f1e_sd15_tile --scale 3 --quality-prompt -o face3x.png",
        "ControlNet tile (book 11.2): Lanczos x3, then img2img at 0.8 guided by the tile net",
      ],
      ["denoise upscale small.png --scale 2 -o big.png", "plain Lanczos (no model)"],
    ]) +
      "\nOptions marked img2img apply to --mode controlnet-tile too.\n" +
      "\nMetadata: the output keeps the input's Job under job.source and its A1111 parameters\n" +
      "(esrgan and lanczos append the A1111 Extras fields); replay with --job OUT.png.\n",
  );
  return command.action(async (image, commandOptions, cmd) => {
    const options = commandOptions as typeof commandOptions & UpscaleCommandOptions;
    const ctx = runContext(cmd);
    const flags = pickJobFlags(UpscaleJob, explicitOptions(cmd));
    if (image !== undefined && image !== "-") flags.input = image;
    const loaded = await loadJobOption(options.job);
    const job = resolveJob(UpscaleJob, "upscale", {
      flags,
      ...(loaded ? { document: loaded.document, documentLabel: loaded.label } : {}),
    });
    if (options.dryRun) {
      await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
      return;
    }
    // The input: the argument, else the file the job names (a replay), else stdin.
    const source = image ?? job.input;
    if (options.job === "-" && (source === undefined || source === "-")) {
      throw new UsageError("--job - and the input image cannot both come from stdin", {
        hint: "pass the image as a file argument",
      });
    }
    const plan = await planOutput(options.output, options.format, 1, false);
    if (options.json && plan.file === undefined) {
      throw new UsageError("--json prints on stdout, where the image goes without -o", {
        hint: "pass -o FILE with --json",
      });
    }
    const t0 = performance.now();
    const input = await readInput(source, { what: "input image" });
    const decoded = await decodeFloatImage(input.bytes, { label: input.label });
    let infotext;
    try {
      infotext = readMetadata(input.bytes, { lenient: true }).a1111;
    } catch {
      infotext = undefined;
    }
    const read = (performance.now() - t0) / 1000;
    let outcome;
    try {
      outcome = await runUpscale(runEnvironment(options, ctx), job, {
        image: decoded,
        job: jobFromImage(input.bytes),
        infotext,
      }, {
        maxPixels: options.maxPixels,
        onTile: (done, total) => ctx.progress.report({ task: "tile", step: done, total }),
        onProgress: ctx.progress.report,
      });
    } finally {
      ctx.progress.finish();
    }
    const t1 = performance.now();
    const bytes = await encodeFloatWithMetadata(
      outcome.image,
      plan.format,
      { infotext: outcome.infotext, job: outcome.job },
      options.quality !== undefined ? { quality: options.quality } : {},
    );
    const encode = (performance.now() - t1) / 1000;
    if (plan.file === undefined) {
      await writeOutput(bytes, { binary: true });
      return;
    }
    await writeFileAtomic(plan.file, bytes);
    ctx.info(`wrote ${plan.file} (${outcome.image.width}x${outcome.image.height})`);
    if (options.json) {
      const line = {
        path: plan.file,
        input: { width: decoded.width, height: decoded.height, channels: decoded.channels },
        width: outcome.image.width,
        height: outcome.image.height,
        channels: outcome.image.channels,
        bitDepth: plan.format === "png" ? outcome.image.bitDepth : 8,
        mode: outcome.job.mode,
        model: outcome.job.model ?? null,
        scale: outcome.job.scale,
        tiles: outcome.tiles,
        seconds: {
          read: round(read),
          upscale: round(outcome.seconds),
          encode: round(encode),
          total: round((performance.now() - t0) / 1000),
        },
        job: outcome.job,
      };
      await writeOutput(JSON.stringify(line) + "\n", { binary: false });
    }
  });
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
