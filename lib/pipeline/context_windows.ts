/**
 * Sliding context windows for clips longer than a motion module's positions (AnimateDiff's
 * "context" or "uniform" schedule): at each denoising step the frames are split into windows of
 * `length` frames that overlap by `overlap`, each window is one clip of the motion UNet, and each
 * frame's prediction is the mean over the windows that hold it (AnimateDiff-Evolved's "flat"
 * fuse method).
 *
 * The schedules follow Kosinkadink/ComfyUI-AnimateDiff-Evolved `animatediff/context.py`
 * (itself from neggles/animatediff-cli): `create_windows_uniform_standard` ("standard_uniform",
 * the default here: windows never wrap past the last frame, a wrapping window is slid back to end
 * at the last frame and duplicates are dropped) and `create_windows_uniform_looped`
 * ("looped_uniform": windows wrap around, frame F-1 is followed by frame 0, for looping clips).
 * Both shift the windows from step to step by `ordered_halving(step)` of the clip, so seams move.
 * `step` here is the index into the scheduler's timesteps (Diffusers' loop index).
 *
 * As in AnimateDiff-Evolved, a clip no longer than `length` frames gets one window holding every
 * frame (no shifting), so such a run equals the run without context windows exactly.
 *
 * @module
 */

/** The uniform schedules of AnimateDiff-Evolved. */
export type ContextSchedule = "standard_uniform" | "looped_uniform";

/** The context schedules, for flag and Job validation. */
export const CONTEXT_SCHEDULES: readonly ContextSchedule[] = ["standard_uniform", "looped_uniform"];

/** How a clip is split into windows. */
export interface ContextOptions {
  /** Frames per window (at most the motion module's max length). */
  length: number;
  /** Frames shared by neighbouring windows (below `length`). */
  overlap: number;
  /** Largest frame stride is `2^(stride - 1)` (AnimateDiff-Evolved `context_stride`, default 1). */
  stride?: number;
  /** Schedule (default `"standard_uniform"`). */
  schedule?: ContextSchedule;
  /** Looped schedule only: also make windows that join the last frames to the first. */
  closedLoop?: boolean;
}

/**
 * AnimateDiff's `ordered_halving`: the bits of `value` reversed over 64 bits, as a fraction of
 * 2^64 (0, 1/2, 1/4, 3/4, 1/8, ...), exact in float64 as Python computes it.
 *
 * @example
 * ```ts
 * import { orderedHalving } from "./context_windows.ts";
 * console.assert(orderedHalving(0) === 0 && orderedHalving(1) === 0.5 && orderedHalving(3) === 0.75);
 * ```
 */
export function orderedHalving(value: number): number {
  let v = BigInt(value) & ((1n << 64n) - 1n);
  let flipped = 0n;
  for (let i = 0; i < 64; i++) {
    flipped = (flipped << 1n) | (v & 1n);
    v >>= 1n;
  }
  // Python: int / (1 << 64) rounds the quotient to the nearest double.
  return Number(flipped) / 2 ** 64;
}

/** Python's `round()` for the non-negative values used here: halves go to the even integer. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Python `range(start, stop, step)` for a positive step. */
function range(start: number, stop: number, step = 1): number[] {
  const out: number[] = [];
  for (let v = start; v < stop; v += step) out.push(v);
  return out;
}

/**
 * Throws a RangeError for options that make no windows, or windows longer than `maxLength` (the
 * motion module's positions); messages name the CLI flags.
 *
 * @example
 * ```ts
 * import { checkContextOptions } from "./context_windows.ts";
 * checkContextOptions({ length: 16, overlap: 4 }, 32);
 * let refused = false;
 * try { checkContextOptions({ length: 16, overlap: 16 }); } catch { refused = true; }
 * console.assert(refused);
 * ```
 */
export function checkContextOptions(options: ContextOptions, maxLength?: number): void {
  const { length, overlap } = options;
  const stride = options.stride ?? 1;
  if (!Number.isInteger(length) || length < 1) {
    throw new RangeError(`--context-length must be a positive integer, got ${length}`);
  }
  if (maxLength !== undefined && length > maxLength) {
    throw new RangeError(
      `--context-length ${length} is longer than the motion module's ${maxLength} frame ` +
        `positions; use --context-length ${maxLength} or less`,
    );
  }
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= length) {
    throw new RangeError(
      `--context-overlap must be an integer from 0 to ${length - 1} (below --context-length), ` +
        `got ${overlap}`,
    );
  }
  if (!Number.isInteger(stride) || stride < 1) {
    throw new RangeError(`--context-stride must be a positive integer, got ${stride}`);
  }
}

