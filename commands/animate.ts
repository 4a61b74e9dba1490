/**
 * `denoise animate [PROMPT]`: text to video with an AnimateDiff motion module. Flags become an
 * AnimateJob (lib/job/animate.ts); lib/pipeline/animate_run.ts makes the clip; this file decides
 * where it goes: an animated WebP, GIF or PNG (APNG), an MP4 (through ffmpeg), a folder of PNG
 * frames, or an animated WebP on stdout. Every format carries the Job.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { existsSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { UsageError } from "../lib/errors.ts";
import { checkFfmpeg, writeMp4 } from "../lib/io/ffmpeg.ts";
import { writeFileAtomic, writeOutput } from "../lib/io/output.ts";
import { AnimateJob, pickJobFlags, resolveJob } from "../lib/job/mod.ts";
import { encodeAnimationWithMetadata } from "../lib/meta/animation.ts";
import { encodeWithMetadata } from "../lib/meta/encode.ts";
import { seedValue } from "../lib/pipeline/batch.ts";
import { checkAnimateJob, type MadeAnimation, runAnimateJob } from "../lib/pipeline/animate_run.ts";
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
  runEnvironment,
} from "./diffusion.ts";

/** Where a clip goes. */
type AnimationOutput =
  | { kind: "stdout"; format: "webp" | "gif" | "apng" }
  | { kind: "file"; path: string; format: "webp" | "gif" | "apng" | "mp4" }
  | { kind: "frames"; dir: string };

/** `--format` values and the formats they mean. */
const FORMATS = { webp: "webp", gif: "gif", png: "apng", mp4: "mp4" } as const;

const EXTENSIONS: Record<string, "webp" | "gif" | "apng" | "mp4"> = {
  ".webp": "webp",
  ".gif": "gif",
  ".png": "apng",
  ".apng": "apng",
  ".mp4": "mp4",
};

/**
 * Decides where the clip goes, before any work: `-o FILE` by its extension (or `--format`),
 * `-o DIR/` (one PNG per frame), else stdout (animated WebP, never to a terminal).
 */
async function planAnimationOutput(
  output: string | undefined,
  format: keyof typeof FORMATS | undefined,
): Promise<AnimationOutput> {
  const chosen = format === undefined ? undefined : FORMATS[format];
  if (output === undefined || output === "-") {
    if (chosen === "mp4") {
      throw new UsageError("MP4 cannot be written to stdout", {
        hint: "pass -o clip.mp4, or --format webp for stdout",
      });
    }
    if (Deno.stdout.isTerminal()) {
      throw new UsageError("Refusing to write binary animation data to a terminal", {
        hint: "pass -o clip.webp (or .gif, .png, .mp4, DIR/), or pipe into another command",
      });
    }
    return { kind: "stdout", format: chosen ?? "webp" };
  }
  const ext = extname(output).toLowerCase();
  const isDir = output.endsWith("/") || (existsSync(output) && statSync(output).isDirectory()) ||
    ext === "";
  if (isDir) return { kind: "frames", dir: output };
  const fromExt = EXTENSIONS[ext];
  if (fromExt === undefined && chosen === undefined) {
    throw new UsageError(`Cannot tell the animation format from "${output}"`, {
      hint:
        "use a .webp, .gif, .png (APNG) or .mp4 name, a folder (DIR/) for PNG frames, or --format",
    });
  }
  const kind = chosen ?? fromExt!;
  if (kind === "mp4") await checkFfmpeg();
  return { kind: "file", path: output, format: kind };
}

/** `FILE[:SCALE]` of `--motion-lora` (repeatable); a path that exists as given is never split. */
function motionLoraArg(
  value: string,
  previous: Array<{ path: string; scale: number }> | undefined,
): Array<{ path: string; scale: number }> {
  const at = value.lastIndexOf(":");
  const tail = value.slice(at + 1);
  const split = !existsSync(value) && at > 0 && /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(tail);
  const path = split ? value.slice(0, at) : value;
  if (path === "") throw new UsageError(`"--motion-lora" needs a file, got "${value}"`);
  return [...(previous ?? []), { path, scale: split ? Number(tail) : 1 }];
}

