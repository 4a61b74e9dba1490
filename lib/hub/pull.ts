/**
 * Pulling, verifying and locating locked models in the cache.
 *
 * @module
 */
import { join } from "node:path";
import { ModelNotFoundError, toIoError } from "../errors.ts";
import type { ProgressCallback } from "../io/progress.ts";
import { modelDir } from "./cache.ts";
import { downloadFile, sha256File } from "./download.ts";
import type { LockedModel } from "./lock.ts";

/** The default hub endpoint (overridden by HF_ENDPOINT). */
export const DEFAULT_ENDPOINT = "https://huggingface.co";

/** Options for {@linkcode pullModel}. */
export interface PullOptions {
  /** Cache root (see cache.ts). */
  root: string;
  /** Hub endpoint, e.g. from HF_ENDPOINT. */
  endpoint?: string | undefined;
  /** Hub token, e.g. from HF_TOKEN. */
  token?: string | undefined;
  /** Never touch the network (DENOISE_OFFLINE=1). */
  offline?: boolean;
  /** Progress per file. */
  onProgress?: ProgressCallback;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
  /** Retries per file after a dropped connection. */
  retries?: number;
}

/** The state of one file of a model in the cache. */
export interface FileStatus {
  path: string;
  localPath: string;
  present: boolean;
  size: number;
  /** null when the lock does not know the size. */
  expectedSize: number | null;
}

/** Where GitHub serves release assets. */
export const GITHUB_ENDPOINT = "https://github.com";

/**
 * The URL of one file at the locked revision: the Hugging Face hub's `resolve/<revision>/<path>`
 * (at `endpoint`), or a GitHub release's `releases/download/<tag>/<path>`.
 */
export function fileUrl(endpoint: string, model: LockedModel, path: string): string {
  const encoded = path.split("/").map(encodeURIComponent).join("/");
  const source = model.source;
  if (source.hub === "github") {
    return `${GITHUB_ENDPOINT}/${source.repo}/releases/download/${
      encodeURIComponent(source.tag)
    }/${encoded}`;
  }
  const base = endpoint.replace(/\/+$/, "");
  return `${base}/${source.repo}/resolve/${source.revision}/${encoded}`;
}

/** Lists each file of a model with whether it is in the cache at the right size. */
export async function modelStatus(
  root: string,
  alias: string,
  model: LockedModel,
): Promise<FileStatus[]> {
  const dir = modelDir(root, alias, model);
  return await Promise.all(model.files.map(async (file) => {
    const localPath = join(dir, file.path);
    const size = await Deno.stat(localPath).then((s) => s.size, () => -1);
    return {
      path: file.path,
      localPath,
      // A file whose size the lock does not know is present once it exists: downloads are
      // renamed into place only when complete.
      present: file.size === null ? size >= 0 : size === file.size,
      size: Math.max(0, size),
      expectedSize: file.size,
    };
  }));
}

/**
 * Downloads every missing file of a model into the cache, resuming partial files and verifying
 * sizes and hashes. Returns the model folder.
 */
export async function pullModel(
  alias: string,
  model: LockedModel,
  options: PullOptions,
): Promise<string> {
  const dir = modelDir(options.root, alias, model);
  const status = await modelStatus(options.root, alias, model);
  const missing = status.filter((s) => !s.present);
  if (missing.length === 0) return dir;
  if (options.offline) {
    throw new ModelNotFoundError(
      `Model "${alias}" is missing ${missing.length} file(s) and DENOISE_OFFLINE=1 forbids downloads`,
      { hint: `unset DENOISE_OFFLINE and run "denoise models pull ${alias}"` },
    );
  }
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (error) {
    throw toIoError(error, `Cannot create the model folder "${dir}"`, {
      hint: "models go under DENOISE_HOME (else $XDG_CACHE_HOME/denoise, else ~/.cache/denoise); " +
        "point DENOISE_HOME at a folder you can write to",
    });
  }
  const endpoint = options.endpoint ?? DEFAULT_ENDPOINT;
  const headers: Record<string, string> = {};
  // The hub token goes to the hub only.
  if (options.token && model.source.hub === "huggingface") {
    headers["Authorization"] = `Bearer ${options.token}`;
  }
  for (const file of model.files) {
    const state = status.find((s) => s.path === file.path)!;
    if (state.present) continue;
    const task = `${alias}/${file.path}`;
    await downloadFile(fileUrl(endpoint, model, file.path), state.localPath, {
      size: file.size ?? undefined,
      sha256: file.sha256,
      headers,
      ...(options.retries !== undefined ? { retries: options.retries } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
      onProgress: (done, total) => options.onProgress?.({ task, step: done, total }),
    });
  }
  return dir;
}

/** The result of checking one file's hash. */
export interface VerifyResult {
  path: string;
  ok: boolean;
  reason?: string;
}

/** Re-hashes every file of a pulled model against the lock. */
export async function verifyModel(
  root: string,
  alias: string,
  model: LockedModel,
): Promise<VerifyResult[]> {
  const status = await modelStatus(root, alias, model);
  const results: VerifyResult[] = [];
  for (const file of model.files) {
    const state = status.find((s) => s.path === file.path)!;
    if (!state.present) {
      results.push({
        path: file.path,
        ok: false,
        reason: state.size === 0 ? "missing" : `size ${state.size}, expected ${state.expectedSize}`,
      });
      continue;
    }
    if (file.sha256 === null) {
      results.push({
        path: file.path,
        ok: true,
        reason: file.size === null
          ? "unverified: the lock has no size or hash for this file"
          : "size ok; no hash in the lock",
      });
      continue;
    }
    const digest = await sha256File(state.localPath);
    results.push(
      digest === file.sha256
        ? { path: file.path, ok: true }
        : { path: file.path, ok: false, reason: `SHA-256 ${digest}, expected ${file.sha256}` },
    );
  }
  return results;
}
