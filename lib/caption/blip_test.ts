import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { readAllTensors, writeTorchCheckpoint } from "../convert/testing.ts";
import { decodeImage, type RawImage } from "../image/codec.ts";
import { createRandomBlip, TINY_BLIP_CONFIG } from "../models/random_blip.ts";
import { BlipCaptionModel } from "./blip.ts";
import { beamSearch } from "./beam_search.ts";
import { captionImages } from "./caption.ts";
import { resolveGenerationConfig } from "./generation_config.ts";
import { greedySearch } from "./greedy_search.ts";
import type { TokenScorer } from "./token_scorer.ts";

const DIR = "golden/models/tiny_blip";

interface GoldenCaption {
  prompt: string | null;
  decoder_prompt_ids: number[];
  generated_ids: number[];
  text: string;
  step_logits: Array<{ values: number[] }>;
}

function golden(): GoldenCaption[] {
  return readSharedJson<{ captions: GoldenCaption[] }>(`${DIR}/reference.json`).captions;
}

async function gradient(): Promise<RawImage> {
  return await decodeImage(await Deno.readFile(sharedPath(`${DIR}/gradient_64x64.png`)), {
    channels: 4,
  });
}

/** A 64x64 image unlike the golden one (a checkerboard). */
function checkerboard(): RawImage {
  const data = new Uint8Array(64 * 64 * 3);
  for (let i = 0; i < 64 * 64; i++) {
    const on = ((i % 64 >> 3) + (Math.floor(i / 64) >> 3)) % 2 === 1;
    data.fill(on ? 230 : 20, i * 3, i * 3 + 3);
  }
  return { width: 64, height: 64, channels: 3, data };
}

Deno.test({
  name: "BLIP captions equal transformers' greedy generate, with and without a prompt",
  ignore: !hasShared,
  fn: async () => {
    const model = await BlipCaptionModel.load(sharedPath(DIR));
    try {
      const image = await gradient();
      for (const ref of golden()) {
        const prompt = ref.prompt ?? undefined;
        const [result] = await captionImages(model, [image], {
          maxNewTokens: 12,
          ...(prompt === undefined ? {} : { prompt }),
        });
        assert.deepEqual(result!.ids, ref.generated_ids, `prompt ${ref.prompt}`);
        assert.equal(result!.text, ref.text);
        // The logits of every step, through the same scorer, within 1e-4.
        assert.deepEqual(model.promptIds(prompt), ref.decoder_prompt_ids);
        const encoded = await model.encode([image], { prompt });
        const config = resolveGenerationConfig(model.generationConfig, { maxNewTokens: 12 });
        const { scores } = await greedySearch(encoded.scorer, [encoded.promptIds], {
          config,
          eosTokenIds: model.eosTokenIds,
          padTokenId: model.padTokenId,
          keepScores: true,
        });
        let worst = 0;
        scores.forEach((s, step) => {
          ref.step_logits[step]!.values.forEach((v, i) => {
            worst = Math.max(worst, Math.abs(s[i]! - v));
          });
        });
        console.log(
          `prompt ${JSON.stringify(ref.prompt)}: ${scores.length} steps, logits maxdiff ${worst}`,
        );
        assert.equal(scores.length, ref.step_logits.length);
        assert.ok(worst <= 1e-4, `maxdiff ${worst}`);
      }
    } finally {
      await model.release();
    }
  },
});

Deno.test({
  name: "BLIP batches: an image's caption does not depend on the other images of its batch",
  ignore: !hasShared,
  fn: async () => {
    const model = await BlipCaptionModel.load(sharedPath(DIR));
    try {
      const image = await gradient();
      const other = checkerboard();
      const ref = golden()[0]!;
      const results = await captionImages(model, [other, image, other, image, image], {
        maxNewTokens: 12,
        batchSize: 3,
      });
      assert.deepEqual(results[1]!.ids, ref.generated_ids);
      assert.deepEqual(results[3]!.ids, ref.generated_ids);
      assert.deepEqual(results[4]!.ids, ref.generated_ids);
      assert.deepEqual(results[0]!.ids, results[2]!.ids);
      assert.notDeepEqual(results[0]!.ids, ref.generated_ids);
      // Without max_new_tokens, text_config's max_length (20, prompt included) applies.
      const [long] = await captionImages(model, [image]);
      assert.equal(long!.ids.length, 20);
      assert.deepEqual(long!.ids.slice(0, 13), ref.generated_ids);
    } finally {
      await model.release();
    }
  },
});

/** A scorer that recomputes every sequence from scratch (no cache reuse across steps). */
function uncached(model: BlipCaptionModel, images: RawImage[]): TokenScorer {
  return {
    vocabSize: model.config.text.vocabSize,
    async next(sequences) {
      const { scorer } = await model.encode(images);
      return await scorer.next(sequences, sequences.map((_, r) => r));
    },
  };
}

