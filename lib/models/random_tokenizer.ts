/**
 * Small byte-level BPE `tokenizer.json` files (the GPT-2/BART/RoBERTa kind: every byte is a
 * token, a few words are merged) for the tiny random vision-language exports in tests and
 * benchmarks. Any text tokenizes; ids are small.
 *
 * @module
 */

/** GPT-2's `bytes_to_unicode`: the printable character each byte is written as. */
export function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + extra++);
  }
  return out;
}

/** Options of {@linkcode byteLevelTokenizerJson}. */
export interface ByteLevelTokenizerOptions {
  /** Special tokens on ids 0, 1, ... (e.g. BART's `<s> <pad> </s> <unk>`). */
  specials: readonly string[];
  /** Extra special tokens after the vocabulary (e.g. `<image>`). */
  added?: readonly string[];
  /**
   * Special tokens around a single text: `"roberta"` (`<s> $A </s>`, BART), `"bos"` (`<s> $A`,
   * Llama), or none.
   */
  template?: "roberta" | "bos" | "none";
  /** Words merged into single tokens (`Ġ` marks a leading space). */
  words?: readonly string[];
  /** The start token of the template (default `specials[0]`). */
  bos?: string;
  /** The end token of the template (default `specials[2]`). */
  eos?: string;
}

/**
 * A tokenizer.json with a byte-level BPE model: the specials, then the 256 byte symbols, then
 * each prefix of the given words (merged left to right), then the added tokens.
 *
 * @example
 * ```ts
 * import { byteLevelTokenizerJson } from "./random_tokenizer.ts";
 * const json = byteLevelTokenizerJson({ specials: ["<s>", "<pad>", "</s>", "<unk>"] });
 * console.assert((json.model as { type: string }).type === "BPE");
 * ```
 */
export function byteLevelTokenizerJson(
  options: ByteLevelTokenizerOptions,
): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  let next = 0;
  const add = (t: string) => {
    if (!(t in vocab)) vocab[t] = next++;
  };
  options.specials.forEach(add);
  for (const s of byteToUnicode()) add(s);
  const merges: string[] = [];
  const encodeWord = (w: string) => {
    const bytes = new TextEncoder().encode(w.replace(/^Ġ/, " "));
    const table = byteToUnicode();
    return [...bytes].map((b) => table[b]!);
  };
  for (const word of options.words ?? []) {
    const symbols = encodeWord(word);
    let prefix = symbols[0]!;
    for (const s of symbols.slice(1)) {
      const merge = `${prefix} ${s}`;
      if (!merges.includes(merge)) merges.push(merge);
      prefix += s;
      add(prefix);
    }
  }
  const added = options.added ?? [];
  added.forEach(add);
  const specialToken = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const bos = options.bos ?? options.specials[0];
  const eos = options.eos ?? options.specials[2];
  const template = options.template ?? "none";
  const postProcessor = template === "roberta"
    ? {
      type: "RobertaProcessing",
      sep: [eos, vocab[eos!]],
      cls: [bos, vocab[bos!]],
      trim_offsets: true,
      add_prefix_space: false,
    }
    : template === "bos"
    ? {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { [bos!]: { id: bos, ids: [vocab[bos!]], tokens: [bos] } },
    }
    : null;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [...options.specials, ...added].map(specialToken),
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: postProcessor,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
