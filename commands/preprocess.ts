/**
 * `denoise preprocess KIND [IMAGE|-] -o OUT`: make the control image a ControlNet expects (canny
 * edges, tile blur, content shuffle, scribble, line art, inversion, Depth Anything depth,
 * DWPose skeletons, HED/PiDiNet soft edges, model line art). The kind's options are flags derived from the preprocessor table's option
 * specs (lib/preprocess), so they are written once; the result carries its Job in metadata.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { extname } from "node:path";
import denoConfig from "../deno.json" with { type: "json" };
import { DenoiseError, InputError, UsageError } from "../lib/errors.ts";
import { decodeImage, type ImageFormat } from "../lib/image/codec.ts";
import { toRgb } from "../lib/image/gray.ts";
import { readInput } from "../lib/io/input.ts";
import { writeFileAtomic, writeOutput } from "../lib/io/output.ts";
import { pickJobFlags, PreprocessJob, resolveJob, withFields } from "../lib/job/mod.ts";
import { encodeWithMetadata } from "../lib/meta/encode.ts";
import {
  detectResize,
  getPreprocessor,
  isPreprocessorKind,
  type OptionSpec,
  preprocess,
  type Preprocessor,
  PREPROCESSOR_KINDS,
  PREPROCESSORS,
  resizeControl,
  resolvePreprocessOptions,
  resolvePreprocessorModel,
} from "../lib/preprocess/mod.ts";
import {
  examples,
  explicitOptions,
  finiteNumber,
  loadJobOption,
  positiveInt,
  runContext,
} from "./common.ts";
import { runEnvironment } from "./diffusion.ts";

/** A kind option as a flag: its spec and the kinds that take it. */
interface KindFlag {
  spec: OptionSpec;
  kinds: string[];
  /** The commander attribute name (camelCase, as the spec's name). */
  key: string;
  flag: string;
}

/** kebab-case of a camelCase option name. */
function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * One flag per option name across all kinds. Options of the same name must agree on their type
 * and, for booleans, on their default (the flag is `--name` for default false, `--no-name` for
 * default true).
 */
function kindFlags(): KindFlag[] {
  const byName = new Map<string, KindFlag>();
  for (const kind of PREPROCESSOR_KINDS) {
    for (const spec of PREPROCESSORS[kind].options) {
      const seen = byName.get(spec.name);
      if (seen !== undefined) {
        const sameType = (seen.spec.type === "boolean") === (spec.type === "boolean");
        if (!sameType || (spec.type === "boolean" && seen.spec.default !== spec.default)) {
          throw new TypeError(
            `Preprocessor options named "${spec.name}" disagree in type or default (${
              seen.kinds.join(", ")
            } vs ${kind}): rename one`,
          );
        }
        seen.kinds.push(kind);
        continue;
      }
      const name = kebab(spec.name);
      const flag = spec.type === "boolean"
        ? spec.default === true ? `--no-${name}` : `--${name}`
        : `--${name} <${spec.type === "integer" ? "n" : "x"}>`;
      byName.set(spec.name, { spec, kinds: [kind], key: spec.name, flag });
    }
  }
  return [...byName.values()];
}

const KIND_FLAGS = kindFlags();

/** The help text listing every kind, its options, model and reference. */
function kindsHelp(): string {
  const lines = ["\nKinds:"];
  for (const kind of PREPROCESSOR_KINDS) {
    const p: Preprocessor = PREPROCESSORS[kind];
    lines.push(`  ${kind.padEnd(17)} ${p.summary}`);
    for (const o of p.options) {
      const name = kebab(o.name);
      const flag = o.type === "boolean"
        ? o.default === true ? `--no-${name}` : `--${name}`
        : `--${name} <${o.type === "integer" ? "n" : "x"}>`;
      const range = o.type === "boolean"
        ? o.default === true ? " (on by default)" : ""
        : ` [${o.min ?? "-inf"}..${o.max ?? "inf"}, default ${o.default}]`;
      lines.push(`      ${flag.padEnd(22)} ${o.description}${range}`);
    }
    if (p.model !== undefined) {
      const single = p.model.format === "weights" || Object.keys(p.model.files).length === 1;
      lines.push(
        `      model: --model ALIAS|FOLDER${
          single ? "|FILE" : ""
        } (default alias ${p.model.defaultAlias}: ${
          Object.values(p.model.files).map((n) => n[0]).join(", ")
        })`,
      );
    }
    lines.push(`      follows: ${p.reference}`);
  }
  return lines.join("\n") + "\n";
}

