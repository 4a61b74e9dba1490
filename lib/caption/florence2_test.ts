/**
 * Florence-2 on a tiny random export with the published export's part names, inputs and
 * outputs (lib/models/random_florence2.ts). No real weights are read here: the checks are the
 * plumbing (prompt construction, image features joined before the prompt, the merged decoder's
 * two caches across steps and beam reordering, forced tokens, decoding), not real captions.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ModelNotFoundError } from "../errors.ts";
import type { RawImage } from "../image/codec.ts";
import { createRandomFlorence2 } from "../models/random_florence2.ts";
import { createSession, type HostTensor, hostTensor } from "../onnx/session.ts";
import { beamSearch } from "./beam_search.ts";
import { captionImages } from "./caption.ts";
import { Florence2CaptionModel, florence2GenerationConfig } from "./florence2.ts";
import { resolveGenerationConfig } from "./generation_config.ts";
import { greedySearch } from "./greedy_search.ts";
import { emptyCache, lastLogits, repeatRows } from "./kv_cache.ts";
import type { TokenScorer } from "./token_scorer.ts";

const dir = await Deno.makeTempDir({ prefix: "florence2-test-" });
await createRandomFlorence2(dir);

function image(width: number, height: number, step: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * step + (i >> 4)) & 0xff;
  return { width, height, channels: 3, data };
}

const IMAGES = [image(40, 30, 7), image(33, 50, 13)];

/** A scorer that reruns the merged decoder over whole sequences, without caches. */
async function recomputingScorer(states: { hidden: HostTensor; mask: HostTensor }) {
  const decoder = await createSession(join(dir, "onnx", "decoder_model_merged.onnx"));
  const embed = await createSession(join(dir, "onnx", "embed_tokens.onnx"));
  const images = states.hidden.dims[0]!;
  const scorer: TokenScorer = {
    vocabSize: 0,
    async next(sequences) {
      const rows = sequences.length;
      const k = rows / images;
      const width = sequences[0]!.length;
      const ids = BigInt64Array.from(sequences.flat(), BigInt);
      const { inputs_embeds } = await embed.run({
        input_ids: hostTensor("int64", ids, [rows, width]),
      });
      const feeds: Record<string, HostTensor> = {
        inputs_embeds: inputs_embeds!,
        encoder_hidden_states: repeatRows(states.hidden, k),
        encoder_attention_mask: repeatRows(states.mask, k),
        use_cache_branch: hostTensor("bool", Uint8Array.of(0), [1]),
      };
      for (const name of decoder.inputNames) {
        if (name.startsWith("past_key_values.")) feeds[name] = emptyCache(rows, 2, 8);
      }
      return lastLogits((await decoder.run(feeds))["logits"]!);
    },
  };
  return {
    scorer,
    release: async () => {
      await decoder.release();
      await embed.release();
    },
  };
}

Deno.test("Florence-2 encoder prompts are the processor's task sentences with <s> and </s>", async () => {
  const model = await Florence2CaptionModel.load(dir);
  try {
    const sentence = (text: string) => model.tokenizer.encode(text);
    assert.deepEqual(
      model.encoderIds({ task: "caption" }),
      sentence("What does the image describe?"),
    );
    assert.deepEqual(
      model.encoderIds({ task: "more-detailed" }),
      sentence("Describe with a paragraph what is shown in the image."),
    );
    assert.deepEqual(
      model.encoderIds({ prompt: "<OPEN_VOCABULARY_DETECTION>a cat" }),
      sentence("Locate a cat in the image."),
    );
    const ids = model.encoderIds({ task: "detailed" });
    assert.equal(ids[0], 0);
    assert.equal(ids.at(-1), 2);
    // The sentence decodes back (a byte-level BPE round trip).
    assert.equal(
      model.tokenizer.decode(ids, { skipSpecialTokens: true }),
      "Describe in detail what is shown in the image.",
    );
    assert.equal(model.decoderStartTokenId, 2);
    assert.equal(model.generationConfig.numBeams, 3);
    assert.equal(model.generationConfig.noRepeatNgramSize, 3);
    assert.equal(model.generationConfig.forcedBosTokenId, 0);
  } finally {
    await model.release();
  }
});

