/**
 * `denoise controlnet [PROMPT] --control NET:IMAGE[:SCALE[:START:END]]`: generate (or repaint
 * with `--image`, inpaint with `--mask`) guided by ControlNets. Flags become a ControlnetJob
 * (lib/job/controlnet.ts); the control images are read and hashed here, and the run is
 * `runJobs` with the ControlNet extension and task table (lib/pipeline/controlnet.ts).
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { existsSync } from "node:fs";
import { InputError, UsageError } from "../lib/errors.ts";
import { decodeImage, imageToTensor } from "../lib/image/codec.ts";
import { type Input, readInput } from "../lib/io/input.ts";
import { writeOutput } from "../lib/io/output.ts";
import {
  CONTROL_MODES,
  ControlnetJob,
  type ControlUnit,
  pickJobFlags,
  readJobLines,
  resolveJob,
} from "../lib/job/mod.ts";
import { parseShard, seedValue } from "../lib/pipeline/batch.ts";
import { ControlImages, readControlImages } from "../lib/pipeline/control_image.ts";
import { controlnetRunOptions, resolveControlnet } from "../lib/pipeline/controlnet.ts";
import { countImages, runJobs, type TaskInputs } from "../lib/pipeline/run.ts";
import { randomSeed } from "../lib/pipeline/sampling.ts";
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
import { readMask } from "./img2img.ts";

/** The IMAGE of `--control` that asks for the inpaint module (made from --image and --mask). */
export const INPAINT_IMAGE = "@inpaint";

/** A `--control` flag as a Job entry (defaults filled by the schema). */
export type ControlFlag = Pick<ControlUnit, "net" | "scale" | "start" | "end"> & {
  image?: string;
  module?: "inpaint";
};

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** The longest prefix of `parts` (joined with ":") that `ok` accepts, as a count of parts. */
function longestPrefix(parts: string[], ok: (candidate: string) => boolean): number {
  for (let i = parts.length; i >= 1; i--) if (ok(parts.slice(0, i).join(":"))) return i;
  return 0;
}

/**
 * Parses `NET:IMAGE[:SCALE[:START:END]]` (repeatable). Paths may hold ":": NET is the longest
 * prefix that exists as a file or folder (else the first field: an alias), IMAGE the longest
 * existing path after it (or `-` for stdin, `@inpaint` for the inpaint module, else the next
 * field); the rest are numbers.
 *
 * @example
 * ```ts
 * import { controlArg } from "./controlnet.ts";
 * const [c] = controlArg("canny:edges.png:0.5:0:0.8", undefined);
 * console.assert(c!.net === "canny" && c!.image === "edges.png" && c!.end === 0.8);
 * ```
 */
export function controlArg(value: string, previous: ControlFlag[] | undefined): ControlFlag[] {
  const usage = (why: string) =>
    new UsageError(`"--control ${value}": ${why}`, {
      hint: "write NET:IMAGE[:SCALE[:START:END]], e.g. --control ./canny-net:edges.png:0.8",
    });
  const parts = value.split(":");
  // NET: the longest existing path that leaves room for IMAGE, else the first field.
  const netParts = longestPrefix(parts.slice(0, -1), existsSync) || 1;
  const net = parts.slice(0, netParts).join(":");
  const rest = parts.slice(netParts);
  if (net === "") throw usage("NET is empty");
  if (rest.length === 0 || rest[0] === "") throw usage("IMAGE is missing");
  const imageParts = longestPrefix(
    rest,
    (c) => c === "-" || c === INPAINT_IMAGE || existsSync(c),
  ) || 1;
  const image = rest.slice(0, imageParts).join(":");
  const numbers = rest.slice(imageParts);
  for (const [k, text] of numbers.entries()) {
    const name = ["SCALE", "START", "END"][k] ?? "a field";
    if (k > 2) throw usage(`too many fields after IMAGE: "${numbers.join(":")}"`);
    if (!NUMBER.test(text) || !Number.isFinite(Number(text))) {
      throw usage(`${name} must be a number, got "${text}"`);
    }
  }
  if (numbers.length === 2) throw usage("give START and END together (SCALE:START:END)");
  const [scale = 1, start = 0, end = 1] = numbers.map(Number);
  if (start < 0 || end > 1) throw usage(`START and END must lie in [0, 1], got ${start}, ${end}`);
  if (start > end) throw usage(`START ${start} is after END ${end}`);
  const flag: ControlFlag = { net, scale, start, end };
  if (image === INPAINT_IMAGE) flag.module = "inpaint";
  else if (image !== "-") flag.image = image;
  return [...(previous ?? []), flag];
}

