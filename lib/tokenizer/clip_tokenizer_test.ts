import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { ClipTokenizer } from "./clip_tokenizer.ts";

interface GoldenPrompt {
  prompt: string;
  padded: number[];
  unpadded: number[];
  tokens: string[];
  padded_pad0: number[];
}
interface Golden {
  prompts: GoldenPrompt[];
  batch_example: { prompts: string[]; input_ids: number[][] };
}

const CLIP_DIR = sharedPath("data/clip");

async function sharedTokenizers(): Promise<[ClipTokenizer, ClipTokenizer]> {
  const sd1 = await ClipTokenizer.fromDirectory(CLIP_DIR);
  const vocab = JSON.parse(await Deno.readTextFile(`${CLIP_DIR}/vocab.json`));
  const merges = await Deno.readTextFile(`${CLIP_DIR}/merges.txt`);
  // SD 2.x / SDXL tokenizer_2: special_tokens_map.json names "!" as the pad token.
  const sd2 = new ClipTokenizer({ vocab, merges, specialTokensMap: { pad_token: "!" } });
  return [sd1, sd2];
}

function firstDiff(a: readonly number[], b: readonly number[]): string {
  const i = a.findIndex((v, k) => v !== b[k]);
  return i < 0 ? `length ${a.length} vs ${b.length}` : `index ${i}: ${a[i]} vs ${b[i]}`;
}

Deno.test({
  name: "ClipTokenizer matches transformers CLIPTokenizer on every golden prompt",
  ignore: !hasShared,
  async fn() {
    const golden = readSharedJson<Golden>("golden/clip_tokenizer.json");
    const [sd1, sd2] = await sharedTokenizers();
    assert.equal(sd1.bosId, 49406);
    assert.equal(sd1.eosId, 49407);
    assert.equal(sd1.padId, 49407);
    assert.equal(sd2.padId, 0);
    assert.equal(sd1.modelMaxLength, 77);
    for (const g of golden.prompts) {
      const unpadded: number[] = [sd1.bosId, ...sd1.encode(g.prompt), sd1.eosId];
      const label = JSON.stringify(g.prompt);
      assert.deepEqual(unpadded, g.unpadded, `${label}: ${firstDiff(unpadded, g.unpadded)}`);
      assert.deepEqual(unpadded.map((id) => sd1.idToToken(id)), g.tokens, label);
      const padded = sd1.encodePadded(g.prompt);
      assert.deepEqual(padded, g.padded, `${label} padded: ${firstDiff(padded, g.padded)}`);
      const pad0 = sd2.encodePadded(g.prompt);
      assert.deepEqual(pad0, g.padded_pad0, `${label} pad 0: ${firstDiff(pad0, g.padded_pad0)}`);
    }
    const batch = golden.batch_example.prompts.map((p) => sd1.encodePadded(p));
    assert.deepEqual(batch, golden.batch_example.input_ids);
  },
});

Deno.test({
  name: "ClipTokenizer matches ftfy + CLIP pattern cross-check on 300 random strings",
  ignore: !hasShared,
  async fn() {
    const doc = JSON.parse(
      await Deno.readTextFile(new URL("./testdata/ftfy_crosscheck.json", import.meta.url)),
    ) as { cases: Array<{ text: string; ids: number[] }> };
    const [sd1] = await sharedTokenizers();
    const bad = doc.cases.filter((c) => sd1.encode(c.text).join() !== c.ids.join());
    assert.equal(
      bad.length,
      0,
      `${bad.length} mismatches, first ${JSON.stringify(bad[0]?.text)}: got ${
        bad[0] && sd1.encode(bad[0].text)
      }, want ${bad[0]?.ids}`,
    );
  },
});

Deno.test({
  name: "ClipTokenizer.fromDirectory() reads a Diffusers tokenizer folder",
  ignore: !hasShared,
  async fn() {
    const tok = await ClipTokenizer.fromDirectory(
      sharedPath("golden/models/tiny_dummy/pipeline/tokenizer"),
    );
    assert.equal(tok.padId, 49407);
    assert.equal(tok.vocabSize, 49408);
    assert.deepEqual(tok.encode("a photo of a cat"), [320, 1125, 539, 320, 2368]);
    await assert.rejects(
      () => ClipTokenizer.fromDirectory(sharedPath("golden")),
      /vocab\.json is missing/,
    );
  },
});