/** `--prompt-map` JSON: an object of frame number -> prompt. */
function promptMapArg(value: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new UsageError(`"--prompt-map" is not valid JSON: ${(error as Error).message}`, {
      hint: `pass an object of frame -> prompt, e.g. '{"0": "a cat", "8": "a dog"}'`,
    });
  }
  if (
    typeof parsed !== "object" || parsed === null || Array.isArray(parsed) ||
    Object.values(parsed).some((v) => typeof v !== "string")
  ) {
    throw new UsageError(`"--prompt-map" must be a JSON object of frame -> prompt text`, {
      hint: `e.g. '{"0": "a cat", "8": "a dog"}'`,
    });
  }
  return parsed as Record<string, string>;
}

/** Writes the clip where the plan says; returns the path written (undefined for stdout). */
async function writeAnimation(
  plan: AnimationOutput,
  made: MadeAnimation,
  quality: number | undefined,
): Promise<string | undefined> {
  const metadata = { infotext: made.infotext, job: made.job };
  const q = quality !== undefined ? { quality } : {};
  switch (plan.kind) {
    case "stdout":
      await writeOutput(
        await encodeAnimationWithMetadata(made.frames, plan.format, metadata, {
          fps: made.fps,
          ...q,
        }),
        { binary: true },
      );
      return undefined;
    case "file":
      if (plan.format === "mp4") {
        await writeMp4(plan.path, made.frames, {
          fps: made.fps,
          metadata: { comment: JSON.stringify(made.job), description: made.infotext },
        });
      } else {
        await writeFileAtomic(
          plan.path,
          await encodeAnimationWithMetadata(made.frames, plan.format, metadata, {
            fps: made.fps,
            ...q,
          }),
        );
      }
      return plan.path;
    case "frames": {
      await Deno.mkdir(plan.dir, { recursive: true });
      const digits = Math.max(3, String(made.frames.length - 1).length);
      for (const [k, frame] of made.frames.entries()) {
        const path = join(plan.dir, `frame_${String(k).padStart(digits, "0")}.png`);
        await writeFileAtomic(path, await encodeWithMetadata(frame, "png", metadata));
      }
      return plan.dir;
    }
  }
}

