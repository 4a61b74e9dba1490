/**
 * The CLIP BPE vocabulary shipped with denoise (lib/tokenizer/clip_vocab/, MIT, from OpenAI
 * CLIP), so a bare single-file checkpoint runs offline with no tokenizer folder: SD 1.x, 2.x
 * and both SDXL text encoders use this same vocabulary and differ only in their pad token.
 * Only merges.txt is shipped; vocab.json follows from it exactly as OpenAI's simple_tokenizer
 * and Hugging Face's files build it: the 256 byte symbols, the same with `</w>`, one entry per
 * merge, then `<|startoftext|>` and `<|endoftext|>` (49,408 entries).
 *
 * @module
 */
import { existsSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { byteTable } from "./clip_tokenizer.ts";

const MERGES_URL = new URL("./clip_vocab/merges.txt", import.meta.url);

/** The shipped merges.txt, as text. */
export async function builtinClipMerges(): Promise<string> {
  return await Deno.readTextFile(MERGES_URL);
}

/**
 * vocab.json for a CLIP merges.txt: token -> id.
 *
 * @example
 * ```ts
 * import { clipVocabFromMerges } from "./builtin_vocab.ts";
 * const vocab = clipVocabFromMerges("#version: 0.2\ni n\n");
 * console.assert(vocab["in"] === 512 && vocab["<|endoftext|>"] === 514);
 * ```
 */
export function clipVocabFromMerges(merges: string): Record<string, number> {
  // bytes_to_unicode's own order: the printable bytes first (as themselves), then the others
  // (written as U+0100 onwards), which is the code point order of the characters.
  const symbols = [...byteTable()].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const tokens = [...symbols, ...symbols.map((s) => `${s}</w>`)];
  for (const line of merges.split("\n").slice(1)) {
    if (line.trim() === "") continue;
    const parts = line.split(" ");
    if (parts.length !== 2) throw new SyntaxError(`Cannot read the merge "${line}"`);
    tokens.push(parts[0]! + parts[1]!);
  }
  tokens.push("<|startoftext|>", "<|endoftext|>");
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  return vocab;
}

/**
 * A folder holding the shipped vocabulary as vocab.json and merges.txt (written once into
 * `<cacheDir>/tokenizer-builtin/`), usable wherever a CLIP tokenizer folder is asked for.
 */
export async function builtinClipTokenizerDir(cacheDir: string): Promise<string> {
  const dir = join(cacheDir, "tokenizer-builtin");
  if (existsSync(join(dir, "vocab.json")) && existsSync(join(dir, "merges.txt"))) return dir;
  const merges = await builtinClipMerges();
  const vocab = JSON.stringify(clipVocabFromMerges(merges));
  await fsp.mkdir(dir, { recursive: true });
  // Written under temporary names and renamed, so a concurrent run never sees half a file.
  for (const [name, text] of [["merges.txt", merges], ["vocab.json", vocab]] as const) {
    const tmp = join(dir, `.${name}.${crypto.randomUUID()}.tmp`);
    await fsp.writeFile(tmp, text);
    await fsp.rename(tmp, join(dir, name));
  }
  return dir;
}
