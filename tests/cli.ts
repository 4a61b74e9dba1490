/**
 * Runs the denoise CLI as a real subprocess with real pipes, the way users and shell scripts
 * run it.
 *
 * @module
 */
import { join } from "node:path";
import { REPO_ROOT } from "./shared.ts";

/** The result of one CLI run. */
export interface CliResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
  /** stdout decoded as UTF-8. */
  text: string;
}

/** Options for {@linkcode runCli}. */
export interface RunCliOptions {
  /** Bytes to write to stdin (stdin is closed either way; "inherit" is never used). */
  stdin?: Uint8Array | string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory (default: the repository root). */
  cwd?: string;
}

const MAIN = join(REPO_ROOT, "main.ts");

/** Runs `denoise ARGS...` with the permissions of `deno task denoise`. */
export async function runCli(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--no-lock", MAIN, ...args],
    cwd: options.cwd ?? REPO_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = command.spawn();
  const writer = child.stdin.getWriter();
  if (options.stdin !== undefined) {
    const bytes = typeof options.stdin === "string"
      ? new TextEncoder().encode(options.stdin)
      : options.stdin;
    await writer.write(bytes).catch(() => {});
  }
  await writer.close().catch(() => {});
  const out = await child.output();
  return {
    code: out.code,
    stdout: out.stdout,
    stderr: new TextDecoder().decode(out.stderr),
    text: new TextDecoder().decode(out.stdout),
  };
}

/**
 * Runs a shell pipeline (bash -o pipefail) where `denoise` is a function that runs the CLI, so
 * tests can exercise real pipes: `denoise generate ... | denoise meta read`.
 */
export async function runPipeline(
  script: string,
  options: Omit<RunCliOptions, "stdin"> = {},
): Promise<CliResult> {
  const prelude = `set -o pipefail\ndenoise() { "${Deno.execPath()}" run --allow-all --no-lock ` +
    `"${MAIN}" "$@"; }\n`;
  const command = new Deno.Command("bash", {
    args: ["-c", prelude + script],
    cwd: options.cwd ?? REPO_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const out = await command.output();
  return {
    code: out.code,
    stdout: out.stdout,
    stderr: new TextDecoder().decode(out.stderr),
    text: new TextDecoder().decode(out.stdout),
  };
}

/** Lists the files in a folder (names only), or [] when it does not exist. */
export function listDir(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}
