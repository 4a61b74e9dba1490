/**
 * Running a single-file checkpoint directly: it is converted once into a Diffusers folder in the
 * cache, `<cacheDir>/converted/<key>/`, and that folder is reused while the file is unchanged.
 * The key is the SHA-256 of the whole file (hashed once and remembered by path, size, times and
 * inode, lib/onnx/content_identity.ts), together with the LDM YAML found beside it and the
 * converter revision. (A key from the safetensors header alone is not enough: two fine-tunes of
 * one architecture have the same header, and one would silently run the other's weights.) One
 * process converts while others wait for it (a build lock).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { acquireBuildLock } from "../onnx/build_lock.ts";
import { contentIdentity } from "../onnx/content_identity.ts";
import { convertCheckpoint, findOriginalConfig } from "./to_diffusers.ts";
import { resolveTokenizerDir } from "./tokenizer_files.ts";

/** Bumped when conversion output changes, so stale cached folders are not reused. */
const CONVERTER_REVISION = "2";

/** Options of {@linkcode convertedModelDir}. */
export interface ConvertedModelOptions {
  /** The denoise cache root. */
  cacheDir: string;
  /**
   * Folder with vocab.json and merges.txt (`DENOISE_TOKENIZER`); default: tokenizer/ beside the
   * file, then the cache, then the vocabulary shipped with denoise.
   */
  tokenizerDir?: string;
  /** Called with a message when a conversion actually runs. */
  onMessage?: (message: string) => void;
}

async function fileKey(path: string, yaml: string | undefined, cacheDir: string): Promise<string> {
  const hash = createHash("sha256");
  hash.update(`denoise-converted-${CONVERTER_REVISION}\0`);
  const id = await contentIdentity(path, { indexDir: cacheDir });
  hash.update(`${id.size}\0${id.sha256}`);
  if (yaml !== undefined) hash.update(`\0yaml\0${await Deno.readTextFile(yaml)}`);
  return hash.digest("hex");
}

/**
 * The Diffusers folder for a single-file checkpoint, converting it into the cache on first use.
 *
 * @example
 * ```ts ignore
 * import { convertedModelDir } from "./cached_model.ts";
 * const dir = await convertedModelDir("dreamshaper_8.safetensors", { cacheDir: "/tmp/denoise" });
 * ```
 */
export async function convertedModelDir(
  file: string,
  options: ConvertedModelOptions,
): Promise<string> {
  const path = resolve(file);
  const yaml = findOriginalConfig(path);
  const key = await fileKey(path, yaml, options.cacheDir);
  const dir = join(options.cacheDir, "converted", key);
  if (existsSync(join(dir, "model_index.json"))) return dir;
  // One process converts; others wait for it and then use its folder.
  await Deno.mkdir(join(options.cacheDir, "converted"), { recursive: true });
  const lock = await acquireBuildLock(`${dir}.lock`, {
    onWait: () => options.onMessage?.(`waiting for another process converting ${file}`),
  });
  try {
    if (existsSync(join(dir, "model_index.json"))) return dir;
    // Resolved once the file is known to be a checkpoint (convertCheckpoint asks after
    // detecting).
    const tokenizerDir = () =>
      resolveTokenizerDir(path, { tokenizerDir: options.tokenizerDir, cacheDir: options.cacheDir });
    options.onMessage?.(`converting ${file} into ${dir}`);
    await convertCheckpoint(path, dir, {
      tokenizerDir,
      // The graphs compute in float32; fp32 files also load where fp16 ones are cast in place.
      dtype: "fp32",
      overwrite: true,
      ...(yaml !== undefined ? { originalConfig: yaml } : {}),
    });
    return dir;
  } finally {
    await lock.release();
  }
}
