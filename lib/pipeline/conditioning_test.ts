import assert from "node:assert/strict";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { ClipTokenizer } from "../tokenizer/mod.ts";
import { applyEmphasis, CHUNK_TOKENS, chunkPrompt } from "./conditioning.ts";

const tokenizer = await ClipTokenizer.fromDirectory(
  await writeByteTokenizer(await Deno.makeTempDir()),
);
// With the byte-level vocabulary every word "a" is one token "a</w>", a comma is ",</w>".
const words = (n: number) => Array.from({ length: n }, () => "a").join(" ");

Deno.test("chunkPrompt() makes BOS + 75 + EOS chunks at 75/76/150/151 tokens", () => {
  for (const [n, chunks] of [[1, 1], [75, 1], [76, 2], [150, 2], [151, 3]] as const) {
    const out = chunkPrompt(tokenizer, words(n), "a1111");
    assert.equal(out.length, chunks, `${n} tokens`);
    for (const c of out) {
      assert.equal(c.ids.length, CHUNK_TOKENS + 2);
      assert.equal(c.ids[0], tokenizer.bosId);
      assert.equal(c.weights.length, CHUNK_TOKENS + 2);
    }
    const content = out.flatMap((c) => c.ids.slice(1, -1)).filter((id) => id !== tokenizer.eosId);
    assert.equal(content.length, n);
  }
});

Deno.test("chunkPrompt() pads after the first EOS with the pad id, and BREAK starts a chunk", () => {
  const [chunk] = chunkPrompt(tokenizer, "a b", "a1111");
  assert.deepEqual(chunk!.ids.slice(0, 4), [
    tokenizer.bosId,
    ...tokenizer.encode("a b"),
    tokenizer.eosId,
  ]);
  assert.ok(chunk!.ids.slice(4).every((id) => id === tokenizer.padId));
  const broken = chunkPrompt(tokenizer, "a BREAK b", "a1111");
  assert.equal(broken.length, 2);
  assert.equal(broken[1]!.ids[1], tokenizer.encode("b")[0]);
  // Plain syntax keeps BREAK and brackets as text.
  assert.equal(chunkPrompt(tokenizer, "a BREAK b", "plain").length, 1);
});

Deno.test("chunkPrompt() carries weights and backtracks to the last comma", () => {
  const [chunk] = chunkPrompt(tokenizer, "a (b:1.5) [c]", "a1111");
  const ids = chunk!.ids;
  const b = tokenizer.encode("b")[0]!;
  const c = tokenizer.encode("c")[0]!;
  assert.equal(chunk!.weights[ids.indexOf(b)], 1.5);
  assert.ok(Math.abs(chunk!.weights[ids.indexOf(c)]! - 1 / 1.1) < 1e-12);
  // 70 tokens, a comma, then 10 more: the chunk breaks after the comma (within 20 tokens).
  const out = chunkPrompt(tokenizer, `${words(70)}, ${words(10)}`, "a1111");
  assert.equal(out.length, 2);
  const firstContent = out[0]!.ids.slice(1).indexOf(tokenizer.eosId);
  assert.equal(firstContent, 71, "70 words and the comma stay in the first chunk");
});

Deno.test("applyEmphasis() multiplies by the weights and restores the mean (A1111 original)", () => {
  const dim = 2;
  const hidden = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const weights = [1, 2, 1];
  const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
  const before = mean(hidden);
  const original = hidden.slice();
  applyEmphasis(original, dim, weights, "original");
  assert.ok(Math.abs(mean(original) - before) < 1e-5);
  const noNorm = hidden.slice();
  applyEmphasis(noNorm, dim, weights, "no-norm");
  assert.deepEqual([...noNorm], [1, 2, 6, 8, 5, 6]);
  const none = hidden.slice();
  applyEmphasis(none, dim, weights, "none");
  assert.deepEqual(none, hidden);
  const ratio = original[0]! / noNorm[0]!;
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(original[i]! - noNorm[i]! * ratio) < 1e-5);
});
