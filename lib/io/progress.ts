/**
 * Progress reporting. Library code reports {@linkcode ProgressEvent}s through a callback; the
 * CLI turns them into a bar on a terminal or JSON lines for machines, always on stderr.
 *
 * @module
 */

/** One progress update from long-running library work. */
export interface ProgressEvent {
  /** What is running, e.g. "denoise", "decode", "download sd15/unet". */
  task: string;
  /** Units done so far (0..total). */
  step: number;
  /** Units in all; 0 when unknown. */
  total: number;
  /** Optional detail shown after the bar. */
  detail?: string;
  /**
   * Steps per second measured by the caller (e.g. a resumed run whose first steps were done by
   * another process); default: `step / elapsed`.
   */
  rate?: number;
  /** Extra numbers added to the JSON line (e.g. `{ loss: 0.1, lr: 1e-4 }`); not shown in bars. */
  values?: Record<string, number>;
}

/** The callback library functions accept as `onProgress`. */
export type ProgressCallback = (event: ProgressEvent) => void;

/** How progress is shown: `auto` picks `bar` on a terminal and `none` otherwise. */
export type ProgressMode = "auto" | "bar" | "json" | "none";

/** The progress modes, for flag validation. */
export const PROGRESS_MODES: readonly ProgressMode[] = ["auto", "bar", "json", "none"];

/** A sink for text, such as stderr. */
export interface TextSink {
  write(text: string): void;
}

/** Options for {@linkcode createProgressReporter}. */
export interface ProgressReporterOptions {
  /** Where to write (stderr in the CLI). */
  sink: TextSink;
  /** Whether the sink is a terminal (decides `auto`). */
  isTerminal: boolean;
  /** Use ANSI colours in the bar. */
  color?: boolean;
  /** Clock in milliseconds, for tests. */
  now?: () => number;
  /** Bar width in characters. */
  width?: number;
}

/** A progress callback that also knows how to finish its output. */
export interface ProgressReporter {
  /** Report an update. */
  report: ProgressCallback;
  /** End the current bar line, if any. */
  finish(): void;
  /** The mode actually in use after resolving `auto`. */
  readonly mode: Exclude<ProgressMode, "auto">;
}

/**
 * Creates a reporter for a progress mode.
 *
 * @example
 * ```ts
 * import { createProgressReporter } from "./progress.ts";
 * const lines: string[] = [];
 * const reporter = createProgressReporter("json", {
 *   sink: { write: (t) => lines.push(t) },
 *   isTerminal: false,
 * });
 * reporter.report({ task: "denoise", step: 1, total: 4 });
 * console.assert(JSON.parse(lines[0]!).step === 1);
 * ```
 */
export function createProgressReporter(
  mode: ProgressMode,
  options: ProgressReporterOptions,
): ProgressReporter {
  const resolved = mode === "auto" ? (options.isTerminal ? "bar" : "none") : mode;
  const now = options.now ?? (() => performance.now());
  const starts = new Map<string, number>();
  let barOpen = false;

  const elapsedSeconds = (task: string): number => {
    const start = starts.get(task) ?? now();
    if (!starts.has(task)) starts.set(task, start);
    return (now() - start) / 1000;
  };

  const finish = () => {
    if (barOpen) {
      options.sink.write("\n");
      barOpen = false;
    }
  };

  const report: ProgressCallback = (event) => {
    if (resolved === "none") return;
    const elapsed = elapsedSeconds(event.task);
    if (resolved === "json") {
      const line: Record<string, unknown> = {
        event: "progress",
        task: event.task,
        step: event.step,
        total: event.total,
        elapsed_s: Math.round(elapsed * 1000) / 1000,
      };
      if (event.detail !== undefined) line.detail = event.detail;
      if (event.values !== undefined) {
        for (const [k, v] of Object.entries(event.values)) if (!(k in line)) line[k] = v;
      }
      options.sink.write(JSON.stringify(line) + "\n");
      return;
    }
    options.sink.write(
      "\r\x1b[2K" + formatBar(event, elapsed, options.width ?? 30, options.color ?? false),
    );
    barOpen = true;
    if (event.total > 0 && event.step >= event.total) {
      finish();
      starts.delete(event.task);
    }
  };

  return { report, finish, mode: resolved };
}

/** Formats one bar line: `task [#####.....] 3/10 1.50 it/s ETA 5s detail`. */
export function formatBar(
  event: ProgressEvent,
  elapsedSeconds: number,
  width: number,
  color: boolean,
): string {
  const fraction = event.total > 0 ? Math.min(1, event.step / event.total) : 0;
  const filled = Math.round(fraction * width);
  let bar = "#".repeat(filled) + ".".repeat(width - filled);
  if (color) bar = `\x1b[32m${"#".repeat(filled)}\x1b[2m${".".repeat(width - filled)}\x1b[0m`;
  const rate = event.rate ?? (elapsedSeconds > 0 ? event.step / elapsedSeconds : 0);
  const remaining = rate > 0 && event.total > 0 ? (event.total - event.step) / rate : undefined;
  const parts = [
    `${event.task} [${bar}]`,
    event.total > 0 ? `${event.step}/${event.total}` : `${event.step}`,
  ];
  if (rate > 0) parts.push(rate >= 1 ? `${rate.toFixed(2)} it/s` : `${(1 / rate).toFixed(2)} s/it`);
  if (remaining !== undefined && event.step < event.total) {
    parts.push(`ETA ${formatDuration(remaining)}`);
  }
  if (event.detail) parts.push(event.detail);
  return parts.join(" ");
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes}m${Math.ceil(seconds - minutes * 60)}s`;
}
