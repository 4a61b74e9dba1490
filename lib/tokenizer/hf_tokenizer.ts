/**
 * Hugging Face tokenizers (tokenizer.json: WordPiece, BPE, Unigram with their normalizers,
 * pre-tokenizers, post-processors and decoders) through `@huggingface/tokenizers`, the pure
 * TypeScript port the transformers.js team maintains (the only importer of that package).
 *
 * A folder without tokenizer.json but with a BERT `vocab.txt` (what `BertTokenizer` saves, e.g.
 * a BLIP processor saved with `use_fast=False`) is read the way transformers turns a slow BERT
 * tokenizer into a fast one (`convert_slow_tokenizer.BertConverter`): BertNormalizer,
 * BertPreTokenizer, WordPiece with `##` continuations, `[CLS] $A [SEP]`, a WordPiece decoder;
 * every special token of tokenizer_config.json / special_tokens_map.json is an added special
 * token (what `skip_special_tokens` skips).
 *
 * @module
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelNotFoundError } from "../errors.ts";

/** Options of {@linkcode HfTokenizer.encode}. */
export interface HfEncodeOptions {
  /** Add the model's special tokens (BERT: `[CLS]` ... `[SEP]`), default true. */
  addSpecialTokens?: boolean;
}

/** Options of {@linkcode HfTokenizer.decode}. */
export interface HfDecodeOptions {
  /** Leave special tokens out (default true). */
  skipSpecialTokens?: boolean;
}

type Json = Record<string, unknown>;

const SPECIAL_KEYS = [
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
  "bos_token",
  "eos_token",
] as const;

function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (
    typeof value === "object" && value !== null && typeof (value as Json)["content"] === "string"
  ) {
    return (value as Json)["content"] as string;
  }
  return undefined;
}

/** Special tokens named in tokenizer_config.json and special_tokens_map.json, in key order. */
function specialTokens(config: Json, map: Json): { named: Map<string, string>; all: string[] } {
  const named = new Map<string, string>();
  for (const key of SPECIAL_KEYS) {
    const text = tokenText(map[key]) ?? tokenText(config[key]);
    if (text !== undefined) named.set(key, text);
  }
  const all = [...named.values()];
  const extra = map["additional_special_tokens"] ?? config["additional_special_tokens"];
  if (Array.isArray(extra)) {
    for (const t of extra) {
      const text = tokenText(t);
      if (text !== undefined) all.push(text);
    }
  }
  return { named, all: [...new Set(all)] };
}

/** The optional files of a slow BERT tokenizer folder besides vocab.txt and its config. */
export interface BertTokenizerFiles {
  /** special_tokens_map.json (its entries win over tokenizer_config.json's). */
  specialTokensMap?: Json;
  /** added_tokens.json: token -> id, for tokens past the vocabulary. */
  addedTokens?: Record<string, number>;
}

/**
 * The tokenizer.json that transformers' `BertConverter` makes from a BERT `vocab.txt` (one token
 * per line, id = line number), its tokenizer_config.json, and optionally special_tokens_map.json
 * and added_tokens.json.
 *
 * @example
 * ```ts
 * import { bertTokenizerJson } from "./hf_tokenizer.ts";
 * const json = bertTokenizerJson(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"], { do_lower_case: true });
 * console.assert((json["model"] as { type: string }).type === "WordPiece");
 * ```
 */