/** The uniform windows before looped/standard treatment (`create_windows_uniform_*`). */
function uniformWindows(
  frames: number,
  step: number,
  options: Required<ContextOptions>,
  tail: number,
): number[][] {
  const { length, overlap } = options;
  const stride = Math.min(options.stride, Math.ceil(Math.log2(frames / length)) + 1);
  const shift = orderedHalving(step);
  const windows: number[][] = [];
  for (let k = 0; k < stride; k++) {
    const contextStep = 1 << k;
    const pad = roundHalfEven(frames * shift);
    const start = Math.trunc(shift * contextStep) + pad;
    for (const j of range(start, frames + pad + tail, length * contextStep - overlap)) {
      windows.push(range(j, j + length * contextStep, contextStep).map((e) => e % frames));
    }
  }
  return windows;
}

/** Index where a window's frames (mod F) stop increasing, or -1 (`does_window_roll_over`). */
function rollIndex(window: readonly number[], frames: number): number {
  let previous = -1;
  for (let i = 0; i < window.length; i++) {
    const v = window[i]! % frames;
    if (v < previous) return i;
    previous = v;
  }
  return -1;
}

/** `shift_window_to_end`: rebase on the first frame, then slide so it ends at frame F-1. */
function shiftToEnd(window: number[], frames: number): void {
  const first = window[0]!;
  for (let i = 0; i < window.length; i++) window[i] = (window[i]! - first + frames) % frames;
  const delta = frames - window[window.length - 1]! - 1;
  for (let i = 0; i < window.length; i++) window[i] = window[i]! + delta;
}

/**
 * The windows (lists of frame indices) for denoising step `step` of a clip of `frames` frames.
 * One window of every frame when `frames <= options.length`.
 *
 * @example
 * ```ts
 * import { contextWindows } from "./context_windows.ts";
 * const w = contextWindows(24, 0, { length: 16, overlap: 4 });
 * console.assert(w.length === 2 && w[0]![0] === 0 && w[1]![0] === 8 && w[1]![15] === 23);
 * console.assert(contextWindows(8, 3, { length: 16, overlap: 4 }).length === 1);
 * ```
 */
export function contextWindows(frames: number, step: number, options: ContextOptions): number[][] {
  checkContextOptions(options);
  if (!Number.isInteger(frames) || frames < 1) {
    throw new RangeError(`A clip must have at least one frame, got ${frames}`);
  }
  const full: Required<ContextOptions> = {
    length: options.length,
    overlap: options.overlap,
    stride: options.stride ?? 1,
    schedule: options.schedule ?? "standard_uniform",
    closedLoop: options.closedLoop ?? false,
  };
  if (frames <= full.length) return [range(0, frames)];
  if (full.schedule === "looped_uniform") {
    return uniformWindows(frames, step, full, full.closedLoop ? 0 : -full.overlap);
  }
  const windows = uniformWindows(frames, step, full, -full.overlap);
  // Slide every wrapping window back to end at the last frame; make sure the frames it gave up
  // still start a window; then drop repeated windows.
  const repeated: number[] = [];
  for (let i = 0; i < windows.length; i++) {
    const window = windows[i]!;
    const roll = rollIndex(window, frames);
    if (roll >= 0) {
      const rolled = window[roll]!;
      shiftToEnd(window, frames);
      if (!windows[(i + 1) % windows.length]!.includes(rolled)) {
        windows.splice(i + 1, 0, range(rolled, rolled + full.length));
      }
    }
    for (let j = 0; j < i; j++) {
      if (windows[j]!.join() === window.join()) {
        repeated.push(i);
        break;
      }
    }
  }
  for (const i of repeated.reverse()) windows.splice(i, 1);
  for (const window of windows) {
    if (window.some((f) => f < 0 || f >= frames)) {
      throw new RangeError(
        `Context windows of ${full.length} frames do not fit a ${frames}-frame clip ` +
          `(stride ${full.stride}); lower --context-stride`,
      );
    }
  }
  return windows;
}