/** The values of the command's own flags. */
interface PreprocessOptions {
  output?: string;
  format?: ImageFormat;
  quality?: number;
  model?: string;
  detectResolution?: number;
  imageResolution?: number;
  json?: true;
  device: "cpu" | "cuda";
  threads?: number;
  job?: string;
  dryRun?: true;
}

/** Where the control image goes: a file (format from its extension or --format) or stdout. */
function planOutput(
  output: string | undefined,
  format: ImageFormat | undefined,
  json: boolean,
): { file?: string; format: ImageFormat } {
  if (output === undefined || output === "-") {
    if (json) {
      throw new UsageError("--json prints a line per file written and needs -o FILE", {
        hint: "pass -o FILE, or drop --json to write the image to stdout",
      });
    }
    // Fail before the work, not after it.
    if (Deno.stdout.isTerminal()) {
      throw new UsageError("Refusing to write binary image data to a terminal", {
        hint:
          "pass -o FILE, or pipe into another command (e.g. | denoise controlnet ... --control NET:-)",
      });
    }
    return { format: format ?? "png" };
  }
  const ext = extname(output).toLowerCase();
  const fromExt: ImageFormat | undefined = ext === ".png"
    ? "png"
    : ext === ".jpg" || ext === ".jpeg"
    ? "jpeg"
    : ext === ".webp"
    ? "webp"
    : undefined;
  if (fromExt === undefined && format === undefined) {
    throw new UsageError(`Cannot tell the image format from "${output}"`, {
      hint: "use a .png, .jpg or .webp name, or --format",
    });
  }
  return { file: output, format: format ?? fromExt ?? "png" };
}

