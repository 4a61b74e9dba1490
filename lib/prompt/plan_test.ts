import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { ClipTokenizer } from "../tokenizer/clip_tokenizer.ts";
import { CHUNK_TOKENS, planConditioning } from "./plan.ts";

// A toy vocabulary where every single-letter word is one token, so token counts are exact.
const VOCAB: Record<string, number> = {
  "!": 0,
  "x</w>": 1,
  "y</w>": 2,
  "a</w>": 3,
  ",</w>": 4,
  "b</w>": 5,
  "c</w>": 6,
  "break</w>": 7,
  "<|startoftext|>": 10,
  "<|endoftext|>": 11,
};
const BOS = 10;
const EOS = 11;

function tokenizer(pad?: string): ClipTokenizer {
  return new ClipTokenizer({
    vocab: VOCAB,
    merges: "#version: 0.2\nb r\nbr e\nbre a\nbrea k</w>\n",
    ...(pad ? { specialTokensMap: { pad_token: pad } } : {}),
  });
}

const words = (w: string, n: number) => Array.from({ length: n }, () => w).join(" ");
const body = (ids: number[]) => ids.slice(1, -1).filter((id) => id !== EOS);

Deno.test("planConditioning() chunks 75/76/150/151 tokens like A1111", () => {
  const tok = tokenizer();
  for (const [n, chunks, count] of [[75, 1, 75], [76, 2, 76], [150, 2, 150], [151, 3, 151]]) {
    const plan = planConditioning({ prompt: words("x", n as number), negative: "", steps: 1 }, tok);
    const v = plan.variants[0];
    assert.ok(v);
    assert.equal(v.chunks.length, chunks, `${n} tokens`);
    assert.equal(v.tokenCount, count, `${n} tokens`);
    for (const c of v.chunks) {
      const ids = c.ids[0] ?? [];
      assert.equal(ids.length, CHUNK_TOKENS + 2);
      assert.equal(ids[0], BOS);
      assert.equal(ids[76], EOS);
      assert.equal(c.weights.length, 77);
    }
    const all = v.chunks.flatMap((c) => body(c.ids[0] ?? []));
    assert.equal(all.length, n);
    // The negative prompt ("") is padded with empty chunks to the same count.
    const neg = plan.variants[plan.negative[0]?.parts[0]?.variant ?? -1];
    assert.equal(neg?.chunks.length, chunks);
    assert.equal(neg?.chunks.slice(1).every((c) => c.padding), true);
    assert.deepEqual(neg?.chunks[0]?.ids[0], [BOS, ...new Array(76).fill(EOS)]);
  }
});

Deno.test("planConditioning() starts a new chunk at BREAK", () => {
  const plan = planConditioning({ prompt: "x x BREAK y", negative: "", steps: 1 }, tokenizer());
  const v = plan.variants[0];
  assert.equal(v?.chunks.length, 2);
  assert.deepEqual(body(v?.chunks[0]?.ids[0] ?? []), [1, 1]);
  assert.deepEqual(body(v?.chunks[1]?.ids[0] ?? []), [2]);
  assert.equal(v?.tokenCount, 76);
  // A weighted BREAK is no break to A1111: it is tokenised as the word.
  const weighted = planConditioning({ prompt: "(x BREAK y)", negative: "", steps: 1 }, tokenizer());
  assert.equal(weighted.variants[0]?.chunks.length, 1);
  assert.deepEqual(body(weighted.variants[0]?.chunks[0]?.ids[0] ?? []), [1, 7, 2]);
});

Deno.test("planConditioning() moves text after a late comma to the next chunk", () => {
  const prompt = `${words("x", 70)} , ${words("y", 10)}`;
  const plan = planConditioning({ prompt, negative: "", steps: 1 }, tokenizer());
  const [c0, c1] = plan.variants[0]?.chunks ?? [];
  assert.deepEqual(body(c0?.ids[0] ?? []), [...new Array(70).fill(1), 4]);
  assert.deepEqual(body(c1?.ids[0] ?? []), new Array(10).fill(2));
  // Off, or a comma further back than the limit: the chunk is cut at 75 tokens.
  const off = planConditioning({ prompt, negative: "", steps: 1 }, tokenizer(), {
    commaPaddingBacktrack: 0,
  });
  assert.equal(body(off.variants[0]?.chunks[0]?.ids[0] ?? []).length, 75);
  const far = `${words("x", 50)} , ${words("y", 40)}`;
  const farPlan = planConditioning({ prompt: far, negative: "", steps: 1 }, tokenizer());
  assert.equal(body(farPlan.variants[0]?.chunks[0]?.ids[0] ?? []).length, 75);
});

