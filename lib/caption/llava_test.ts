/**
 * LLaVA on a tiny random export with the transformers.js LLaVA layout's part names, inputs and
 * outputs (lib/models/random_llava.ts). No real weights are read: the checks are the plumbing
 * (chat prompt, image tokens expanded and replaced by the image's features, positions and masks
 * across cached steps, beam reordering, decoding of the new tokens only).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { RawImage } from "../image/codec.ts";
import { createRandomLlava } from "../models/random_llava.ts";
import { beamSearch } from "./beam_search.ts";
import { captionImages } from "./caption.ts";
import { resolveGenerationConfig } from "./generation_config.ts";
import { greedySearch } from "./greedy_search.ts";
import { LLAVA_DEFAULT_MAX_NEW_TOKENS, LlavaCaptionModel } from "./llava.ts";
import { llavaPrompt } from "./llava_chat.ts";
import type { TokenScorer } from "./token_scorer.ts";

const dir = await Deno.makeTempDir({ prefix: "llava-test-" });
await createRandomLlava(dir);

function image(width: number, height: number, step: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * step + (i >> 3)) & 0xff;
  return { width, height, channels: 3, data };
}

const IMAGES = [image(40, 30, 7), image(30, 52, 11)];

Deno.test("LLaVA prompt: <s> + the LLaVA-1.5 template with one <image> per feature row", async () => {
  const model = await LlavaCaptionModel.load(dir);
  try {
    const ids = model.promptIds({ task: "caption" }, 16);
    const plain = model.tokenizer.encode(
      llavaPrompt("Write a one-sentence caption for this image."),
    );
    const at = plain.indexOf(model.imageTokenId);
    assert.equal(ids[0], model.tokenizer.tokenToId("<s>"));
    assert.deepEqual(ids, [
      ...plain.slice(0, at),
      ...new Array(16).fill(model.imageTokenId),
      ...plain.slice(at + 1),
    ]);
    assert.deepEqual(
      model.promptIds({ prompt: "What is this?" }, 2),
      [
        ...model.tokenizer.encode("USER: ").slice(0),
        model.imageTokenId,
        model.imageTokenId,
        ...model.tokenizer.encode("\nWhat is this? ASSISTANT:", { addSpecialTokens: false }),
      ],
    );
    assert.throws(() => model.promptIds({ prompt: "two <image> tokens" }, 2), /exactly one/);
    assert.equal(model.generationConfig.maxNewTokens, LLAVA_DEFAULT_MAX_NEW_TOKENS);
    assert.deepEqual(model.eosTokenIds, [2]);
  } finally {
    await model.release();
  }
});

Deno.test("LLaVA greedy and beam search with the cache equal recomputing every step", async () => {
  const model = await LlavaCaptionModel.load(dir);
  try {
    for (const numBeams of [1, 3]) {
      const config = resolveGenerationConfig(model.generationConfig, {
        numBeams,
        maxNewTokens: 6,
      });
      const setup = {
        config,
        eosTokenIds: model.eosTokenIds,
        padTokenId: model.padTokenId,
        keepScores: true,
      };
      const encoded = await model.encode(IMAGES, { task: "detailed" });
      const prompts = IMAGES.map(() => encoded.promptIds);
      const search = numBeams > 1 ? beamSearch : greedySearch;
      const cached = await search(encoded.scorer, prompts, setup);
      // Reference: a fresh scorer for every step scores the whole sequences from scratch.
      const recompute: TokenScorer = {
        vocabSize: encoded.scorer.vocabSize,
        async next(sequences) {
          const fresh = (await model.encode(IMAGES, { task: "detailed" })).scorer;
          return await fresh.next(sequences, sequences.map((_, r) => r));
        },
      };
      const reference = await search(recompute, prompts, setup);
      assert.deepEqual(cached.sequences, reference.sequences, `${numBeams} beams`);
      let worst = 0;
      cached.scores.forEach((s, i) =>
        s.forEach((v, j) => {
          const w = reference.scores[i]![j]!;
          if (Number.isFinite(v) || Number.isFinite(w)) worst = Math.max(worst, Math.abs(v - w));
        })
      );
      console.log(`${numBeams} beams: ${cached.scores.length} steps, maxdiff ${worst}`);
      assert.ok(worst < 1e-4, `maxdiff ${worst}`);
      for (const ids of cached.sequences) {
        assert.deepEqual(ids.slice(0, encoded.promptIds.length), encoded.promptIds);
        assert.ok(ids.length <= encoded.promptIds.length + 6);
      }
    }
  } finally {
    await model.release();
  }
});

Deno.test("LLaVA: the image decides the caption; batches do not; only new tokens are decoded", async () => {
  const model = await LlavaCaptionModel.load(dir);
  try {
    const both = await captionImages(model, IMAGES, { maxNewTokens: 6, batchSize: 2 });
    const alone = await captionImages(model, [IMAGES[1]!], { maxNewTokens: 6 });
    assert.deepEqual(both[1]!.ids, alone[0]!.ids);
    // The first step's logits differ between the two images (their features are placed).
    const encoded = await model.encode(IMAGES);
    const logits = await encoded.scorer.next([encoded.promptIds, encoded.promptIds], [0, 1]);
    const v = encoded.scorer.vocabSize;
    assert.notDeepEqual(logits.subarray(0, v), logits.subarray(v, 2 * v));
    const prompt = model.promptIds({}, 16);
    const words = model.tokenizer.encode(" a cat", { addSpecialTokens: false });
    assert.equal(model.decode([...prompt, ...words, 2], prompt), "a cat");
  } finally {
    await model.release();
  }
});

Deno.test("LlavaCaptionModel.load() refuses other text models and other model types", async () => {
  const bad = await Deno.makeTempDir({ prefix: "llava-bad-" });
  try {
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    await Deno.writeTextFile(
      join(bad, "config.json"),
      JSON.stringify({ ...config, text_config: { ...config.text_config, model_type: "qwen2" } }),
    );
    await assert.rejects(() => LlavaCaptionModel.load(bad), /only the LLaVA-1.5 chat template/);
    await Deno.writeTextFile(join(bad, "config.json"), JSON.stringify({ model_type: "blip" }));
    await assert.rejects(() => LlavaCaptionModel.load(bad), /not "llava"/);
  } finally {
    await Deno.remove(bad, { recursive: true });
  }
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // already gone
  }
});
