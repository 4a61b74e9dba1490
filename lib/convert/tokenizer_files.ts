/**
 * The CLIP tokenizer files a converted model needs. Single-file checkpoints hold no vocabulary,
 * so it comes from a folder the user names, a `tokenizer/` folder next to the checkpoint, any
 * model already in the denoise cache, or else the vocabulary shipped with denoise
 * (lib/tokenizer/clip_vocab): SD 1.x, 2.x and SDXL all use OpenAI's CLIP BPE
 * vocabulary; OpenCLIP towers (SD 2.x, SDXL's second encoder) pad with "!" instead of
 * `<|endoftext|>`, as Diffusers' tokenizer_2 folders do.
 *
 * @module
 */
import { existsSync, readdirSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { builtinClipTokenizerDir } from "../tokenizer/builtin_vocab.ts";

/**
 * The folder with vocab.json and merges.txt inside `dir`: `dir` itself, or its `tokenizer/`
 * (a Diffusers model folder). Undefined when neither has them.
 */
export function tokenizerFilesIn(dir: string): string | undefined {
  for (const d of [dir, join(dir, "tokenizer")]) {
    if (existsSync(join(d, "vocab.json")) && existsSync(join(d, "merges.txt"))) return resolve(d);
  }
  return undefined;
}

/**
 * A CLIP tokenizer folder from the denoise cache: the `tokenizer/` of any pulled model
 * (`<cacheDir>/models/<alias>/<revision>/tokenizer`) or `<cacheDir>/tokenizer`.
 */
export function findCachedTokenizer(cacheDir: string): string | undefined {
  const direct = tokenizerFilesIn(join(cacheDir, "tokenizer"));
  if (direct !== undefined) return direct;
  const models = join(cacheDir, "models");
  if (!existsSync(models)) return undefined;
  for (const alias of readdirSync(models).sort()) {
    const aliasDir = join(models, alias);
    let revisions: string[];
    try {
      revisions = readdirSync(aliasDir).sort();
    } catch {
      continue;
    }
    for (const rev of revisions) {
      const found = tokenizerFilesIn(join(aliasDir, rev));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

const SPECIAL = (content: string) => ({
  content,
  lstrip: false,
  normalized: true,
  rstrip: false,
  single_word: false,
});

function sortedJson(value: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) sorted[k] = value[k];
  return JSON.stringify(sorted, null, 2) + "\n";
}

/**
 * Writes a Diffusers `tokenizer/` folder: vocab.json and merges.txt copied from `source`, and
 * the configs of CLIPTokenizer with `pad` as pad token ("<|endoftext|>" for OpenAI CLIP, "!"
 * for OpenCLIP).
 */
export async function writeTokenizer(
  source: string,
  outDir: string,
  pad: "<|endoftext|>" | "!",
): Promise<void> {
  await fsp.mkdir(outDir, { recursive: true });
  await fsp.copyFile(join(source, "vocab.json"), join(outDir, "vocab.json"));
  await fsp.copyFile(join(source, "merges.txt"), join(outDir, "merges.txt"));
  const eos = "<|endoftext|>";
  const map = {
    bos_token: SPECIAL("<|startoftext|>"),
    eos_token: SPECIAL(eos),
    pad_token: pad,
    unk_token: SPECIAL(eos),
  };
  const config = {
    ...map,
    clean_up_tokenization_spaces: true,
    errors: "replace",
    model_max_length: 77,
    tokenizer_class: "CLIPTokenizer",
  };
  await fsp.writeFile(join(outDir, "special_tokens_map.json"), sortedJson(map));
  await fsp.writeFile(join(outDir, "tokenizer_config.json"), sortedJson(config));
}

/** Options of {@linkcode resolveTokenizerDir}. */
export interface ResolveTokenizerOptions {
  /** A folder the user named (`--tokenizer`, `DENOISE_TOKENIZER`); it must hold the files. */
  tokenizerDir?: string | undefined;
  /** The denoise cache root (pulled models' tokenizers; the shipped vocabulary goes there). */
  cacheDir: string;
}

/**
 * The CLIP tokenizer folder for converting `checkpoint`: the folder the user named, else a
 * `tokenizer/` beside the file, else one from the cache, else the vocabulary shipped with
 * denoise, so a bare single file converts offline.
 */
export async function resolveTokenizerDir(
  checkpoint: string,
  options: ResolveTokenizerOptions,
): Promise<string> {
  if (options.tokenizerDir !== undefined) {
    const found = tokenizerFilesIn(options.tokenizerDir);
    if (found === undefined) {
      throw new UsageError(
        `The tokenizer folder "${options.tokenizerDir}" has no vocab.json and merges.txt`,
        {
          hint: "pass the tokenizer/ folder of any SD model (SD 1.x, 2.x and SDXL share the " +
            "vocabulary), or leave it out to use the vocabulary shipped with denoise",
        },
      );
    }
    return found;
  }
  const beside = tokenizerFilesIn(join(dirname(resolve(checkpoint)), "tokenizer"));
  if (beside !== undefined) return beside;
  let cached: string | undefined;
  try {
    cached = findCachedTokenizer(options.cacheDir);
  } catch {
    cached = undefined;
  }
  return cached ?? await builtinClipTokenizerDir(options.cacheDir);
}
