import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import {
  builtinClipMerges,
  builtinClipTokenizerDir,
  clipVocabFromMerges,
} from "./builtin_vocab.ts";
import { ClipTokenizer } from "./clip_tokenizer.ts";

Deno.test("the shipped CLIP vocabulary has 49,408 entries with the special tokens last", async () => {
  const vocab = clipVocabFromMerges(await builtinClipMerges());
  assert.equal(Object.keys(vocab).length, 49408);
  assert.equal(vocab["<|startoftext|>"], 49406);
  assert.equal(vocab["<|endoftext|>"], 49407);
  assert.equal(vocab["a</w>"], 320);
});

Deno.test({
  name: "the shipped CLIP vocabulary equals the real CLIP vocab.json and merges.txt (../shared)",
  ignore: !hasShared,
  async fn() {
    const merges = await builtinClipMerges();
    assert.equal(merges, await Deno.readTextFile(sharedPath("data/clip/merges.txt")));
    assert.deepEqual(clipVocabFromMerges(merges), readSharedJson("data/clip/vocab.json"));
  },
});

Deno.test("builtinClipTokenizerDir() writes a folder ClipTokenizer loads, once", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const dir = await builtinClipTokenizerDir(cache);
    const tok = await ClipTokenizer.fromDirectory(dir);
    assert.equal(tok.vocabSize, 49408);
    const mtime = (await Deno.stat(`${dir}/vocab.json`)).mtime;
    assert.equal(await builtinClipTokenizerDir(cache), dir);
    assert.deepEqual((await Deno.stat(`${dir}/vocab.json`)).mtime, mtime);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