/** The A1111-style infotext of a control image (the Job holds the rest). */
function infotext(job: PreprocessJob, width: number, height: number): string {
  const options = Object.entries(job.options).map(([k, v]) => `${k}: ${v}`).join(", ");
  const fields = [
    `Module: ${job.kind}`,
    ...(options ? [`Preprocessor options: "${options}"`] : []),
    ...(job.model !== undefined ? [`Preprocessor model: ${job.model}`] : []),
    ...(job.detectResolution !== undefined ? [`Detect resolution: ${job.detectResolution}`] : []),
    `Size: ${width}x${height}`,
    ...(job.imageSha256 !== undefined ? [`Image hash: ${job.imageSha256.slice(0, 10)}`] : []),
    `Version: denoise ${denoConfig.version}`,
  ];
  return fields.join(", ");
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A library validation error as a usage error (flags) or bad input (a job document). */
function optionFailure(error: unknown, fromFlags: boolean, kind: string): unknown {
  if (error instanceof DenoiseError || !(error instanceof Error)) return error;
  const hint = `see "denoise preprocess --help" for ${kind}'s options`;
  return fromFlags
    ? new UsageError(error.message, { hint, cause: error })
    : new InputError(`Invalid job: ${error.message}`, { hint, cause: error });
}

/** The `preprocess` command. */
export function preprocessCommand() {
  const command = new Command("preprocess")
    .description("make a ControlNet control image (edges, depth, pose, ...) from an image")
    .argument("[kind]", `the preprocessor: ${PREPROCESSOR_KINDS.join(", ")}`)
    .argument("[image]", "the input image (PNG, JPEG, WebP), or - for stdin (default: stdin)")
    .option("-o, --output <file|->", "output file (default: stdout)")
    .addOption(
      new Option("--format <format>", "image format (default from -o's extension, else png)")
        .choices(["png", "jpeg", "webp"] as const),
    )
    .option("--quality <q>", "JPEG/WebP quality 1-100 (default 95)", positiveInt("--quality"))
    .option(
      "-m, --model <alias|folder|file>",
      "model-based kinds: an alias, a folder of the model's files, or a file (default: the " +
        "kind's alias in models.lock.json)",
    )
    .option(
      "--detect-resolution <px>",
      "resize the input first so its short side is about px (sides multiples of 64), as " +
        "controlnet_aux; default: work at the input's size",
      positiveInt("--detect-resolution"),
    )
    .option(
      "--image-resolution <px>",
      "write the control image with its short side about px (sides multiples of 64); default: " +
        "the input's size",
      positiveInt("--image-resolution"),
    );
  for (const f of KIND_FLAGS) {
    // Listed per kind under "Kinds:" in the help, with each kind's own default.
    const option = new Option(f.flag, f.spec.description).hideHelp();
    if (f.spec.type !== "boolean") option.argParser(finiteNumber(`--${kebab(f.key)}`));
    command.addOption(option);
  }
  command
    .option("--json", "print a JSON line (path, kind, size, job) for the file written")
    .addOption(
      new Option("--device <device>", "execution provider of model-based kinds").choices(
        ["cpu", "cuda"] as const,
      ).default("cpu" as const),
    )
    .option("--threads <n>", "threads per model evaluation", positiveInt("--threads"))
    .option("--job <file>", "read the job from a JSON file, an image made by denoise, or - (stdin)")
    .option("--dry-run", "print the resolved job as JSON and do nothing else")
    .addHelpText(
      "after",
      "\nKind options: the flags listed under each kind below (e.g. --low 50 for canny).\n" +
        kindsHelp() +
        examples([
          ["denoise preprocess canny photo.png -o edges.png", "Canny edges (100, 200)"],
          [
            "denoise preprocess canny photo.png --low 50 --high 150 --l2 -o edges.png",
            "other thresholds, L2 gradient",
          ],
          [
            'denoise preprocess canny photo.png | denoise controlnet "a house" -m sd15 --control canny-net:- -o house.png',
            "feed a ControlNet in a pipe",
          ],
          [
            "denoise preprocess depth photo.jpg --detect-resolution 512 -o depth.png",
            "Depth Anything (denoise models pull depth-anything-v2-small first)",
          ],
          [
            "denoise preprocess openpose people.png --no-face -o pose.png",
            "DWPose skeletons (denoise models pull dwpose first)",
          ],
          [
            "denoise preprocess softedge photo.png --safe -o soft.png",
            "HED soft edges (denoise models pull hed first; -m pidinet for PiDiNet)",
          ],
          [
            "denoise preprocess lineart photo.png -m ./sk_model.pth -o lines.png",
            "line art from a weight file (--coarse with the lineart alias: sk_model2.pth)",
          ],
          [
            "denoise meta read edges.png | denoise preprocess --job - photo.png -o again.png",
            "remake a control image from its metadata",
          ],
        ]) +
        "\nExit codes: 2 unknown kind or bad option, 3 undecodable image or weights, 4 missing model, 5 I/O.\n",
    );
  return command.action(async (firstArg, secondArg, commandOptions, cmd) => {
    const options = commandOptions as unknown as PreprocessOptions;
    const ctx = runContext(cmd);
    const explicit = explicitOptions(cmd);
    const loaded = await loadJobOption(options.job);
    const jobCommand = loaded?.document.command;
    if (jobCommand !== undefined && jobCommand !== "preprocess") {
      throw new UsageError(
        `The job in ${loaded!.label} is for "denoise ${
          String(jobCommand)
        }", not "denoise preprocess"`,
        { hint: `run it with "denoise ${String(jobCommand)} --job ..."` },
      );
    }
    // With --job the kind may be left out: "denoise preprocess --job - photo.png".
    const kindFirst = firstArg === undefined || secondArg !== undefined || loaded === undefined ||
      isPreprocessorKind(firstArg);
    const kindArg = kindFirst ? firstArg : undefined;
    const imageArg = kindFirst ? secondArg : firstArg;

    // 1. The kind: the argument, else the job's.
    const kind = kindArg ?? (loaded?.document.kind as string | undefined);
    if (kind === undefined) {
      throw new UsageError("No preprocessor kind given", {
        hint: `use one of ${
          PREPROCESSOR_KINDS.join(", ")
        }, e.g. "denoise preprocess canny photo.png"`,
      });
    }
    if (!isPreprocessorKind(kind)) {
      const error = new UsageError(
        `Unknown preprocessor "${kind}": use one of ${PREPROCESSOR_KINDS.join(", ")}`,
      );
      if (kindArg !== undefined) throw error;
      throw new InputError(`The job in ${loaded!.label}: ${error.message}`);
    }
    const preprocessor = getPreprocessor(kind);

    // 2. The kind's options: the job's (for the same kind), then flags; a flag of another kind
    // is an error.
    const flagOptions: Record<string, unknown> = {};
    for (const f of KIND_FLAGS) {
      if (explicit[f.key] === undefined) continue;
      if (!f.kinds.includes(kind)) {
        throw new UsageError(
          `${f.flag.split(" ")[0]} is an option of ${f.kinds.join(", ")}, not of ${kind}`,
          { hint: `see "denoise preprocess --help" for ${kind}'s options` },
        );
      }
      flagOptions[f.key] = explicit[f.key];
    }
    const documentOptions = loaded !== undefined && loaded.document.kind === kind &&
        typeof loaded.document.options === "object" && loaded.document.options !== null
      ? loaded.document.options as Record<string, unknown>
      : {};
    const flags = pickJobFlags(PreprocessJob, explicit);
    flags.kind = kind;
    flags.options = { ...documentOptions, ...flagOptions };
    if (imageArg !== undefined) {
      if (imageArg === "-") delete flags.image;
      else flags.image = imageArg;
    }
    const document = loaded === undefined ? undefined : { ...loaded.document };
    if (document !== undefined && (imageArg !== undefined || document.kind !== kind)) {
      // A different input (or kind) makes the recorded input and its hash stale.
      delete document.image;
      delete document.imageSha256;
    }
    let job = resolveJob(PreprocessJob, "preprocess", {
      flags,
      ...(document ? { document, documentLabel: loaded!.label } : {}),
    });
    let resolved;
    try {
      resolved = resolvePreprocessOptions(kind, job.options);
    } catch (error) {
      throw optionFailure(error, Object.keys(flagOptions).length > 0 || loaded === undefined, kind);
    }
    if (preprocessor.model === undefined && job.model !== undefined) {
      throw new UsageError(`The ${kind} preprocessor runs no model`, { hint: "drop --model" });
    }
    job = withFields(PreprocessJob, job, {
      options: resolved,
      ...(preprocessor.model !== undefined && job.model === undefined
        ? { model: preprocessor.model.defaultAlias }
        : {}),
    });
    if (options.dryRun) {
      await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
      return;
    }

    // 3. Where the result goes, and the model files: both checked before any work.
    const plan = planOutput(options.output, options.format, options.json === true);
    const env = runEnvironment({ threads: options.threads, device: options.device });
    const models = preprocessor.model === undefined
      ? undefined
      : await resolvePreprocessorModel(preprocessor, job.model, {
        lock: env.lock,
        cacheDir: env.cacheDir,
        options: resolved,
      });

    // 4. The input: the argument, else the image the job names, else stdin.
    const source = imageArg ?? job.image;
    if (options.job === "-" && (source === undefined || source === "-")) {
      throw new UsageError("--job - and the input image cannot both come from stdin", {
        hint: "pass the image as a file: denoise preprocess --job - photo.png",
      });
    }
    const input = await readInput(source, { what: "input image" });
    const sha = await sha256Hex(input.bytes);
    if (job.imageSha256 !== undefined && job.imageSha256 !== sha) {
      ctx.warn(`${input.label} differs from the image the job was made from (SHA-256 differs)`);
    }
    job = withFields(PreprocessJob, job, {
      imageSha256: sha,
      ...(source !== undefined && source !== "-" ? { image: source } : {}),
    });
    // Alpha is composited onto white as controlnet_aux's HWC3 does (toRgb), not by sharp.
    const raw = await decodeImage(input.bytes, { label: input.label, channels: 4 });
    const image = toRgb(raw);

    // 5. Preprocess (at the detect resolution when asked), then size the result.
    const work = job.detectResolution === undefined
      ? image
      : detectResize(image, job.detectResolution);
    const control = await preprocess(work, kind, resolved, {
      ...(models !== undefined ? { models } : {}),
      cacheDir: env.cacheDir,
      session: {
        ...(env.threads !== undefined ? { threads: env.threads } : {}),
        executionProvider: env.device ?? "cpu",
      },
    });
    const sameSize = control.width === work.width && control.height === work.height;
    const out =
      sameSize && (job.detectResolution !== undefined || job.imageResolution !== undefined)
        ? resizeControl(control, image.width, image.height, job.imageResolution)
        : control;

    // 6. Encode with the infotext and the Job, and write.
    const bytes = await encodeWithMetadata(out, plan.format, {
      infotext: infotext(job, out.width, out.height),
      job,
    }, options.quality !== undefined ? { quality: options.quality } : {});
    if (plan.file === undefined) {
      await writeOutput(bytes, { binary: true });
      return;
    }
    await writeFileAtomic(plan.file, bytes);
    ctx.info(`wrote ${plan.file}`);
    if (options.json) {
      await writeOutput(
        JSON.stringify({ path: plan.file, kind, width: out.width, height: out.height, job }) + "\n",
        { binary: false },
      );
    }
  });
}
