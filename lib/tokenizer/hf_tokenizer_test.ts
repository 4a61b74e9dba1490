import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { bertTokenizerJson, HfTokenizer } from "./hf_tokenizer.ts";

const DIR = "golden/models/tiny_blip";

interface Golden {
  tokenizer: Array<
    { text: string; tokens: string[]; input_ids: number[]; decoded_skip_special: string }
  >;
  captions: Array<{ generated_ids: number[]; text: string }>;
}

Deno.test({
  name: "HfTokenizer from a BERT vocab.txt matches transformers' BertTokenizer (BLIP table)",
  ignore: !hasShared,
  fn: async () => {
    const tok = await HfTokenizer.fromFolder(sharedPath(DIR));
    const golden = readSharedJson<Golden>(`${DIR}/reference.json`);
    for (const c of golden.tokenizer) {
      assert.deepEqual(tok.tokenize(c.text), c.tokens, c.text);
      assert.deepEqual(tok.encode(c.text), c.input_ids, c.text);
      assert.equal(tok.decode(c.input_ids), c.decoded_skip_special, c.text);
    }
    for (const c of golden.captions) assert.equal(tok.decode(c.generated_ids), c.text);
    assert.equal(tok.tokenToId("[DEC]"), 215);
    assert.equal(tok.vocabSize, 217);
  },
});

Deno.test({
  name: "HfTokenizer reads tokenizer.json when the folder has one",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const config = readSharedJson<Record<string, unknown>>(`${DIR}/tokenizer_config.json`);
      const vocab = Deno.readTextFileSync(sharedPath(`${DIR}/vocab.txt`)).trimEnd().split("\n");
      // A tokenizer.json that differs from vocab.txt: the folder's tokenizer.json must win.
      const json = bertTokenizerJson(vocab, { ...config, do_lower_case: false }, {
        specialTokensMap: { additional_special_tokens: ["[ENC]"], bos_token: "[DEC]" },
      });
      await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(json));
      await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
      await Deno.copyFile(sharedPath(`${DIR}/vocab.txt`), join(dir, "vocab.txt"));
      const tok = await HfTokenizer.fromFolder(dir);
      assert.deepEqual(tok.encode("a Cat"), [2, 28, 1, 3]); // "Cat" is unknown without lowering
      assert.equal(tok.decode([215, 28, 125, 7, 3]), "a cat!");
      assert.equal(tok.decode([215, 28, 3], { skipSpecialTokens: false }), "[DEC] a [SEP]");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("bertTokenizerJson() needs every special token in the vocabulary", () => {
  assert.throws(
    () => bertTokenizerJson(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], { bos_token: "[DEC]" }),
    (e: Error) => e instanceof RangeError && e.message.includes('"[DEC]"'),
  );
  const json = bertTokenizerJson(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], { bos_token: "[DEC]" }, {
    addedTokens: { "[DEC]": 4 },
  });
  const tok = new HfTokenizer(json, {});
  assert.equal(tok.tokenToId("[DEC]"), 4);
});

Deno.test("HfTokenizer.fromFolder() says what is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => HfTokenizer.fromFolder(dir), /Cannot find a tokenizer/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