/** Fixes a random seed for a job that has none (see generate). */
function withSeed(job: ControlnetJob, index: number, jobsFile: boolean): ControlnetJob {
  if (job.seed !== undefined) return job;
  if (jobsFile) {
    throw new InputError(`Job ${index + 1} of the jobs file has no seed`, {
      hint: "give every job a seed so shards and reruns agree on the images",
    });
  }
  return { ...job, seed: seedValue(randomSeed()) };
}

/** Reads stdin at most once: every reader gets the same bytes. */
function stdinOnce(what: string): () => Promise<Input> {
  let input: Promise<Input> | undefined;
  return () => input ??= readInput("-", { what });
}

/** The `controlnet` command. */
export function controlnetCommand() {
  const command = new Command("controlnet")
    .description(
      "make images guided by ControlNets (edges, depth, pose...): txt2img, img2img, inpaint",
    )
    .argument("[prompt]", "the prompt, in A1111 syntax")
    .option(
      "--control <NET:IMAGE[:SCALE[:START:END]]>",
      "a ControlNet (Diffusers folder, control_*.pth / .safetensors file or alias) and its " +
        "control image (a file, - for stdin, or @inpaint: the --image input with the --mask " +
        "pixels set to -1); SCALE default 1, START/END fractions of the steps (default 0:1); " +
        "repeatable, the nets' residuals add up",
      controlArg,
    )
    .option(
      "--guess-mode",
      "Diffusers guess mode: the nets see only the prompt's pass, residuals scaled by " +
        "logspace(-1, 0, n) (try --cfg 3 to 5)",
    )
    .addOption(
      new Option(
        "--control-mode <mode>",
        'A1111\'s control mode: balanced, prompt ("My prompt is more important": residuals ' +
          'scaled by 0.825^(12-k)) or control ("ControlNet is more important": those scales, ' +
          "and none for the negative pass) (default balanced)",
      ).choices(CONTROL_MODES),
    )
    .option(
      "--width <px>",
      "image width (default: the first control image's)",
      positiveInt("--width"),
    )
    .option(
      "--height <px>",
      "image height (default: the first control image's)",
      positiveInt("--height"),
    )
    .option(
      "--image <file|->",
      "img2img: the image to repaint (StableDiffusionControlNetImg2ImgPipeline)",
    )
    .option(
      "--strength <s>",
      "with --image: how much to repaint, 0..1 (default 0.75)",
      finiteNumber("--strength"),
    )
    .option("--mask <file>", "inpaint: a mask of the --image's size, white repaints, black keeps")
    .option(
      "--mask-blur <px>",
      "A1111 mask blur in pixels; the original is pasted back through the blurred mask",
      finiteNumber("--mask-blur"),
    )
    .option(
      "--hires-scale <f>",
      "A1111 hires fix: upscale the first pass by f and denoise again (the control images follow)",
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
    .addOption(
      new Option("--hires-upscaler <name>", "upscale latents, or decoded pixels (default latent)")
        .choices(["latent", "lanczos"] as const),
    )
    .option("--jobs <file>", "run every job of a JSON-lines file (one job per line)")
    .option("--shard <i/n>", "run only shard i of n of the batches (with --jobs or --batch-count)");
  addDiffusionOptions(command);
  command.addHelpText(
    "after",
    examples([
      [
        'denoise controlnet "a house in the woods" -m sd15 --control ./control_v11p_sd15_canny.pth:edges.png -o house.png',
        "an original-layout net and a Canny edge map",
      ],
      [
        'denoise preprocess canny photo.png | denoise controlnet "a watercolour" -m sd15 --control ./canny-net:- -o out.png',
        "the control image from a pipe",
      ],
      [
        'denoise controlnet "a dancer" -m sd15 --control ./pose-net:pose.png:1.0 --control ./depth-net:depth.png:0.5:0:0.6 -o d.png',
        "two nets; the second at half weight for the first 60% of the steps",
      ],
      [
        'denoise controlnet "a red car" -m sd15 --image car.png --mask car-mask.png --control ./inpaint-net:@inpaint -o car2.png',
        "inpaint with control_v11p_sd15_inpaint",
      ],
      ["denoise meta read house.png | denoise controlnet --job - -o again.png", "remake an image"],
    ]) + SEED_NOTE,
  );
  return command.action(async (prompt, commandOptions, cmd) => {
    const options = commandOptions as typeof commandOptions & DiffusionOptions & {
      control?: ControlFlag[];
    };
    const ctx = runContext(cmd);
    const flags = pickJobFlags(ControlnetJob, explicitOptions(cmd));
    if (options.control !== undefined) flags.controls = options.control;
    // The Job records the input file's name; stdin has none.
    if (flags.image === "-") delete flags.image;
    if (prompt !== undefined) flags.prompt = prompt;
    let jobs: ControlnetJob[];
    if (options.jobs !== undefined) {
      if (options.job !== undefined) throw new UsageError("Pass --jobs or --job, not both");
      jobs = (await readJobLines(options.jobs, ControlnetJob, "controlnet", flags))
        .map((j, i) => withSeed(j, i, true));
    } else {
      const loaded = await loadJobOption(options.job);
      if (loaded === undefined && flags.controls === undefined) {
        throw new UsageError("controlnet needs at least one --control NET:IMAGE", {
          hint:
            'e.g. --control ./control_v11p_sd15_canny.pth:edges.png (see "denoise controlnet --help")',
        });
      }
      const job = resolveJob(ControlnetJob, "controlnet", {
        flags,
        ...(loaded ? { document: loaded.document, documentLabel: loaded.label } : {}),
      });
      jobs = [withSeed(job, 0, false)];
    }

    // stdin feeds one thing: the job, the control image(s), or the input image.
    const initSource = options.image ?? (jobs.length === 1 ? jobs[0]!.image : undefined);
    const stdinUsers = [
      options.job === "-" ? "--job -" : undefined,
      jobs.some((j) => j.controls.some((c) => c.module === "none" && c.image === undefined))
        ? "a control image (-)"
        : undefined,
      options.image === "-" ? "--image -" : undefined,
    ].filter((u) => u !== undefined);
    if (stdinUsers.length > 1) {
      throw new UsageError(`${stdinUsers.join(" and ")} cannot both come from stdin`, {
        hint: "pass all but one of them as files",
      });
    }
    for (const job of jobs) {
      if (job.guessMode && job.controlMode !== "balanced") {
        throw new UsageError(
          `--guess-mode cannot be combined with --control-mode ${job.controlMode}: both set ` +
            "the residuals' scales",
          { hint: "drop one of them (--control-mode control is A1111's take on guess mode)" },
        );
      }
      if (job.controls.some((c) => c.module === "inpaint") && job.mask === undefined) {
        throw new UsageError(`--control NET:${INPAINT_IMAGE} needs --image and --mask`, {
          hint: "pass the image to inpaint with --image and its mask with --mask",
        });
      }
    }

    // Control images: read, hashed into the Job (a replay must read the same bytes), decoded.
    const env = runEnvironment(options, ctx);
    const images = new ControlImages();
    const stdin = stdinOnce("control image");
    const read = (path: string | undefined) =>
      path === undefined ? stdin() : readInput(path, { what: "control image" });
    jobs = await Promise.all(jobs.map((job) => readControlImages(job, images, read)));
    if (options.dryRun) {
      await writeOutput(
        jobs.map((j) => JSON.stringify(j, null, jobs.length > 1 ? 0 : 2)).join("\n") + "\n",
        { binary: false },
      );
      return;
    }
    for (const job of jobs) {
      for (const control of job.controls) {
        if (control.sha256 !== undefined) await images.decoded(control.sha256);
        await resolveControlnet(control.net, env);
      }
    }

    // The img2img input and the inpainting mask.
    const inputs: TaskInputs = {};
    if (initSource !== undefined) {
      if (jobs.length > 1) {
        throw new UsageError("--image cannot be combined with --jobs", {
          hint: "run img2img jobs one at a time",
        });
      }
      const input = await readInput(initSource, { what: "input image" });
      const raw = await decodeImage(input.bytes, { label: input.label, channels: 3 });
      inputs.image = { data: imageToTensor(raw), dims: [1, 3, raw.height, raw.width] };
      const mask = jobs[0]!.mask;
      if (mask !== undefined) inputs.mask = await readMask(mask, raw);
    } else if (jobs.some((j) => j.mask !== undefined)) {
      throw new UsageError("--mask needs an input image (--image)", {
        hint: "pass the image to inpaint with --image",
      });
    }

    const shard = options.shard === undefined ? undefined : parseShard(options.shard);
    const count = countImages(jobs, shard);
    const plan = await planOutput(
      options.output,
      options.format,
      count,
      options.jobs !== undefined || shard !== undefined,
    );
    let summary;
    try {
      summary = await runJobs(env, jobs, {
        ...controlnetRunOptions(env, images),
        shard,
        isMade: madeCheck(plan, options.overwrite),
        inputs,
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
        `controlnet: ${summary.made} image(s) made, ${count - summary.made} skipped${
          shard ? ` (shard ${shard.index}/${shard.count})` : ""
        }`,
      );
    }
  });
}
