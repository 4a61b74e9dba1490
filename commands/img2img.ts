/**
 * `denoise img2img [PROMPT] --image FILE|-`: repaint an image guided by a prompt. The input comes
 * from stdin by default, so `denoise generate ... | denoise img2img ...` works.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { RESIZE_MODES } from "../lib/image/resize_mode.ts";
import { UsageError } from "../lib/errors.ts";
import { decodeImage, imageToTensor, type RawImage } from "../lib/image/codec.ts";
import { decodeMask, type MaskImage } from "../lib/image/mask.ts";
import { readInput } from "../lib/io/input.ts";
import { writeOutput } from "../lib/io/output.ts";
import { Img2ImgJob, pickJobFlags, resolveJob } from "../lib/job/mod.ts";
import { seedValue } from "../lib/pipeline/batch.ts";
import { countImages, runJobs } from "../lib/pipeline/run.ts";
import { randomSeed } from "../lib/pipeline/sampling.ts";
import {
  examples,
  explicitOptions,
  finiteNumber,
  loadJobOption,
  nonNegativeInt,
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

/** Reads the `--mask` image and checks that it fits the input image. */
export async function readMask(path: string, image: RawImage): Promise<MaskImage> {
  if (path === "-") {
    throw new UsageError("--mask cannot come from stdin", { hint: "pass the mask as a file" });
  }
  const input = await readInput(path, { what: "mask" });
  const mask = await decodeMask(input.bytes, { label: input.label });
  if (mask.width !== image.width || mask.height !== image.height) {
    throw new UsageError(
      `The mask ${path} is ${mask.width}x${mask.height} but the image is ${image.width}x${image.height}`,
      { hint: "pass a mask of the same size as the image" },
    );
  }
  return mask;
}

/** The `img2img` command. */
export function img2imgCommand() {
  const command = new Command("img2img")
    .description("repaint an image guided by a prompt (image-to-image)")
    .argument("[prompt]", "the prompt, in A1111 syntax")
    .option("--image <file|->", "the input image (default: stdin)")
    .option(
      "--width <px>",
      "output width (default: the input's; see --resize-mode); with --inpaint-full-res the " +
        "processing width",
      positiveInt("--width"),
    )
    .option(
      "--height <px>",
      "output height (default: the input's); with --inpaint-full-res the processing height",
      positiveInt("--height"),
    )
    .option(
      "--strength <s>",
      "how much to repaint, 0..1 (A1111 denoising strength; default 0.75)",
      finiteNumber("--strength"),
    )
    .option("--mask <file>", "inpaint: a mask image of the same size, white repaints, black keeps")
    .option(
      "--mask-blur <px>",
      "A1111 mask blur in pixels; the original is pasted back through the blurred mask",
      finiteNumber("--mask-blur"),
    )
    .option(
      "--inpaint-full-res",
      "inpaint only the masked area: a crop around the mask, processed at --width x --height " +
        '(default: the image size) and pasted back (A1111 "Inpaint area: Only masked")',
    )
    .addOption(
      new Option(
        "--resize-mode <mode>",
        "with --width/--height different from the image's size: how the image (and mask) are " +
          'brought to it, as A1111\'s "Resize mode" (default just-resize; latent-upscale resizes ' +
          "the encoded latents instead)",
      ).choices(RESIZE_MODES),
    )
    .option(
      "--inpaint-full-res-padding <px>",
      "pixels kept around the mask's bounding box with --inpaint-full-res (default 32)",
      nonNegativeInt("--inpaint-full-res-padding"),
    );
  addDiffusionOptions(command);
  command.addHelpText(
    "after",
    examples([
      [
        'denoise img2img "oil painting" --image photo.png -m ./sd15 --strength 0.6 -o out.png',
        "repaint a file",
      ],
      [
        'denoise generate "a castle" -m sd15 --seed 1 | denoise img2img "a castle at night" -m sd15 --strength 0.5 -o night.png',
        "chain in a pipe",
      ],
      [
        'denoise img2img "a red hat" --image photo.png --mask hat.png -m ./sd15-inpainting --strength 1 -o hat.png',
        "inpaint the white part of the mask",
      ],
      [
        'denoise img2img "a watercolor" --image wide.png -m sd15 --width 512 --height 512 --resize-mode crop-and-resize -o sq.png',
        "A1111 resize to 512x512, cropping the sides",
      ],
    ]) + SEED_NOTE,
  );
  return command.action(async (prompt, commandOptions, cmd) => {
    const options = commandOptions as typeof commandOptions & DiffusionOptions;
    const ctx = runContext(cmd);
    const flags = pickJobFlags(Img2ImgJob, explicitOptions(cmd));
    // The Job records the input file's name; stdin has none.
    if (flags.image === "-") delete flags.image;
    if (prompt !== undefined) flags.prompt = prompt;
    const loaded = await loadJobOption(options.job);
    let job = resolveJob(Img2ImgJob, "img2img", {
      flags,
      ...(loaded ? { document: loaded.document, documentLabel: loaded.label } : {}),
    });
    if (job.seed === undefined) job = { ...job, seed: seedValue(randomSeed()) };
    if (options.dryRun) {
      await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
      return;
    }
    // The input: --image, else the image the job names (a replay), else stdin.
    const source = options.image ?? job.image;
    if (options.job === "-" && (source === undefined || source === "-")) {
      throw new UsageError("--job - and the input image cannot both come from stdin", {
        hint: "pass the image with --image FILE",
      });
    }
    const input = await readInput(source, { what: "input image" });
    const raw = await decodeImage(input.bytes, { label: input.label, channels: 3 });
    const image = {
      data: imageToTensor(raw),
      dims: [1, 3, raw.height, raw.width] as [number, number, number, number],
    };
    const mask = job.mask === undefined ? undefined : await readMask(job.mask, raw);
    const count = countImages([job]);
    const plan = await planOutput(options.output, options.format, count, false);
    try {
      await runJobs(runEnvironment(options, ctx), [job], {
        isMade: madeCheck(plan, options.overwrite),
        inputs: { image, ...(mask !== undefined ? { mask } : {}) },
        format: plan.format,
        ...(options.quality !== undefined ? { quality: options.quality } : {}),
        onProgress: ctx.progress.report,
        onImage: (made) => writeImage(plan, made, { json: options.json, ctx }),
        onAdapters: debugLedger(ctx),
      });
    } finally {
      ctx.progress.finish();
    }
  });
}