Deno.test("Florence-2 greedy and beam search with both caches equal recomputing every step", async () => {
  const model = await Florence2CaptionModel.load(dir);
  try {
    for (const task of ["caption", "more-detailed"] as const) {
      const states = await model.encodeStates(IMAGES, { task });
      const reference = await recomputingScorer(states);
      try {
        for (const numBeams of [1, 3]) {
          const config = resolveGenerationConfig(model.generationConfig, { numBeams });
          const setup = { config, eosTokenIds: model.eosTokenIds, padTokenId: 1, keepScores: true };
          const search = numBeams > 1 ? beamSearch : greedySearch;
          const encoded = await model.encode(IMAGES, { task });
          const cached = await search(encoded.scorer, [[2], [2]], setup);
          const vocab = encoded.scorer.vocabSize;
          const fresh = await search({ ...reference.scorer, vocabSize: vocab }, [[2], [2]], setup);
          assert.deepEqual(cached.sequences, fresh.sequences, `${task}, ${numBeams} beams`);
          let worst = 0;
          cached.scores.forEach((s, i) =>
            s.forEach((v, j) => {
              const w = fresh.scores[i]![j]!;
              if (Number.isFinite(v) || Number.isFinite(w)) {
                worst = Math.max(worst, Math.abs(v - w));
              }
            })
          );
          console.log(
            `${task}, ${numBeams} beams: ${cached.scores.length} steps, maxdiff ${worst}`,
          );
          assert.ok(worst < 1e-4, `maxdiff ${worst}`);
          for (const ids of cached.sequences) {
            // decoder start, forced <s>, ..., and </s> (forced at max_length at the latest)
            assert.deepEqual(ids.slice(0, 2), [2, 0]);
            assert.equal(ids.at(-1), 2);
            assert.ok(ids.length <= 12);
          }
        }
      } finally {
        await reference.release();
      }
    }
  } finally {
    await model.release();
  }
});

Deno.test("Florence-2: an image's caption does not depend on its batch; tasks differ", async () => {
  const model = await Florence2CaptionModel.load(dir);
  try {
    const both = await captionImages(model, IMAGES, { batchSize: 2 });
    const alone = await captionImages(model, [IMAGES[1]!]);
    assert.deepEqual(both[1]!.ids, alone[0]!.ids);
    const detailed = await captionImages(model, IMAGES, { task: "detailed" });
    assert.notDeepEqual(detailed.map((r) => r.ids), both.map((r) => r.ids));
    // Text is decoded with special tokens kept, then </s>, <s> and <pad> removed.
    for (const r of both) {
      assert.equal(r.text, model.decode(r.ids));
      assert.ok(!/<\/?s>|<pad>/.test(r.text));
    }
  } finally {
    await model.release();
  }
});

Deno.test("Florence-2 decode() keeps other tokens and strips </s>, <s>, <pad>", async () => {
  const model = await Florence2CaptionModel.load(dir);
  try {
    const words = model.tokenizer.encode("A cat on a dog", { addSpecialTokens: false });
    assert.equal(model.decode([2, 0, ...words, 2, 1, 1]), "A cat on a dog");
  } finally {
    await model.release();
  }
});

Deno.test("florence2GenerationConfig() reads generation_config.json, else text_config; 1024 new tokens without a length", () => {
  const fromFile = florence2GenerationConfig({ num_beams: 3, max_length: 40 }, { num_beams: 5 });
  assert.equal(fromFile.numBeams, 3);
  assert.equal(fromFile.maxLength, 40);
  assert.equal(fromFile.maxNewTokens, null);
  const fromText = florence2GenerationConfig(undefined, {
    num_beams: 3,
    no_repeat_ngram_size: 3,
    early_stopping: true,
  });
  assert.equal(fromText.earlyStopping, true);
  assert.equal(fromText.maxNewTokens, 1024);
});

Deno.test("Florence2CaptionModel.load() names what is wrong with a folder in one line", async () => {
  const bad = await Deno.makeTempDir({ prefix: "florence2-bad-" });
  try {
    await assert.rejects(() => Florence2CaptionModel.load(bad), ModelNotFoundError);
    await Deno.writeTextFile(join(bad, "config.json"), JSON.stringify({ model_type: "llava" }));
    await assert.rejects(
      () => Florence2CaptionModel.load(bad),
      /model_type "llava", not "florence2"/,
    );
    // A folder without the decoder part.
    for (
      const f of [
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "tokenizer.json",
      ]
    ) {
      await Deno.copyFile(join(dir, f), join(bad, f));
    }
    await Deno.mkdir(join(bad, "onnx"));
    for (const f of ["vision_encoder", "embed_tokens", "encoder_model"]) {
      await Deno.copyFile(join(dir, "onnx", `${f}.onnx`), join(bad, "onnx", `${f}.onnx`));
    }
    await assert.rejects(() => Florence2CaptionModel.load(bad), /decoder_model_merged\.onnx/);
    // A decoder with other input names.
    await Deno.copyFile(
      join(dir, "onnx", "encoder_model.onnx"),
      join(bad, "onnx", "decoder_model_merged.onnx"),
    );
    await assert.rejects(
      () => Florence2CaptionModel.load(bad),
      /has no input "encoder_hidden_states"/,
    );
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