Deno.test("planConditioning() gives per-token weights from A1111 emphasis", () => {
  const plan = planConditioning({ prompt: "x (y:1.5) [a]", negative: "", steps: 1 }, tokenizer());
  const w = plan.variants[0]?.chunks[0]?.weights ?? [];
  assert.deepEqual(w.slice(0, 5), [1, 1, 1.5, 1 / 1.1, 1]);
  const none = planConditioning({ prompt: "x (y:1.5)", negative: "", steps: 1 }, tokenizer(), {
    emphasis: "none",
  });
  assert.equal(none.variants[0]?.chunks[0]?.weights.every((x) => x === 1), true);
});

Deno.test("planConditioning() keeps a textual-inversion embedding inside one chunk", () => {
  const tok = tokenizer();
  const ids = tok.addTokens("EmbA", 4);
  const prompt = `${words("x", 73)} EmbA`;
  const plan = planConditioning({ prompt, negative: "", steps: 1 }, tok);
  const [c0, c1] = plan.variants[0]?.chunks ?? [];
  assert.equal(body(c0?.ids[0] ?? []).length, 73);
  assert.deepEqual(body(c1?.ids[0] ?? []), ids);
  assert.deepEqual(plan.embeddingsUsed, ["EmbA"]);
});

Deno.test("planConditioning() pads after the first EOS with id 0 for SD2-style tokenizers", () => {
  const plan = planConditioning({ prompt: "x y", negative: "", steps: 1 }, [
    tokenizer(),
    tokenizer("!"),
  ]);
  const c = plan.variants[0]?.chunks[0];
  assert.deepEqual(c?.ids[0]?.slice(0, 6), [BOS, 1, 2, EOS, EOS, EOS]);
  assert.deepEqual(c?.ids[1]?.slice(0, 6), [BOS, 1, 2, EOS, 0, 0]);
  assert.equal(c?.ids[1]?.length, 77);
});

Deno.test("planConditioning() maps steps to schedule variants as A1111's sampler does", () => {
  const plan = planConditioning(
    { prompt: "a [x:y:0.5] AND b:0.5", negative: "c", steps: 4 },
    tokenizer(),
  );
  // AND keeps the space before " b", as A1111 does.
  assert.deepEqual(plan.variants.map((v) => v.text), ["a x", "a y", " b", "c"]);
  // Schedule [[2, "a x"], [4, "a y"]]: step indices 0..2 use "a x" (A1111 compares i <= 2).
  assert.deepEqual(plan.positive.map((s) => s.parts), [
    [{ variant: 0, weight: 1 }, { variant: 2, weight: 0.5 }],
    [{ variant: 0, weight: 1 }, { variant: 2, weight: 0.5 }],
    [{ variant: 0, weight: 1 }, { variant: 2, weight: 0.5 }],
    [{ variant: 1, weight: 1 }, { variant: 2, weight: 0.5 }],
  ]);
  assert.deepEqual(
    plan.negative.map((s) => s.parts),
    new Array(4).fill([{ variant: 3, weight: 1 }]),
  );
  // Alternation: a new variant every step, each distinct text encoded once.
  const alt = planConditioning({ prompt: "[x|y]", negative: "x", steps: 4 }, tokenizer());
  assert.deepEqual(alt.variants.map((v) => v.text), ["x", "y"]);
  assert.deepEqual(alt.positive.map((s) => s.parts[0]?.variant), [0, 0, 1, 0]);
  assert.deepEqual(alt.negative.map((s) => s.parts[0]?.variant), [0, 0, 0, 0]);
});

