/**
 * CLIP byte-level BPE tokenizer, id-for-id equal to Hugging Face transformers'
 * `CLIPTokenizer` (slow) with ftfy installed: transformers 4.30.2
 * src/transformers/models/clip/tokenization_clip.py (`bytes_to_unicode`, `whitespace_clean`,
 * `bpe`, `_tokenize`, `convert_tokens_to_string`) and tokenization_utils.py (`tokenize`: added
 * tokens split the text before anything else). Written from reading that code, not copied.
 *
 * @module
 */
import { join } from "node:path";
import { InputError, ModelNotFoundError } from "../errors.ts";
import { fixText } from "./fix_text.ts";
import { PY_SPACE, pyStrip, whitespaceClean } from "./python_re.ts";

/** Options for {@linkcode ClipTokenizer.fromDirectory} and the constructor. */
export interface ClipTokenizerOptions {
  /**
   * Also treat the pad token as unsplittable text, as transformers' `from_pretrained` does
   * (`sanitize_special_tokens`): with SD 2.x / SDXL's second tokenizer (pad "!") every "!" then
   * becomes its own token, id 0 (huggingface/diffusers#4153). Off by default, which matches
   * OpenAI's and open_clip's tokenizers, AUTOMATIC1111, and a CLIPTokenizer built directly.
   */
  splitOnPadToken?: boolean;
}

/** The contents of a Diffusers `tokenizer/` folder, already parsed. */
export interface ClipTokenizerFiles {
  /** vocab.json: token -> id. */
  vocab: Record<string, number>;
  /** merges.txt as text (first line is a "#version" header). */
  merges: string;
  /** tokenizer_config.json, if present. */
  tokenizerConfig?: Record<string, unknown>;
  /** special_tokens_map.json, if present; its entries override tokenizer_config's. */
  specialTokensMap?: Record<string, unknown>;
  /** added_tokens.json, if present: token -> id. */
  addedTokens?: Record<string, number>;
}

/**
 * GPT-2 / CLIP byte <-> printable character table (tokenization_clip.py `bytes_to_unicode`):
 * entry `b` is the character byte `b` is written as in vocab.json and merges.txt.
 *
 * @example
 * ```ts
 * import { byteTable } from "./clip_tokenizer.ts";
 * console.assert(byteTable()[0x61] === "a" && byteTable()[0x20] === "\u0120");
 * ```
 */
export function byteTable(): string[] {
  const table = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
      (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
}

const BYTE_TO_CHAR = byteTable();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

// The CLIP pre-tokenizer pattern. The text is lower-cased first; what the `regex` module's
// IGNORECASE still changes is spelled out: "'" + U+017F (long s, folds to "s") matches `'s`, and
// U+0345 (folds to a letter, but is none) matches no branch and is dropped. `\s` is Python's.
const CLIP_PATTERN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'[s\u017f]|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|` +
    `[^${PY_SPACE}\\p{L}\\p{N}\u0345]+`,
  "gu",
);

const utf8 = new TextEncoder();
const DEFAULT_BOS = "<|startoftext|>";
const DEFAULT_EOS = "<|endoftext|>";

function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value !== null && typeof value === "object" && "content" in value) {
    const content = (value as { content: unknown }).content;
    if (typeof content === "string") return content;
  }
  return undefined;
}

/**
 * A CLIP BPE tokenizer as used by Stable Diffusion 1.x/2.x/XL.
 *
 * @example
 * ```ts
 * import { ClipTokenizer } from "./clip_tokenizer.ts";
 * const tok = new ClipTokenizer({
 *   vocab: { "a</w>": 0, "c": 1, "a": 2, "t</w>": 3, "ca": 4, "cat</w>": 5, "<|endoftext|>": 6 },
 *   merges: "#version: 0.2\nc a\nca t</w>",
 * });
 * console.assert(tok.encode("A cat").join() === "0,5");
 * ```
 */
export class ClipTokenizer {
  /** Id of `<|startoftext|>` (49406 in the real vocabulary). */
  readonly bosId: number;
  /** Id of `<|endoftext|>` (49407). */
  readonly eosId: number;
  /** Padding id: 49407 (EOS) for SD 1.x, 0 ("!") for SD 2.x and SDXL's second tokenizer. */
  readonly padId: number;
  /** Id used for tokens missing from the vocabulary. */
  readonly unkId: number;
  /** Sequence length the text encoder expects, BOS and EOS included (77). */
  readonly modelMaxLength: number;

