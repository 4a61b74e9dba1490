/**
 * Access to the optional `../shared` folder (reference outputs, real-world fixtures) that sits
 * beside a development checkout. A user's clone has no such folder, so every test that reads it
 * must be registered with `ignore: !hasShared` and say why in its name or a log line.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const here = dirname(fromFileUrlSafe(import.meta.url));

function fromFileUrlSafe(url: string): string {
  return url.startsWith("file:") ? decodeURIComponent(new URL(url).pathname) : url;
}

/** Absolute path of the shared folder (`$DENOISE_SHARED`, else `<repo>/../shared`). */
export const SHARED_DIR: string = resolve(
  Deno.env.get("DENOISE_SHARED") ?? join(here, "..", "..", "shared"),
);

/** True when the shared folder with golden data is present. */
export const hasShared: boolean = existsSync(join(SHARED_DIR, "golden"));

if (!hasShared) {
  console.warn(
    `note: ${SHARED_DIR} is absent; tests that compare against golden reference data are skipped`,
  );
}

/** Path of a file inside the shared folder, e.g. `sharedPath("golden/randn.json")`. */
export function sharedPath(relative: string): string {
  return join(SHARED_DIR, relative);
}

/**
 * Reads and parses a JSON file from the shared folder. Python's json writes bare `Infinity`,
 * `-Infinity` and `NaN`; they become ±1e999 (which JSON.parse reads as ±Infinity) and null.
 */
export function readSharedJson<T = unknown>(relative: string): T {
  const text = Deno.readTextFileSync(sharedPath(relative))
    .replace(/([:\[,]\s*)(-?)Infinity(?=\s*[,\]}])/g, "$1$21e999")
    .replace(/([:\[,]\s*)NaN(?=\s*[,\]}])/g, "$1null");
  return JSON.parse(text) as T;
}

/** Absolute path of the repository root. */
export const REPO_ROOT: string = resolve(here, "..");