Deno.test("planConditioning() removes network tags, and plain syntax passes text through", () => {
  const plan = planConditioning(
    { prompt: "x <lora:foo:0.7> y", negative: "<lora:bad:1> a", steps: 1 },
    tokenizer(),
  );
  assert.deepEqual(plan.networks.map((n) => [n.kind, n.name, n.weights]), [["lora", "foo", [0.7]]]);
  assert.deepEqual(plan.negativeNetworks.map((n) => n.name), ["bad"]);
  assert.equal(plan.variants[0]?.text, "x  y");
  const plain = planConditioning(
    { prompt: "(x:1.5) [y:a:1] AND b BREAK", negative: "", steps: 3 },
    tokenizer(),
    {
      syntax: "plain",
    },
  );
  assert.equal(plain.variants[0]?.text, "(x:1.5) [y:a:1] AND b BREAK");
  assert.equal(plain.variants[0]?.chunks[0]?.weights.every((w) => w === 1), true);
  assert.equal(
    plain.positive.every((s) => s.parts.length === 1 && s.parts[0]?.variant === 0),
    true,
  );
  assert.equal(plain.networks.length, 0);
});

Deno.test("planConditioning() rejects bad options with RangeError", () => {
  const tok = tokenizer();
  const p = { prompt: "x", negative: "", steps: 1 };
  assert.throws(() => planConditioning({ ...p, steps: 0 }, tok), RangeError);
  assert.throws(() => planConditioning(p, tok, { clipSkip: 0 }), RangeError);
  // @ts-expect-error: testing a value from untyped input
  assert.throws(() => planConditioning(p, tok, { emphasis: "loud" }), RangeError);
  assert.throws(() => planConditioning(p, []), TypeError);
  assert.equal(planConditioning(p, tok, { clipSkip: 2 }).clipSkip, 2);
});

Deno.test("planConditioning() also finds embeddings by their tokens, as A1111 does", () => {
  const tok = tokenizer();
  const ids = tok.addTokens("X", 2);
  // "x" is not "X" to the tokenizer, but its tokens match the lower-cased name's tokens.
  const a1111 = planConditioning({ prompt: "a x", negative: "", steps: 1 }, tok, {
    embeddings: ["X"],
  });
  assert.deepEqual(body(a1111.variants[0]?.chunks[0]?.ids[0] ?? []), [3, ...ids]);
  assert.deepEqual(a1111.embeddingsUsed, ["X"]);
  const exact = planConditioning({ prompt: "a x", negative: "", steps: 1 }, tok);
  assert.deepEqual(body(exact.variants[0]?.chunks[0]?.ids[0] ?? []), [3, 1]);
  assert.throws(
    () => planConditioning({ prompt: "a", negative: "", steps: 1 }, tok, { embeddings: ["Q"] }),
    /embedding "Q" is not in the tokenizer/,
  );
});

interface GoldenPrompt {
  prompt: string;
  padded: number[];
  padded_pad0: number[];
  n_tokens_unpadded: number;
}

Deno.test({
  name: "planConditioning() single chunks equal transformers' padded ids for plain golden prompts",
  ignore: !hasShared,
  async fn() {
    const golden = readSharedJson<{ prompts: GoldenPrompt[] }>("golden/clip_tokenizer.json");
    const dir = sharedPath("data/clip");
    const sd1 = await ClipTokenizer.fromDirectory(dir);
    const vocab = JSON.parse(await Deno.readTextFile(`${dir}/vocab.json`));
    const merges = await Deno.readTextFile(`${dir}/merges.txt`);
    const sd2 = new ClipTokenizer({ vocab, merges, specialTokensMap: { pad_token: "!" } });
    // Prompts with no A1111 syntax in them and at most 75 tokens.
    const plain = golden.prompts.filter((g) =>
      !/[()[\]:|\\<]|BREAK|AND/.test(g.prompt) && g.n_tokens_unpadded <= 77
    );
    assert.ok(plain.length >= 15, `only ${plain.length} prompts`);
    for (const g of plain) {
      const plan = planConditioning({ prompt: g.prompt, negative: "", steps: 1 }, [sd1, sd2]);
      const chunk = plan.variants[0]?.chunks[0];
      assert.deepEqual(chunk?.ids[0], g.padded, JSON.stringify(g.prompt));
      assert.deepEqual(chunk?.ids[1], g.padded_pad0, JSON.stringify(g.prompt));
    }
  },
});