/** The `animate` command. */
export function animateCommand() {
  const command = new Command("animate")
    .description("make a short video from a text prompt with an AnimateDiff motion module")
    .argument("[prompt]", "the prompt, in A1111 syntax: (word:1.2), [a:b:0.5], AND, BREAK")
    .option(
      "--motion-module <path|alias>",
      "AnimateDiff motion module: mm_sd_v15_v2.ckpt, v3_sd15_mm.ckpt, a Diffusers " +
        "MotionAdapter folder, or an alias (denoise models list)",
    )
    .option("--frames <n>", "frames of the clip (default 16)", positiveInt("--frames"))
    .option(
      "--fps <f>",
      "frames per second of the written animation (default 8)",
      finiteNumber("--fps"),
    )
    .option(
      "--motion-lora <file[:scale]>",
      "merge a motion LoRA (v2_lora_ZoomIn.ckpt, ...) into the motion module (repeatable)",
      motionLoraArg,
    )
    .option(
      "--context-length <n>",
      "denoise in sliding windows of n frames (for clips longer than the module's positions)",
      positiveInt("--context-length"),
    )
    .option(
      "--context-overlap <n>",
      "frames shared by neighbouring windows (default 4)",
      nonNegativeInt("--context-overlap"),
    )
    .option(
      "--context-stride <n>",
      "AnimateDiff-Evolved context stride: also windows of every 2nd, 4th... frame (default 1)",
      positiveInt("--context-stride"),
    )
    .addOption(
      new Option("--context-schedule <name>", "window schedule (default standard_uniform)")
        .choices(["standard_uniform", "looped_uniform"] as const),
    )
    .option("--closed-loop", "looped_uniform: also join the last frames to the first")
    .option(
      "--context-batch <n>",
      "context windows per UNet call (default 1; more is fewer, larger calls and more memory)",
      positiveInt("--context-batch"),
    )
    .option(
      "--prompt-map <json>",
      `prompt travel: '{"0": "a cat", "8": "a dog"}' (frame -> prompt, blended between keyframes; ` +
        "the prompt argument is put before each)",
      promptMapArg,
    )
    .option("--width <px>", "frame width (default from the model)", positiveInt("--width"))
    .option("--height <px>", "frame height (default from the model)", positiveInt("--height"));
  addDiffusionOptions(command, {
    except: ["batch-size", "batch-count", "guidance-rescale", "format", "overwrite"],
  });
  command
    .addOption(
      new Option(
        "--format <format>",
        "animation format (default from -o's extension; stdout: webp); png = APNG",
      ).choices(["webp", "gif", "png", "mp4"] as const),
    )
    .addHelpText(
      "after",
      examples([
        [
          'denoise animate "a red fox running in snow" -m sd15 --motion-module mm_sd_v15_v2 --seed 7 -o fox.webp',
          "16 frames at 8 fps as an animated WebP",
        ],
        [
          'denoise animate "waves at sunset" -m sd15 --motion-module mm_sd_v15_v2 --frames 32 --context-length 16 -o waves.mp4',
          "a clip longer than the module's 32 positions would allow in one piece; MP4 needs ffmpeg",
        ],
        [
          `denoise animate "masterpiece" -m sd15 --motion-module mm_sd_v15_v2 --prompt-map '{"0": "spring", "15": "winter"}' -o seasons.gif`,
          "prompt travel: the conditioning moves from one keyframe prompt to the next",
        ],
        [
          'denoise animate "a city street" -m sd15 --motion-module mm_sd_v15_v2 --motion-lora v2_lora_ZoomIn.ckpt:0.8 -o frames/',
          "a camera motion LoRA; one PNG per frame into frames/",
        ],
        ["denoise meta read fox.webp | denoise animate --job - -o again.webp", "remake a clip"],
      ]) +
        "\nSeeds: --seed S draws the clip's noise as Diffusers' AnimateDiffPipeline does with\n" +
        "torch.Generator('cpu').manual_seed(S): one randn of shape (1, 4, frames, h, w).\n",
    );
  return command.action(async (prompt, commandOptions, cmd) => {
    const options = commandOptions as typeof commandOptions & DiffusionOptions & {
      format?: keyof typeof FORMATS;
      contextBatch?: number;
    };
    const ctx = runContext(cmd);
    const flags = pickJobFlags(AnimateJob, explicitOptions(cmd));
    if (prompt !== undefined) flags.prompt = prompt;
    const loaded = await loadJobOption(options.job);
    let job = resolveJob(AnimateJob, "animate", {
      flags,
      ...(loaded ? { document: loaded.document, documentLabel: loaded.label } : {}),
    });
    if (job.seed === undefined) job = { ...job, seed: seedValue(randomSeed()) };
    if (options.dryRun) {
      await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
      return;
    }
    // Everything that can fail without the model fails before it loads.
    checkAnimateJob(job);
    const plan = await planAnimationOutput(options.output, options.format);
    let made: MadeAnimation;
    try {
      made = await runAnimateJob(runEnvironment(options), job, {
        onProgress: ctx.progress.report,
        onAdapters: debugLedger(ctx),
        windowsPerCall: options.contextBatch,
        onMotionLoras: (ledgers) => {
          for (const l of ledgers) {
            ctx.debug(`motion LoRA ${l.name} (${l.layout}): ${l.applied.length} modules applied`);
          }
        },
      });
    } finally {
      ctx.progress.finish();
    }
    const path = await writeAnimation(plan, made, options.quality);
    if (path !== undefined) {
      ctx.info(`wrote ${path} (${made.frames.length} frames at ${made.fps} fps)`);
      if (options.json) {
        await writeOutput(
          JSON.stringify({
            path,
            seed: String(made.job.seed),
            frames: made.frames.length,
            fps: made.fps,
            format: plan.kind === "frames" ? "png-frames" : plan.format,
            job: made.job,
          }) + "\n",
          { binary: false },
        );
      }
    }
  });
}
