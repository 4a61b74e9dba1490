/**
 * The process around the CLI when it runs through `deno task denoise ...` from a checkout: the
 * folder relative paths mean, and a task process that is gone. Only main.ts calls these, once,
 * before any command runs.
 *
 * @module
 */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** The checkout this file belongs to, or undefined in a compiled binary. */
function checkoutDir(): string | undefined {
  try {
    // commands/process.ts -> the checkout's root.
    return dirname(dirname(fileURLToPath(import.meta.url)));
  } catch {
    return undefined;
  }
}

/**
 * True when `deno task denoise ...` started this process: it runs main.ts in the checkout's
 * folder and puts the caller's folder in `INIT_CWD`. An installed binary, or a `denoise` started
 * by some npm script (which also sets INIT_CWD) in another folder, is not.
 */
export function startedByDenoTask(): boolean {
  const init = Deno.env.get("INIT_CWD");
  const checkout = checkoutDir();
  return init !== undefined && init !== "" && checkout !== undefined && Deno.cwd() === checkout;
}

/**
 * Relative paths on the command line mean the caller's folder: under `deno task`, go back to it
 * (`INIT_CWD`). Does nothing otherwise.
 */
export function restoreCallerDirectory(): void {
  if (!startedByDenoTask()) return;
  try {
    Deno.chdir(Deno.env.get("INIT_CWD")!);
  } catch {
    // The caller's folder is gone or unreadable: stay, paths then mean the checkout.
  }
}

/**
 * A `kill -9` of the `deno task` process leaves its child (this process) running with nobody to
 * read its output; it wrote an image 25 s later. Twice a second, check that the parent still
 * exists (a SIGCONT, which a running process ignores; Deno reads /proc only with --allow-all)
 * and stop with exit 130 when it is gone. Call it only under `deno task`.
 */
export function exitWithParent(): void {
  const parent = Deno.ppid;
  if (parent <= 1) return;
  const timer = setInterval(() => {
    try {
      Deno.kill(parent, "SIGCONT");
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) return;
      try {
        Deno.stderr.writeSync(
          new TextEncoder().encode("denoise: the deno task process is gone; stopping\n"),
        );
      } catch {
        // stderr went with it
      }
      Deno.exit(130);
    }
  }, 500);
  Deno.unrefTimer(timer);
}
