/**
 * Resumable, verified downloads. A file is fetched into `<dest>.part`, resumed with an HTTP Range
 * request after a dropped connection, hashed with SHA-256 while it streams, checked against the
 * expected size and hash, and only then renamed to `<dest>`. A corrupt or short download never
 * appears under the final name.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { dirname } from "node:path";
import { InputError, ModelNotFoundError, NetworkError, toIoError } from "../errors.ts";

/** Options for {@linkcode downloadFile}. */
export interface DownloadOptions {
  /** Expected size in bytes, when known. */
  size?: number | undefined;
  /** Expected SHA-256 (lowercase hex), or null/undefined to skip the check. */
  sha256?: string | null | undefined;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
  /** Attempts after the first when the connection drops (default 3). */
  retries?: number;
  /** Called with bytes done and the total (0 when unknown). */
  onProgress?: (done: number, total: number) => void;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
  /** Cancels the download. */
  signal?: AbortSignal;
}

/** What {@linkcode downloadFile} did. */
export interface DownloadResult {
  /** Bytes in the final file. */
  bytes: number;
  /** SHA-256 of the final file. */
  sha256: string;
  /** Bytes that were already present in a `.part` file and not fetched again. */
  resumedFrom: number;
}

async function hashFilePrefix(path: string, hash: Hash): Promise<number> {
  let total = 0;
  const file = await Deno.open(path, { read: true });
  try {
    for await (const chunk of file.readable) {
      hash.update(chunk);
      total += chunk.length;
    }
  } catch (error) {
    file.close();
    throw error;
  }
  return total;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * Downloads `url` to `dest`, resuming and verifying as described in the module doc.
 * Throws {@linkcode NetworkError} when the server fails after all retries,
 * {@linkcode ModelNotFoundError} for 404, and {@linkcode InputError} when the bytes do not match
 * the expected size or hash (the partial file is removed then).
 */
export async function downloadFile(
  url: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const doFetch = options.fetch ?? fetch;
  const part = `${dest}.part`;
  const retries = options.retries ?? 3;
  try {
    await Deno.mkdir(dirname(dest), { recursive: true });
  } catch (error) {
    throw toIoError(error, `Cannot create the folder "${dirname(dest)}"`);
  }
  let resumedFrom = -1;
  let lastError: unknown;

  for (let attempt = 0; attempt <= retries; attempt++) {
    let offset = await fileSize(part);
    if (options.size !== undefined && offset > options.size) {
      await Deno.truncate(part, 0);
      offset = 0;
    }
    const hash = createHash("sha256");
    if (offset > 0) offset = await hashFilePrefix(part, hash);
    if (resumedFrom < 0) resumedFrom = offset;

    if (options.size !== undefined && offset === options.size) {
      return await finish(part, dest, hash, offset, options, resumedFrom);
    }

    const headers: Record<string, string> = { ...options.headers };
    if (offset > 0) headers["Range"] = `bytes=${offset}-`;
    let response: Response;
    try {
      response = await doFetch(url, {
        headers,
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      lastError = error;
      continue;
    }
    if (response.status === 404) {
      await response.body?.cancel();
      throw new ModelNotFoundError(`Cannot download ${url}: not found (HTTP 404)`, {
        hint: "check the alias in models.lock.json and the revision",
      });
    }
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw new NetworkError(`Cannot download ${url}: access denied (HTTP ${response.status})`, {
        hint: "set HF_TOKEN to a token that may read this repository",
      });
    }
    if (response.status === 416 && offset > 0) {
      // The server says the range starts past the end: the part file is complete.
      await response.body?.cancel();
      return await finish(part, dest, hash, offset, options, resumedFrom);
    }
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      lastError = new Error(`HTTP ${response.status} ${response.statusText}`);
      if (response.status >= 500) continue;
      throw new NetworkError(`Cannot download ${url}: HTTP ${response.status}`);
    }
    let append = offset > 0 && response.status === 206;
    if (append && !contentRangeStartsAt(response.headers.get("content-range"), offset)) {
      append = false;
    }
    let done = offset;
    let hashNow = hash;
    if (!append) {
      // The server ignored the range: start over.
      done = 0;
      hashNow = createHash("sha256");
    }
    const total = options.size ?? (done + Number(response.headers.get("content-length") ?? 0));
    const file = await Deno.open(part, {
      write: true,
      create: true,
      append,
      truncate: !append,
    });
    try {
      for await (const chunk of response.body) {
        let written = 0;
        while (written < chunk.length) written += await file.write(chunk.subarray(written));
        hashNow.update(chunk);
        done += chunk.length;
        options.onProgress?.(done, total);
        if (options.size !== undefined && done > options.size) {
          throw new InputError(
            `Cannot download ${url}: the server sent more than the expected ${options.size} bytes`,
          );
        }
      }
    } catch (error) {
      file.close();
      if (error instanceof InputError) {
        await Deno.remove(part).catch(() => {});
        throw error;
      }
      lastError = error;
      continue;
    }
    file.close();
    return await finish(part, dest, hashNow, done, options, resumedFrom);
  }
  throw new NetworkError(
    `Cannot download ${url}: ${
      lastError instanceof Error ? lastError.message : String(lastError)
    } (after ${retries + 1} attempts)`,
    { hint: "run the same command again to resume where it stopped", cause: lastError },
  );
}

function contentRangeStartsAt(header: string | null, offset: number): boolean {
  if (header === null) return false;
  const match = /^bytes (\d+)-/.exec(header.trim());
  return match !== null && Number(match[1]) === offset;
}

async function finish(
  part: string,
  dest: string,
  hash: Hash,
  bytes: number,
  options: DownloadOptions,
  resumedFrom: number,
): Promise<DownloadResult> {
  const digest = hash.digest("hex");
  if (options.size !== undefined && bytes !== options.size) {
    // Short but complete as far as the server is concerned: keep the part for a later resume.
    throw new NetworkError(
      `Download of ${dest} stopped at ${bytes} of ${options.size} bytes`,
      { hint: "run the same command again to resume" },
    );
  }
  if (options.sha256 && digest !== options.sha256) {
    await Deno.remove(part).catch(() => {});
    throw new InputError(
      `Downloaded file ${dest} is corrupt: SHA-256 ${digest}, expected ${options.sha256}`,
      { hint: "the partial file was deleted; run the command again to download it afresh" },
    );
  }
  await Deno.rename(part, dest);
  return { bytes, sha256: digest, resumedFrom: Math.max(0, resumedFrom) };
}

/** SHA-256 of a whole file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await hashFilePrefix(path, hash);
  return hash.digest("hex");
}