export function bertTokenizerJson(
  vocabLines: readonly string[],
  tokenizerConfig: Json,
  options: BertTokenizerFiles = {},
): Json {
  const specialTokensMap = options.specialTokensMap ?? {};
  const addedTokens = options.addedTokens ?? {};
  const vocab: Record<string, number> = {};
  vocabLines.forEach((t, i) => {
    if (!(t in vocab)) vocab[t] = i;
  });
  for (const [t, id] of Object.entries(addedTokens)) vocab[t] = id;
  const { named, all } = specialTokens(tokenizerConfig, specialTokensMap);
  const id = (t: string): number => {
    const v = vocab[t];
    if (v === undefined) {
      throw new RangeError(
        `Cannot build the BERT tokenizer: special token "${t}" is not in vocab.txt or ` +
          `added_tokens.json; check the tokenizer files`,
      );
    }
    return v;
  };
  const cls = named.get("cls_token") ?? "[CLS]";
  const sep = named.get("sep_token") ?? "[SEP]";
  const unk = named.get("unk_token") ?? "[UNK]";
  const lower = tokenizerConfig["do_lower_case"] ?? true;
  const stripAccents = tokenizerConfig["strip_accents"] ?? null;
  const chinese = tokenizerConfig["tokenize_chinese_chars"] ?? true;
  const special = (t: string) => ({ SpecialToken: { id: t, type_id: 0 } });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: all.map((t) => ({
      id: id(t),
      content: t,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: chinese,
      strip_accents: stripAccents,
      lowercase: lower,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [special(cls), { Sequence: { id: "A", type_id: 0 } }, special(sep)],
      pair: [
        special(cls),
        { Sequence: { id: "A", type_id: 0 } },
        special(sep),
        { Sequence: { id: "B", type_id: 1 } },
        { SpecialToken: { id: sep, type_id: 1 } },
      ],
      special_tokens: {
        [cls]: { id: cls, ids: [id(cls)], tokens: [cls] },
        [sep]: { id: sep, ids: [id(sep)], tokens: [sep] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: unk,
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

async function readJson(path: string): Promise<Json> {
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text) as Json;
  } catch (error) {
    throw new SyntaxError(
      `Cannot read "${path}": ${error instanceof Error ? error.message : String(error)}; ` +
        `the tokenizer file is not valid JSON`,
      { cause: error },
    );
  }
}

/** A Hugging Face tokenizer: text to ids and back, as transformers' fast tokenizers do. */
export class HfTokenizer {
  #tokenizer: Tokenizer;
  /** Vocabulary size including added tokens. */
  readonly vocabSize: number;

  /**
   * @param tokenizerJson A parsed tokenizer.json.
   * @param tokenizerConfig A parsed tokenizer_config.json (`clean_up_tokenization_spaces`, ...).
   */
  constructor(tokenizerJson: Json, tokenizerConfig: Json = {}) {
    this.#tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    this.vocabSize = this.#tokenizer.get_vocab(true).size;
  }

  /**
   * Loads a tokenizer folder: tokenizer.json (+ tokenizer_config.json), or else a BERT
   * vocab.txt with tokenizer_config.json, special_tokens_map.json and added_tokens.json.
   *
   * @example
   * ```ts ignore
   * const tok = await HfTokenizer.fromFolder("blip-image-captioning-base");
   * tok.encode("a picture of"); // [101, 1037, 3861, 1997, 102]
   * ```
   */
  static async fromFolder(dir: string): Promise<HfTokenizer> {
    const file = (name: string) => join(dir, name);
    const optional = async (name: string): Promise<Json> =>
      existsSync(file(name)) ? await readJson(file(name)) : {};
    const config = await optional("tokenizer_config.json");
    if (existsSync(file("tokenizer.json"))) {
      return new HfTokenizer(await readJson(file("tokenizer.json")), config);
    }
    if (existsSync(file("vocab.txt"))) {
      const cls = config["tokenizer_class"];
      if (cls !== undefined && cls !== "BertTokenizer" && cls !== "BertTokenizerFast") {
        throw new RangeError(
          `Cannot read the tokenizer in "${dir}": it has vocab.txt but no tokenizer.json, and ` +
            `tokenizer_class ${JSON.stringify(cls)} is not a BERT tokenizer; add tokenizer.json`,
        );
      }
      const lines = (await Deno.readTextFile(file("vocab.txt"))).split("\n");
      if (lines.at(-1) === "") lines.pop();
      const added = await optional("added_tokens.json") as Record<string, number>;
      const json = bertTokenizerJson(lines.map((l) => l.replace(/\r$/, "")), config, {
        specialTokensMap: await optional("special_tokens_map.json"),
        addedTokens: added,
      });
      return new HfTokenizer(json, config);
    }
    throw new ModelNotFoundError(`Cannot find a tokenizer in "${dir}"`, {
      hint: "the folder needs tokenizer.json, or a BERT vocab.txt with tokenizer_config.json",
    });
  }

  /** Token ids of `text` (with the model's special tokens unless told otherwise). */
  encode(text: string, options: HfEncodeOptions = {}): number[] {
    const addSpecialTokens = options.addSpecialTokens ?? true;
    return this.#tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** The tokens of `text`, without special tokens. */
  tokenize(text: string): string[] {
    return this.#tokenizer.tokenize(text);
  }

  /** Text of `ids`, as transformers' `decode(ids, skip_special_tokens=...)`. */
  decode(ids: readonly number[], options: HfDecodeOptions = {}): string {
    if (ids.length === 0) return "";
    return this.#tokenizer.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? true,
    });
  }

  /** The id of `token`, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#tokenizer.token_to_id(token);
  }
}