Deno.test({
  name: "BLIP beam search with the reordered KV cache equals recomputing every step",
  ignore: !hasShared,
  fn: async () => {
    const model = await BlipCaptionModel.load(sharedPath(DIR));
    try {
      const images = [await gradient(), checkerboard()];
      for (const numBeams of [2, 4]) {
        const config = resolveGenerationConfig(model.generationConfig, {
          numBeams,
          maxNewTokens: 10,
        });
        const setup = { config, eosTokenIds: model.eosTokenIds, padTokenId: model.padTokenId };
        const encoded = await model.encode(images, { prompt: "a picture of" });
        const prompts = images.map(() => encoded.promptIds);
        const cached = await beamSearch(encoded.scorer, prompts, setup);
        const plain = await beamSearch(uncached(model, images), prompts, setup);
        assert.deepEqual(cached.sequences, plain.sequences, `${numBeams} beams`);
        const d = Math.max(
          ...cached.sequenceScores!.map((s, i) => Math.abs(s - plain.sequenceScores![i]!)),
        );
        assert.ok(d < 1e-5, `sequence scores differ by ${d}`);
        // caption() runs the same search.
        const results = await captionImages(model, images, {
          numBeams,
          maxNewTokens: 10,
          prompt: "a picture of",
        });
        assert.deepEqual(results.map((r) => r.ids), cached.sequences);
      }
    } finally {
      await model.release();
    }
  },
});

Deno.test({
  name: "BLIP loads pytorch_model.bin (tied decoder bias) and caches built graphs",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      for (
        const f of [
          "config.json",
          "preprocessor_config.json",
          "vocab.txt",
          "tokenizer_config.json",
          "special_tokens_map.json",
        ]
      ) {
        await Deno.copyFile(sharedPath(`${DIR}/${f}`), join(dir, f));
      }
      const tensors = await readAllTensors(sharedPath(`${DIR}/model.safetensors`));
      const bias = tensors.find((t) => t.name === "text_decoder.cls.predictions.bias")!;
      // torch.save writes the tied alias too, as transformers 4.30's state_dict has both.
      tensors.push({ ...bias, name: "text_decoder.cls.predictions.decoder.bias" });
      await writeTorchCheckpoint(join(dir, "pytorch_model.bin"), tensors);
      const ref = golden()[1]!;
      const image = await gradient();
      const cacheDir = join(dir, "cache");
      for (let run = 0; run < 2; run++) {
        const model = await BlipCaptionModel.load(dir, { cacheDir });
        try {
          const [r] = await captionImages(model, [image], {
            maxNewTokens: 12,
            prompt: "a picture of",
          });
          assert.deepEqual(r!.ids, ref.generated_ids, `run ${run}`);
        } finally {
          await model.release();
        }
      }
      const entries = [...Deno.readDirSync(join(cacheDir, "graphs"))].map((e) => e.name);
      assert.equal(entries.length, 3, `cache entries: ${entries}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "BlipCaptionModel.load() refuses a folder of another architecture in one line",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const config = readSharedJson<Record<string, unknown>>(`${DIR}/config.json`);
      config["architectures"] = ["BlipForQuestionAnswering"];
      await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
      await assert.rejects(
        () => BlipCaptionModel.load(dir),
        (e: Error) =>
          e instanceof RangeError && e.message.includes("BlipForQuestionAnswering") &&
          !e.message.includes("\n"),
      );
      await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ model_type: "clip" }));
      await assert.rejects(() => BlipCaptionModel.load(dir), /not BlipForConditionalGeneration/);
      await Deno.remove(join(dir, "config.json"));
      await assert.rejects(() => BlipCaptionModel.load(dir), /Cannot find/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("BLIP on a random tiny model: prompts are continued and max_length applies", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await createRandomBlip(TINY_BLIP_CONFIG, dir, { seed: 3 });
    const model = await BlipCaptionModel.load(dir);
    try {
      // [DEC] = 62, then "a picture of" (ids 6, 7, 9 in the random vocabulary).
      assert.deepEqual(model.promptIds("a picture of"), [62, 6, 7, 9]);
      const image: RawImage = {
        width: 40,
        height: 20,
        channels: 3,
        data: new Uint8Array(2400).fill(90),
      };
      const [plain] = await captionImages(model, [image]);
      assert.equal(plain!.ids[0], 62);
      assert.ok(plain!.ids.length <= 8, "text_config max_length 8");
      const [prompted] = await captionImages(model, [image], {
        prompt: "a picture of",
        maxNewTokens: 3,
      });
      assert.deepEqual(prompted!.ids.slice(0, 4), [62, 6, 7, 9]);
      assert.ok(prompted!.ids.length <= 7);
      assert.ok(prompted!.text.startsWith("a picture of"), prompted!.text);
    } finally {
      await model.release();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "A BLIP scorer serves one search and says so when reused",
  ignore: !hasShared,
  fn: async () => {
    const model = await BlipCaptionModel.load(sharedPath(DIR));
    try {
      const { scorer, promptIds } = await model.encode([await gradient()]);
      await scorer.next([promptIds], [0]);
      await assert.rejects(() => scorer.next([promptIds], [0]), /serves one search/);
    } finally {
      await model.release();
    }
  },
});
