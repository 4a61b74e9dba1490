/**
 * Running a single-file checkpoint directly: it is converted once into a Diffusers folder in the
 * cache, `<cacheDir>/converted/<key>/`, and that folder is reused while the file is unchanged.
 * The key is the SHA-256 of the safetensors header plus the file size (the header lists every
 * tensor's name, dtype, shape and offsets, so any re-save changes it), or of the whole file for
 * .ckpt, together with the LDM YAML found beside it and the converter revision.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
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

async function fileKey(path: string, yaml: string | undefined): Promise<string> {
  const hash = createHash("sha256");
  hash.update(`denoise-converted-${CONVERTER_REVISION}\0`);
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    hash.update(`${size}\0`);
    const head = new Uint8Array(8);
    const n = await file.read(head);
    const headerLength = n === 8 ? Number(new DataView(head.buffer).getBigUint64(0, true)) : -1;
    const isSafetensors = headerLength > 1 && headerLength + 8 <= size && headerLength < 1e8;
    hash.update(head.subarray(0, n ?? 0));
    // safetensors: the JSON header; anything else: the whole file.
    let left = isSafetensors ? headerLength : Infinity;
    const buf = new Uint8Array(1 << 20);
    while (left > 0) {
      const got = await file.read(buf.subarray(0, Math.min(buf.length, left)));
      if (got === null) break;
      hash.update(buf.subarray(0, got));
      left -= got;
    }
  } finally {
    file.close();
  }
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
  const key = await fileKey(path, yaml);
  const dir = join(options.cacheDir, "converted", key);
  if (existsSync(join(dir, "model_index.json"))) return dir;
  // Resolved once the file is known to be a checkpoint (convertCheckpoint asks after detecting).
  const tokenizerDir = () =>
    resolveTokenizerDir(path, { tokenizerDir: options.tokenizerDir, cacheDir: options.cacheDir });
  options.onMessage?.(`converting ${file} into ${dir}`);
  try {
    await convertCheckpoint(path, dir, {
      tokenizerDir,
      // The graphs compute in float32; fp32 files also load where fp16 ones are cast in place.
      dtype: "fp32",
      overwrite: true,
      ...(yaml !== undefined ? { originalConfig: yaml } : {}),
    });
  } catch (error) {
    // Another process may have finished the same conversion first.
    if (existsSync(join(dir, "model_index.json"))) return dir;
    throw error;
  }
  return dir;
}