  #encoder: Map<string, number>;
  #decoder: Map<number, string>;
  #ranks: Map<string, number>;
  #cache = new Map<string, string[]>();
  #added = new Map<string, number[]>(); // unsplittable text -> ids it encodes to
  #addedById = new Map<number, string>();
  #groupLength = new Map<number, number>(); // first id of an added token -> ids it expands to
  #splitters: string[] = [];
  #vocabSize: number;

  /** Builds a tokenizer from already-read files; see {@linkcode ClipTokenizer.fromDirectory}. */
  constructor(files: ClipTokenizerFiles, options: ClipTokenizerOptions = {}) {
    this.#encoder = new Map(Object.entries(files.vocab));
    this.#decoder = new Map();
    for (const [token, id] of this.#encoder) this.#decoder.set(id, token);
    // tokenization_clip.py keeps at most 49152 - 256 - 2 merges after the header line.
    const lines = files.merges.trim().split("\n").slice(1, 49152 - 256 - 2 + 1);
    this.#ranks = new Map();
    lines.forEach((line, rank) => {
      const parts = line.split(" ");
      if (parts.length !== 2) {
        throw new InputError(
          `Cannot read merges.txt: line ${rank + 2} is "${line}", expected two symbols`,
        );
      }
      const key = `${parts[0]} ${parts[1]}`;
      if (!this.#ranks.has(key)) this.#ranks.set(key, rank);
    });
    // New ids go after the largest id in use (vocab.json need not be dense).
    this.#vocabSize = 0;
    for (const id of this.#decoder.keys()) this.#vocabSize = Math.max(this.#vocabSize, id + 1);

    // special_tokens_map.json overrides tokenizer_config.json, which overrides CLIPTokenizer's
    // defaults (tokenization_utils_base.py _from_pretrained).
    const config = files.tokenizerConfig ?? {};
    const map = files.specialTokensMap ?? {};
    const special = (key: string, fallback: string): string =>
      tokenContent(map[key]) ?? tokenContent(config[key]) ?? fallback;
    const unk = special("unk_token", DEFAULT_EOS);
    const unkId = this.#encoder.get(unk);
    if (unkId === undefined) {
      throw new InputError(
        `Cannot build CLIP tokenizer: unk_token "${unk}" is not in vocab.json; use the vocab.json that came with the model`,
      );
    }
    this.unkId = unkId;
    const idOf = (token: string) => this.#encoder.get(token) ?? unkId;
    const bos = special("bos_token", DEFAULT_BOS);
    const eos = special("eos_token", DEFAULT_EOS);
    const pad = special("pad_token", DEFAULT_EOS);
    this.bosId = idOf(bos);
    this.eosId = idOf(eos);
    this.padId = idOf(pad);
    const maxLength = config["model_max_length"];
    this.modelMaxLength = typeof maxLength === "number" && maxLength > 0 && maxLength < 1e6
      ? maxLength
      : 77;

    // bpe() starts with these cached as themselves, so the pattern's special-token branch and
    // an unsplit special token both map straight to their ids.
    for (const t of [DEFAULT_BOS, DEFAULT_EOS]) this.#cache.set(t, [t]);
    // A CLIPTokenizer built directly does not split on its special tokens: "<|endoftext|>" in
    // the text reaches ftfy (where its "<" turns HTML unescaping off) and the pattern above.
    if (options.splitOnPadToken) this.#added.set(pad, [idOf(pad)]);
    for (const [token, id] of Object.entries(files.addedTokens ?? {})) {
      if (!this.#encoder.has(token)) {
        this.#added.set(token, [id]);
        this.#addedById.set(id, token);
        this.#groupLength.set(id, 1);
        this.#vocabSize = Math.max(this.#vocabSize, id + 1);
      }
    }
    this.#rebuildSplitters();
  }

  /**
   * Reads vocab.json, merges.txt and, if present, tokenizer_config.json,
   * special_tokens_map.json and added_tokens.json from a Diffusers `tokenizer/` folder.
   */
  static async fromDirectory(
    path: string,
    options: ClipTokenizerOptions = {},
  ): Promise<ClipTokenizer> {
    const read = async (name: string, required: boolean): Promise<string | undefined> => {
      try {
        return await Deno.readTextFile(join(path, name));
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
        if (!required) return undefined;
        throw new ModelNotFoundError(
          `Cannot load CLIP tokenizer from "${path}": ${name} is missing; point at a Diffusers tokenizer/ folder`,
          { cause: err },
        );
      }
    };
    const json = (name: string, text: string | undefined) => {
      if (text === undefined) return undefined;
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new InputError(`Cannot load CLIP tokenizer: "${join(path, name)}" is not JSON`, {
          cause: err,
        });
      }
    };
    const [vocab, merges, config, map, added] = await Promise.all([
      read("vocab.json", true),
      read("merges.txt", true),
      read("tokenizer_config.json", false),
      read("special_tokens_map.json", false),
      read("added_tokens.json", false),
    ]);
    const files: ClipTokenizerFiles = {
      vocab: json("vocab.json", vocab),
      merges: merges ?? "",
    };
    const parsedConfig = json("tokenizer_config.json", config);
    if (parsedConfig !== undefined) files.tokenizerConfig = parsedConfig;
    const parsedMap = json("special_tokens_map.json", map);
    if (parsedMap !== undefined) files.specialTokensMap = parsedMap;
    const parsedAdded = json("added_tokens.json", added);
    if (parsedAdded !== undefined) files.addedTokens = parsedAdded;
    return new ClipTokenizer(files, options);
  }

  /** Number of ids, added tokens included (49408 for the stock vocabulary). */
  get vocabSize(): number {
    return this.#vocabSize;
  }

  /** The id of a vocabulary or added token, or undefined. */
  tokenToId(token: string): number | undefined {
    const added = this.#added.get(token);
    if (added !== undefined && added.length === 1) return added[0];
    return this.#encoder.get(token);
  }

  /** The token string of an id (vocabulary entries carry their `</w>` suffix). */
  idToToken(id: number): string | undefined {
    return this.#addedById.get(id) ?? this.#decoder.get(id);
  }

  /**
   * Adds a textual-inversion token whose embedding has `vectors` rows. The ids are appended
   * after the vocabulary; a multi-vector embedding gets `name`, `name_1`, ... `name_{N-1}` like
   * Diffusers' `load_textual_inversion`, and {@linkcode encode} expands `name` to all N ids.
   * The name is matched case-sensitively anywhere in the raw text, as transformers does for
   * added tokens. Returns the new ids.
   */
  addTokens(name: string, vectors = 1): number[] {
    if (name.length === 0 || pyStrip(name) !== name) {
      throw new RangeError(
        `Cannot add token "${name}": it is empty or has surrounding spaces; use the embedding's name`,
      );
    }
    if (!Number.isInteger(vectors) || vectors < 1) {
      throw new RangeError(
        `Cannot add token "${name}": vectors must be a positive integer, got ${vectors}`,
      );
    }
    const names = Array.from({ length: vectors }, (_, i) => i === 0 ? name : `${name}_${i}`);
    for (const n of names) {
      if (this.#encoder.has(n) || this.#added.has(n)) {
        throw new RangeError(
          `Cannot add token "${n}": it is already in the tokenizer; rename the embedding`,
        );
      }
    }
    const ids = names.map((n) => {
      const id = this.#vocabSize++;
      this.#addedById.set(id, n);
      return id;
    });
    this.#added.set(name, ids);
    this.#groupLength.set(ids[0] as number, ids.length);
    names.slice(1).forEach((n, i) => this.#added.set(n, [ids[i + 1] as number]));
    this.#rebuildSplitters();
    return ids;
  }

  /** The added (textual-inversion) token name an id belongs to, if any. */
  addedTokenOf(id: number): string | undefined {
    return this.#addedById.get(id);
  }

  /**
   * For the first id of a token added with {@linkcode addTokens}, the number of ids `name`
   * expands to (its embedding's vectors); undefined for any other id.
   */
  addedTokenLength(id: number): number | undefined {
    return this.#groupLength.get(id);
  }

  /**
   * Token ids of `text`, without BOS/EOS and without truncation. With `addedTokens: false`,
   * textual-inversion names are tokenised as ordinary text (how A1111 finds them).
   */
  encode(text: string, options: { addedTokens?: boolean } = {}): number[] {
    const ids: number[] = [];
    const pieces: Array<[string, boolean]> = options.addedTokens === false
      ? [[text, false]]
      : this.#splitAdded(text);
    for (const [piece, unsplit] of pieces) {
      if (unsplit) {
        ids.push(...(this.#added.get(piece) ?? []));
        continue;
      }
      const clean = whitespaceClean(fixText(piece)).toLowerCase();
      for (const match of clean.matchAll(CLIP_PATTERN)) {
        for (const token of this.#bpe(match[0])) ids.push(this.#encoder.get(token) ?? this.unkId);
      }
    }
    return ids;
  }

  /** BPE token strings of `text` (with `</w>`), as transformers' `tokenize()` returns them. */
  tokenize(text: string): string[] {
    return this.encode(text).map((id) => this.idToToken(id) ?? "");
  }

  /**
   * `[BOS, ...ids, EOS]` truncated to `modelMaxLength` (EOS kept last) and padded with
   * {@linkcode padId}: what `tokenizer(text, padding="max_length", truncation=True)` returns.
   */
  encodePadded(text: string): number[] {
    const max = this.modelMaxLength;
    const ids = [this.bosId, ...this.encode(text).slice(0, max - 2), this.eosId];
    while (ids.length < max) ids.push(this.padId);
    return ids;
  }

  /**
   * Text of `ids`, as transformers' `decode(ids, skip_special_tokens, clean_up_tokenization_spaces
   * = True)` gives it.
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const specials = new Set([this.bosId, this.eosId, this.padId, this.unkId]);
    const parts: string[] = [];
    let current = "";
    const flush = () => {
      if (current === "") return;
      const bytes = Array.from(current, (c) => CHAR_TO_BYTE.get(c) ?? 0x3f);
      const text = new TextDecoder("utf-8").decode(new Uint8Array(bytes));
      parts.push(pyStrip(text.replaceAll("</w>", " ")));
      current = "";
    };
    for (const id of ids) {
      if (options.skipSpecialTokens && specials.has(id)) continue;
      const added = this.#addedById.get(id);
      if (added !== undefined) {
        flush();
        parts.push(added);
      } else {
        current += this.#decoder.get(id) ?? "";
      }
    }
    flush();
    return cleanUpTokenization(parts.join(" "));
  }

  #rebuildSplitters(): void {
    this.#splitters = [...this.#added.keys()].sort((a, b) => b.length - a.length);
  }

  // Leftmost-longest split on added tokens (transformers' Trie.split), before any cleaning.
  #splitAdded(text: string): Array<[string, boolean]> {
    const out: Array<[string, boolean]> = [];
    let start = 0;
    let i = 0;
    outer: while (i < text.length) {
      for (const token of this.#splitters) {
        if (text.startsWith(token, i)) {
          if (i > start) out.push([text.slice(start, i), false]);
          out.push([token, true]);
          i += token.length;
          start = i;
          continue outer;
        }
      }
      i++;
    }
    if (start < text.length) out.push([text.slice(start), false]);
    return out;
  }

  #bpe(token: string): string[] {
    let bytes = "";
    for (const b of utf8.encode(token)) bytes += BYTE_TO_CHAR[b];
    const cached = this.#cache.get(bytes);
    if (cached !== undefined) return cached;
    const chars = Array.from(bytes);
    let word = chars.slice(0, -1);
    word.push(`${chars[chars.length - 1] ?? ""}</w>`);
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.#ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best] as string;
      const second = word[best + 1] as string;
      // Merge every non-overlapping occurrence of the pair, left to right, as bpe() does.
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i] as string);
          i += 1;
        }
      }
      word = merged;
    }
    this.#cache.set(bytes, word);
    return word;
  }
}

// transformers' PreTrainedTokenizerBase.clean_up_tokenization.
function cleanUpTokenization(text: string): string {
  return text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!")
    .replaceAll(" ,", ",").replaceAll(" ' ", "'").replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m").replaceAll(" 's", "'s").replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}
