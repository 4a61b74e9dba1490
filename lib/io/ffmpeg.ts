/**
 * Writing MP4 video through an `ffmpeg` program on PATH (denoise bundles no video encoder):
 * raw RGB frames are piped to ffmpeg's stdin, which writes H.264 (libx264, yuv420p, CRF 18) to a
 * temporary file beside the target that is renamed into place, so a failure leaves nothing.
 * Metadata goes into the MP4's tags (`-metadata key=value`: `comment` shows in players and
 * `ffprobe -show_format`). The output is deterministic: one encoder thread and ffmpeg's bitexact
 * flags (no encoder version string).
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { IoError, ModelNotFoundError } from "../errors.ts";

/** Frames of one size, 8-bit RGB interleaved (RawImage of lib/image fits). */
export interface RgbFrame {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/** Options of {@linkcode writeMp4}. */
export interface WriteMp4Options {
  fps: number;
  /** MP4 metadata tags (`comment`, `description`, ...). */
  metadata?: Record<string, string>;
  /** The ffmpeg program (default `"ffmpeg"`, found on PATH). */
  program?: string;
}

/** The error for a missing program, naming it and where it comes from. */
function missing(program: string, cause?: unknown): ModelNotFoundError {
  return new ModelNotFoundError(
    `Cannot write MP4: the program "${program}" is not on PATH`,
    {
      hint: "install ffmpeg (e.g. apt-get install ffmpeg), or write -o clip.webp, .gif or .png",
      ...(cause !== undefined ? { cause } : {}),
    },
  );
}

/**
 * Throws a ModelNotFoundError (exit 4) unless `program -version` runs: call it before the
 * expensive work that the MP4 is for.
 *
 * @example
 * ```ts ignore
 * await checkFfmpeg(); // throws "the program "ffmpeg" is not on PATH" without one
 * ```
 */
export async function checkFfmpeg(program = "ffmpeg"): Promise<void> {
  try {
    const out = await new Deno.Command(program, {
      args: ["-hide_banner", "-version"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    if (!out.success) throw missing(program);
  } catch (error) {
    if (error instanceof ModelNotFoundError) throw error;
    throw missing(program, error);
  }
}

/**
 * Encodes `frames` as an H.264 MP4 at `path` (atomically). Throws a ModelNotFoundError when
 * ffmpeg is missing and an IoError with ffmpeg's last message when it fails.
 *
 * @example
 * ```ts ignore
 * await writeMp4("clip.mp4", frames, { fps: 8, metadata: { comment: JSON.stringify(job) } });
 * ```
 */
export async function writeMp4(
  path: string,
  frames: readonly RgbFrame[],
  options: WriteMp4Options,
): Promise<void> {
  const first = frames[0];
  if (first === undefined) throw new RangeError("Cannot write a video of no frames");
  const { width, height } = first;
  for (const [k, f] of frames.entries()) {
    if (f.width !== width || f.height !== height || f.channels !== 3) {
      throw new TypeError(`Cannot write frame ${k} (${f.width}x${f.height}x${f.channels}) to MP4`);
    }
  }
  if (!(options.fps > 0) || !Number.isFinite(options.fps)) {
    throw new RangeError(`Frame rate must be a positive number, got ${options.fps}`);
  }
  const program = options.program ?? "ffmpeg";
  const temp = join(
    dirname(path),
    `.${basename(path)}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp.mp4`,
  );
  const metadata = Object.entries(options.metadata ?? {}).flatMap(([k, v]) => [
    "-metadata",
    `${k}=${v}`,
  ]);
  const args = [
    "-hide_banner",
    "-loglevel",
    "error",
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "-video_size",
    `${width}x${height}`,
    "-framerate",
    String(options.fps),
    "-i",
    "pipe:0",
    "-c:v",
    "libx264",
    "-preset",
    "medium",
    "-crf",
    "18",
    // yuv420p plays everywhere; it needs even sizes, so odd ones are padded by a pixel.
    "-vf",
    "pad=ceil(iw/2)*2:ceil(ih/2)*2",
    "-pix_fmt",
    "yuv420p",
    "-threads",
    "1",
    "-fflags",
    "+bitexact",
    "-flags:v",
    "+bitexact",
    "-map_metadata",
    "-1",
    ...metadata,
    "-movflags",
    "+faststart",
    "-f",
    "mp4",
    "-y",
    temp,
  ];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw missing(program, error);
  }
  try {
    const writer = child.stdin.getWriter();
    try {
      for (const f of frames) await writer.write(f.data.subarray(0, width * height * 3));
      await writer.close();
    } catch {
      // ffmpeg exited early; its stderr says why.
      await writer.abort().catch(() => {});
    }
    const out = await child.output();
    if (!out.success) {
      const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
      throw new IoError(
        `Cannot write "${path}": ffmpeg failed (exit ${out.code}): ${lines.at(-1) ?? ""}`,
        { hint: "check that this ffmpeg has the libx264 encoder (ffmpeg -encoders)" },
      );
    }
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    if (error instanceof IoError) throw error;
    throw new IoError(`Cannot write "${path}": ${(error as Error).message}`, { cause: error });
  }
}