Deno.test({
  name: "ClipTokenizer splitOnPadToken reproduces transformers from_pretrained '!' splitting",
  ignore: !hasShared,
  async fn() {
    const vocab = JSON.parse(await Deno.readTextFile(`${CLIP_DIR}/vocab.json`));
    const merges = await Deno.readTextFile(`${CLIP_DIR}/merges.txt`);
    const files = { vocab, merges, specialTokensMap: { pad_token: "!" } };
    // huggingface/diffusers#4153: "! !! !!!" becomes six pad ids under from_pretrained.
    const split = new ClipTokenizer(files, { splitOnPadToken: true });
    assert.deepEqual(split.encode("! !! !!!"), [0, 0, 0, 0, 0, 0]);
    const plain = new ClipTokenizer(files);
    assert.deepEqual(plain.encode("! !! !!!"), [256, 748, 995]);
  },
});

Deno.test({
  name: "ClipTokenizer.addTokens() appends multi-vector textual-inversion ids",
  ignore: !hasShared,
  async fn() {
    const tok = await ClipTokenizer.fromDirectory(CLIP_DIR);
    const ids = tok.addTokens("EasyNegative", 3);
    assert.deepEqual(ids, [49408, 49409, 49410]);
    assert.equal(tok.vocabSize, 49411);
    assert.deepEqual(tok.encode("a cat, EasyNegative!"), [320, 2368, 267, ...ids, 256]);
    // Case-sensitive, as transformers matches added tokens.
    assert.deepEqual(tok.encode("easynegative").includes(49408), false);
    assert.equal(tok.addedTokenOf(49409), "EasyNegative_1");
    assert.equal(tok.decode([320, ...ids]), "a EasyNegative EasyNegative_1 EasyNegative_2");
    assert.throws(() => tok.addTokens("EasyNegative"), RangeError);
    assert.throws(() => tok.addTokens("cat</w>"), RangeError);
    assert.throws(() => tok.addTokens("x", 0), RangeError);
  },
});

Deno.test({
  name: "ClipTokenizer.decode() inverts encode() like transformers decode()",
  ignore: !hasShared,
  async fn() {
    const tok = await ClipTokenizer.fromDirectory(CLIP_DIR);
    assert.equal(
      tok.decode(tok.encode("A photo of a cat, isn't it?")),
      // transformers' clean-up joins " n't" but not " 't", so "isn 't" is what it returns.
      "a photo of a cat, isn 't it?",
    );
    const padded = tok.encodePadded("a dog");
    assert.equal(tok.decode(padded, { skipSpecialTokens: true }), "a dog");
    assert.match(tok.decode(padded.slice(0, 4)), /^<\|startoftext\|>a dog <\|endoftext\|>$/);
    assert.equal(tok.decode(tok.encode("日本語 café")), "日本語 café");
    // A lone surrogate becomes U+FFFD (ftfy fix_surrogates), bytes EF BF BD.
    assert.deepEqual(tok.encode("\ud83d"), tok.encode("\ufffd"));
    assert.equal(tok.decode(tok.encode("\ud83d")), "\ufffd");
  },
});

Deno.test("ClipTokenizer reads special tokens like transformers: map over config over defaults", () => {
  const vocab = { "!": 0, "a</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3, "<pad>": 4 };
  const merges = "#version: 0.2\n";
  assert.equal(new ClipTokenizer({ vocab, merges }).padId, 3);
  const config = { pad_token: { content: "<pad>", __type: "AddedToken" }, model_max_length: 64 };
  const fromConfig = new ClipTokenizer({ vocab, merges, tokenizerConfig: config });
  assert.equal(fromConfig.padId, 4);
  assert.equal(fromConfig.modelMaxLength, 64);
  const both = new ClipTokenizer({
    vocab,
    merges,
    tokenizerConfig: config,
    specialTokensMap: { pad_token: "!" },
  });
  assert.equal(both.padId, 0);
  assert.throws(
    () => new ClipTokenizer({ vocab: { a: 0 }, merges }),
    /unk_token "<\|endoftext\|>" is not in vocab\.json/,
  );
});
