/**
 * What `generate` and `img2img` share: their flags, the run environment, and writing the images
 * (one to a file or stdout, many to a folder with deterministic names that reruns skip).
 *
 * @module
 */
import { type Command, Option } from "@commander-js/extra-typings";
import { existsSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import denoConfig from "../deno.json" with { type: "json" };
import builtinLock from "../models.lock.json" with { type: "json" };
import { describeLedgers, type LoraLedger } from "../lib/adapters/mod.ts";
import { UsageError } from "../lib/errors.ts";
import { type Precision, PRECISIONS } from "../lib/job/diffusion.ts";
import { cacheRoot, parseLock } from "../lib/hub/mod.ts";
import { type ScheduleName, SIGMA_SCHEDULES } from "../lib/schedulers/mod.ts";
import type { ImageFormat } from "../lib/image/codec.ts";
import { writeFileAtomic, writeOutput } from "../lib/io/output.ts";
import type { MadeImage, RunEnvironment } from "../lib/pipeline/run.ts";
import { DEFAULT_MAX_PIXELS } from "../lib/pipeline/resolve.ts";
import { seedValue } from "../lib/pipeline/batch.ts";
import { resolveThreads } from "../lib/onnx/threads.ts";
import { type AnyCommand, finiteNumber, positiveInt, type RunContext } from "./common.ts";

/** The values of the flags {@linkcode addDiffusionOptions} adds. */
export interface DiffusionOptions {
  negative?: string;
  model?: string;
  steps?: number;
  cfg?: number;
  sampler?: string;
  schedule?: ScheduleName;
  seed?: string;
  rng?: "cpu" | "nv";
  batchSize?: number;
  batchCount?: number;
  clipSkip?: number;
  vae?: string;
  vaeTiling?: true;
  promptSyntax?: "a1111" | "plain";
  emphasis?: "original" | "no-norm" | "ignore" | "none";
  guidanceRescale?: number;
  originalSize?: { width: number; height: number };
  cropsCoordsTopLeft?: { top: number; left: number };
  targetSize?: { width: number; height: number };
  lora?: LoraFlag[];
  loraDir?: string;
  embedding?: EmbeddingFlag[];
  embeddingsDir?: string;
  output?: string;
  format?: ImageFormat;
  quality?: number;
  json?: true;
  overwrite?: true;
  device: "cpu" | "cuda";
  precision?: Precision;
  threads?: number;
  maxPixels?: number;
  lowMemory?: true;
  job?: string;
  dryRun?: true;
}

/** Options of {@linkcode addDiffusionOptions}. */
export interface AddDiffusionOptionsOptions {
  /** Long flags (without "--") a command leaves out, e.g. `["batch-size"]`. */
  except?: readonly string[];
}

/** Adds the flags generate and img2img share (those in `except` left out). */
export function addDiffusionOptions<C extends AnyCommand>(
  command: C,
  options: AddDiffusionOptionsOptions = {},
): C {
  const before = command.options.length;
  command
    .option("--negative <text>", "negative prompt")
    .option(
      "-m, --model <path|alias>",
      "a Diffusers model folder or an alias (denoise models list)",
    )
    .option("--steps <n>", "sampling steps (default 20)", positiveInt("--steps"))
    .option(
      "--cfg <scale>",
      "guidance scale (default per model: 7.5, SDXL 5; <= 1 = no guidance, e.g. 0 for turbo models)",
      finiteNumber("--cfg"),
    )
    .option(
      "--sampler <name>",
      "sampler: euler, euler-a, dpm++2m, ... or an A1111 label (denoise samplers)",
    )
    .addOption(
      new Option("--schedule <name>", "sigma schedule").choices(SIGMA_SCHEDULES),
    )
    .option(
      "--seed <n>",
      "seed of the first image (default random; image k uses seed + k)",
      seedArg,
    )
    .addOption(
      new Option("--rng <source>", "noise source: torch CPU, or A1111's NV philox").choices(
        ["cpu", "nv"] as const,
      ),
    )
    .option("--batch-size <n>", "images denoised together", positiveInt("--batch-size"))
    .option("--batch-count <n>", "batches run one after another", positiveInt("--batch-count"))
    .option(
      "--clip-skip <n>",
      "A1111 clip skip: 1 = last CLIP layer, 2 = penultimate",
      positiveInt("--clip-skip"),
    )
    .option("--vae <folder>", "decode with this VAE (a folder with config.json and weights)")
    .option("--vae-tiling", "decode in overlapping tiles (bounded memory for large images)")
    .addOption(
      new Option("--prompt-syntax <syntax>", "prompt language").choices(
        ["a1111", "plain"] as const,
      ),
    )
    .addOption(
      new Option("--emphasis <mode>", "how (word:1.2) weights apply").choices(
        ["original", "no-norm", "ignore", "none"] as const,
      ),
    )
    .option(
      "--guidance-rescale <phi>",
      "Diffusers guidance_rescale (0..1)",
      finiteNumber("--guidance-rescale"),
    )
    .option(
      "--original-size <WxH>",
      "SDXL micro-conditioning original size",
      sizeArg("--original-size"),
    )
    .option("--crops-coords-top-left <TOP,LEFT>", "SDXL micro-conditioning crop corner", cropArg)
    .option("--target-size <WxH>", "SDXL micro-conditioning target size", sizeArg("--target-size"))
    .option(
      "--lora <file[:scale[:unet]]>",
      "merge a LoRA (kohya, LyCORIS, Diffusers/PEFT); a second number is the UNet scale " +
        "(repeatable)",
      loraArg,
    )
    .option("--lora-dir <dir>", "folder searched for the LoRAs of <lora:name:scale> prompt tags")
    .option(
      "--embedding <file[:token]>",
      "add a textual-inversion embedding, written in prompts as its token (default: the file " +
        "name; repeatable)",
      embeddingArg,
    )
    .option("--embeddings-dir <dir>", "folder of embeddings usable by name in the prompts")
    .option(
      "-o, --output <file|dir>",
      "output file, or a folder for several images (default: stdout)",
    )
    .addOption(
      new Option("--format <format>", "image format (default from -o's extension, else png)")
        .choices(["png", "jpeg", "webp"] as const),
    )
    .option("--quality <q>", "JPEG/WebP quality 1-100 (default 95)", positiveInt("--quality"))
    .option("--json", "print one JSON line per image written (path, seed, job) on stdout")
    .option("--overwrite", "remake images whose files already exist")
    .addOption(
      new Option("--device <device>", "execution provider").choices(["cpu", "cuda"] as const)
        .default("cpu" as const),
    )
    .addOption(
      new Option(
        "--precision <p>",
        "graph precision (default: fp32 on cpu, fp16 on cuda; a VAE with force_upcast stays " +
          "fp32; int8, cpu only: UNet and text encoder weights in int8, the VAE in fp32)",
      ).choices(PRECISIONS),
    )
    .option(
      "--threads <n>",
      "threads per model evaluation (default: $DENOISE_THREADS, else every core this process " +
        "may use; never more)",
      positiveInt("--threads"),
    )
    .option(
      "--max-pixels <n>",
      `refuse outputs above this many pixels (default: $DENOISE_MAX_PIXELS, else ${DEFAULT_MAX_PIXELS})`,
      positiveInt("--max-pixels"),
    )
    .option("--low-memory", "keep only one model in memory at a time")
    .option("--job <file>", "read the job from a JSON file, an image made by denoise, or - (stdin)")
    .option("--dry-run", "print the resolved job as JSON and do nothing else");
  const except = new Set((options.except ?? []).map((name) => `--${name}`));
  if (except.size > 0) {
    // Commander has no removeOption: keep the command's own options and the shared ones wanted.
    const kept = command.options.filter((o, i) => i < before || !except.has(o.long ?? ""));
    (command as unknown as { options: Option[] }).options = kept;
  }
  return command;
}

/** A commander parser for `WIDTHxHEIGHT`. */
export function sizeArg(name: string) {
  return (value: string): { width: number; height: number } => {
    const m = /^\s*(\d+)\s*[xX,]\s*(\d+)\s*$/.exec(value);
    if (!m || Number(m[1]) <= 0 || Number(m[2]) <= 0) {
      throw new UsageError(`"${name}" must be WIDTHxHEIGHT, e.g. 1024x1024, got "${value}"`);
    }
    return { width: Number(m[1]), height: Number(m[2]) };
  };
}

/** A commander parser for `TOP,LEFT`. */
export function cropArg(value: string): { top: number; left: number } {
  const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(value);
  if (!m) {
    throw new UsageError(`"--crops-coords-top-left" must be TOP,LEFT, e.g. 0,0, got "${value}"`);
  }
  return { top: Number(m[1]), left: Number(m[2]) };
}

/** A commander parser for a seed (0 to 2^64-1, kept as its decimal text). */
export function seedArg(value: string): string {
  if (!/^\d{1,20}$/.test(value) || BigInt(value) >= 2n ** 64n) {
    throw new UsageError(`"--seed" must be an integer from 0 to 2^64-1, got "${value}"`);
  }
  return value;
}

/** One `--lora` flag as a Job entry. */
export interface LoraFlag {
  path: string;
  scale: number;
  unet?: number;
}

/** One `--embedding` flag as a Job entry. */
export interface EmbeddingFlag {
  path: string;
  token?: string;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Parses `FILE[:SCALE[:UNET]]` (repeatable); a path that exists as given is never split. */
export function loraArg(value: string, previous: LoraFlag[] | undefined): LoraFlag[] {
  const parts = value.split(":");
  const numbers: number[] = [];
  while (!existsSync(parts.join(":")) && parts.length > 1 && numbers.length < 2) {
    const tail = parts[parts.length - 1]!;
    if (!NUMBER.test(tail)) break;
    numbers.unshift(Number(tail));
    parts.pop();
  }
  const path = parts.join(":");
  if (path === "") throw new UsageError(`"--lora" needs a file, got "${value}"`);
  // "FILE:abc" where FILE exists: a misspelt scale, not a file named "FILE:abc".
  const at = value.lastIndexOf(":");
  if (numbers.length === 0 && at > 0 && !existsSync(value) && existsSync(value.slice(0, at))) {
    throw new UsageError(
      `"--lora ${value}": the scale "${value.slice(at + 1)}" is not a number`,
      { hint: "write --lora FILE:SCALE[:UNET_SCALE], e.g. --lora detail.safetensors:0.7" },
    );
  }
  const flag: LoraFlag = { path, scale: numbers[0] ?? 1 };
  if (numbers[1] !== undefined) flag.unet = numbers[1];
  return [...(previous ?? []), flag];
}

/** Parses `FILE[:TOKEN]` (repeatable); a path that exists as given is never split. */
export function embeddingArg(
  value: string,
  previous: EmbeddingFlag[] | undefined,
): EmbeddingFlag[] {
  const at = value.lastIndexOf(":");
  const flag: EmbeddingFlag = existsSync(value) || at <= 0
    ? { path: value }
    : { path: value.slice(0, at), token: value.slice(at + 1) };
  if (flag.token === "") throw new UsageError(`"--embedding ${value}" has an empty token`);
  return [...(previous ?? []), flag];
}

/** A positive integer from an environment variable, or undefined when it is unset. */
function envInt(name: string): number | undefined {
  const value = Deno.env.get(name);
  if (value === undefined || value === "") return undefined;
  if (!/^\s*\d+\s*$/.test(value) || Number(value) < 1) {
    throw new UsageError(`${name} must be a positive integer, got "${value}"`);
  }
  return Number(value);
}

/**
 * The run environment from the process environment and flags. Threads: `--threads`, else
 * `DENOISE_THREADS`, else every core this process may use, and never more than those (a warning
 * says when a request was lowered). The pixel budget: `--max-pixels`, else `DENOISE_MAX_PIXELS`.
 */
export function runEnvironment(
  options: {
    threads?: number | undefined;
    device?: "cpu" | "cuda" | undefined;
    lowMemory?: boolean | undefined;
    maxPixels?: number | undefined;
  },
  ctx?: Pick<RunContext, "warn">,
): RunEnvironment {
  const threads = resolveThreads(options.threads ?? envInt("DENOISE_THREADS"));
  if (threads.cappedFrom !== undefined) {
    ctx?.warn(
      `${threads.cappedFrom} threads asked for, but this process may use ${threads.threads} ` +
        `core(s); using ${threads.threads}`,
    );
  }
  const maxPixels = options.maxPixels ?? envInt("DENOISE_MAX_PIXELS");
  const lockPath = Deno.env.get("DENOISE_MODELS_LOCK");
  const lock = lockPath === undefined
    ? parseLock(JSON.stringify(builtinLock), "the built-in models.lock.json")
    : parseLock(Deno.readTextFileSync(lockPath), lockPath);
  return {
    cacheDir: cacheRoot({
      DENOISE_HOME: Deno.env.get("DENOISE_HOME"),
      XDG_CACHE_HOME: Deno.env.get("XDG_CACHE_HOME"),
      HOME: Deno.env.get("HOME"),
    }),
    lock,
    threads: threads.threads,
    device: options.device ?? "cpu",
    ...(maxPixels !== undefined ? { maxPixels } : {}),
    lowMemory: options.lowMemory ?? false,
    version: denoConfig.version,
    tokenizerDir: Deno.env.get("DENOISE_TOKENIZER"),
  };
}

const EXTENSIONS: Record<ImageFormat, string> = { png: "png", jpeg: "jpg", webp: "webp" };

/** Where images go. */
export interface OutputPlan {
  format: ImageFormat;
  /** A folder for named images, or undefined. */
  dir?: string;
  /** One file, or undefined for stdout. */
  file?: string;
}

/**
 * Decides where `count` images go: `-o FILE` (one image), `-o DIR` (a trailing slash, an
 * existing folder, or an extension-less path when several images are made; created when
 * missing), or stdout (one image).
 */
export async function planOutput(
  output: string | undefined,
  format: ImageFormat | undefined,
  count: number,
  multiple: boolean,
): Promise<OutputPlan> {
  const ext = output ? extname(output).toLowerCase() : "";
  const fromExt: ImageFormat | undefined = ext === ".png"
    ? "png"
    : ext === ".jpg" || ext === ".jpeg"
    ? "jpeg"
    : ext === ".webp"
    ? "webp"
    : undefined;
  // A folder when the path says so (a trailing slash, an existing folder) or several images are
  // made; one image goes to the file named, whatever its extension (format from --format, else
  // the extension, else PNG).
  const isDir = output !== undefined && output !== "-" &&
    (output.endsWith("/") || (existsSync(output) && statSync(output).isDirectory()) ||
      (fromExt === undefined && ext === "" && (count > 1 || multiple)));
  if (output === undefined || output === "-") {
    if (count > 1 || multiple) {
      throw new UsageError(`This run makes ${count} images; stdout takes one`, {
        hint: "pass -o DIR to write them into a folder",
      });
    }
    // Fail before the work, not after it.
    if (Deno.stdout.isTerminal()) {
      throw new UsageError("Refusing to write binary image data to a terminal", {
        hint: "pass -o FILE, or pipe into another command (e.g. | denoise meta read)",
      });
    }
    return { format: format ?? "png" };
  }
  if (isDir) {
    await Deno.mkdir(output, { recursive: true });
    return { format: format ?? "png", dir: output };
  }
  if (count > 1 || multiple) {
    throw new UsageError(`This run makes ${count} images but -o names one file: "${output}"`, {
      hint: "pass -o DIR (a folder) instead",
    });
  }
  if (ext !== "" && fromExt === undefined) {
    throw new UsageError(`Cannot tell the image format from "${output}"`, {
      hint: "use a .png, .jpg or .webp name, or --format",
    });
  }
  return { format: format ?? fromExt ?? "png", file: output };
}

/** The path an image goes to in a folder plan. */
export function imagePath(plan: OutputPlan, name: string): string | undefined {
  if (plan.dir !== undefined) return join(plan.dir, `${name}.${EXTENSIONS[plan.format]}`);
  return plan.file;
}

/**
 * Resume: with a folder plan, an image counts as made when its file exists (its name derives
 * from its own Job), unless `--overwrite`; stdout and single files never skip.
 */
export function madeCheck(
  plan: OutputPlan,
  overwrite: boolean | undefined,
): ((name: string) => boolean) | undefined {
  if (overwrite || plan.dir === undefined) return undefined;
  return (name) => existsSync(imagePath(plan, name)!);
}

/** Writes one made image where the plan says, printing a JSON line when asked. */
export async function writeImage(
  plan: OutputPlan,
  image: MadeImage,
  options: { json?: boolean | undefined; ctx: RunContext },
): Promise<void> {
  const path = imagePath(plan, image.name);
  if (path === undefined) {
    await writeOutput(image.bytes, { binary: true });
    return;
  }
  await writeFileAtomic(path, image.bytes);
  options.ctx.info(`wrote ${path}`);
  if (options.json) {
    await writeOutput(
      // The seed as the Job has it: a number when exact, else a decimal string.
      JSON.stringify({ path, seed: seedValue(image.seed), job: image.job }) + "\n",
      { binary: false },
    );
  }
}

/** Prints what each LoRA file applied, one line per module, with --debug. */
export function debugLedger(ctx: RunContext): (ledgers: readonly LoraLedger[]) => void {
  return (ledgers) => {
    for (const line of describeLedgers(ledgers)) ctx.debug(line);
  };
}

/** For help texts: the examples both commands share. */
export const SEED_NOTE =
  "\nSeeds: --seed S reproduces Diffusers with torch.Generator('cpu').manual_seed(S);\n" +
  "image k of a run uses seed S+k, so any image can be remade alone from its metadata.\n";

/** Re-exported for commands. */
export type { Command };
