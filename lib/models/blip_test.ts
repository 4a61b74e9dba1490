import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { type BlipConfig, parseBlipConfig } from "./blip_config.ts";
import {
  blipTextParameterShapes,
  buildBlipCrossKeyValues,
  buildBlipTextDecoder,
} from "./blip_text.ts";
import { blipVisionParameterShapes, buildBlipVisionModel } from "./blip_vision.ts";
import { normalizeBlipWeights } from "./blip_weights.ts";
import type { AttentionKernel } from "./layers.ts";

const DIR = "golden/models/tiny_blip";

interface Golden {
  preprocess: { gradient_64: { pixel_values: { shape: number[]; values: number[] } } };
  captions: Array<{
    prompt: string | null;
    decoder_prompt_ids: number[];
    generated_ids: number[];
    n_new_tokens: number;
    image_embeds: { shape: number[]; values: number[] };
    first_step_logits: { values: number[] };
    step_logits: Array<{ values: number[] }>;
  }>;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

async function tinyBlip(attention: AttentionKernel = "fused") {
  const config: BlipConfig = parseBlipConfig(readSharedJson(`${DIR}/config.json`));
  const file = await SafetensorsFile.open(sharedPath(`${DIR}/model.safetensors`));
  const weights = normalizeBlipWeights(tensorSources(file));
  const session = async (build: () => Parameters<typeof serializeModel>[0]) =>
    await createSession(await serializeModel(build()));
  const vision = await session(() => buildBlipVisionModel(config.vision, weights, { attention }));
  const cross = await session(() => buildBlipCrossKeyValues(config.text, weights));
  const decoder = await session(() => buildBlipTextDecoder(config.text, weights));
  const golden = readSharedJson<Golden>(`${DIR}/reference.json`);
  const release = async () => {
    await vision.release();
    await cross.release();
    await decoder.release();
    file.close();
  };
  return { config, vision, cross, decoder, golden, release };
}

function emptyPast(config: BlipConfig, rows: number): Record<string, HostTensor> {
  const h = config.text.numAttentionHeads;
  const d = config.text.hiddenSize / h;
  const feeds: Record<string, HostTensor> = {};
  for (let i = 0; i < config.text.numHiddenLayers; i++) {
    for (const kind of ["key", "value"]) {
      feeds[`past_${kind}.${i}`] = hostTensor("float32", new Float32Array(0), [rows, h, 0, d]);
    }
  }
  return feeds;
}

function ids(rows: number[][]): HostTensor {
  return hostTensor("int64", BigInt64Array.from(rows.flat(), BigInt), [
    rows.length,
    rows[0]!.length,
  ]);
}

for (const attention of ["fused", "onnx"] as const) {
  Deno.test({
    name: `buildBlipVisionModel() matches transformers' image_embeds (${attention} attention)`,
    ignore: !hasShared,
    fn: async () => {
      const m = await tinyBlip(attention);
      try {
        const pixels = m.golden.preprocess.gradient_64.pixel_values;
        const out = await m.vision.run({
          pixel_values: hostTensor("float32", Float32Array.from(pixels.values), pixels.shape),
        });
        const ref = m.golden.captions[0]!.image_embeds;
        assert.deepEqual(out.image_embeds!.dims, ref.shape);
        const d = maxDiff(out.image_embeds!.data as Float32Array, ref.values);
        console.log(`image_embeds maxdiff ${d}`);
        assert.ok(d <= 1e-4, `image_embeds maxdiff ${d}`);
      } finally {
        await m.release();
      }
    },
  });
}

Deno.test({
  name: "BLIP decoder with its KV cache matches transformers' logits at every greedy step",
  ignore: !hasShared,
  fn: async () => {
    const m = await tinyBlip();
    try {
      const pixels = m.golden.preprocess.gradient_64.pixel_values;
      const { image_embeds } = await m.vision.run({
        pixel_values: hostTensor("float32", Float32Array.from(pixels.values), pixels.shape),
      });
      const cross = await m.cross.run({ image_embeds: image_embeds! });
      for (const ref of m.golden.captions) {
        let feeds = { ...cross, ...emptyPast(m.config, 1) };
        let next = ref.decoder_prompt_ids;
        const generated = [...next];
        let worst = 0;
        for (let step = 0; step < ref.n_new_tokens; step++) {
          const out = await m.decoder.run({ ...feeds, input_ids: ids([next]) });
          const logits = out.logits!.data as Float32Array;
          if (step === 0) {
            const first = maxDiff(logits, ref.first_step_logits.values);
            assert.ok(first <= 1e-4, `first-step logits maxdiff ${first}`);
          }
          worst = Math.max(worst, maxDiff(logits, ref.step_logits[step]!.values));
          next = [argmax(logits)];
          generated.push(next[0]!);
          const past: Record<string, HostTensor> = {};
          for (const [k, v] of Object.entries(out)) {
            if (k.startsWith("present_")) past[k.replace("present_", "past_")] = v;
          }
          feeds = { ...cross, ...past };
        }
        console.log(`prompt ${JSON.stringify(ref.prompt)}: step logits maxdiff ${worst}`);
        assert.ok(worst <= 1e-4, `step logits maxdiff ${worst}`);
        assert.deepEqual(generated, ref.generated_ids);
      }
    } finally {
      await m.release();
    }
  },
});

Deno.test({
  name: "BLIP decoder: k rows per image share its cross-attention cache; rows are independent",
  ignore: !hasShared,
  fn: async () => {
    const m = await tinyBlip();
    try {
      const pixels = m.golden.preprocess.gradient_64.pixel_values;
      const one = Float32Array.from(pixels.values);
      // Two images: the golden one and its mirror image.
      const two = new Float32Array(one.length * 2);
      two.set(one);
      for (let i = 0; i < one.length; i++) two[one.length + i] = one[one.length - 1 - i]!;
      const { image_embeds } = await m.vision.run({
        pixel_values: hostTensor("float32", two, [2, ...pixels.shape.slice(1)]),
      });
      const cross = await m.cross.run({ image_embeds: image_embeds! });
      // 3 rows per image, each a different prompt of the same length.
      const prompts = [[215, 28, 110], [215, 26, 144], [215, 43, 94]];
      const rows = [...prompts, ...prompts];
      const batched = await m.decoder.run({
        ...cross,
        ...emptyPast(m.config, 6),
        input_ids: ids(rows),
      });
      const V = m.config.text.vocabSize;
      const embeds = image_embeds!.data as Float32Array;
      const perImage = embeds.length / 2;
      let worst = 0;
      for (let img = 0; img < 2; img++) {
        const single = await m.cross.run({
          image_embeds: hostTensor(
            "float32",
            embeds.slice(img * perImage, (img + 1) * perImage),
            [1, ...image_embeds!.dims.slice(1)],
          ),
        });
        for (let k = 0; k < 3; k++) {
          const alone = await m.decoder.run({
            ...single,
            ...emptyPast(m.config, 1),
            input_ids: ids([prompts[k]!]),
          });
          const r = img * 3 + k;
          const row = (batched.logits!.data as Float32Array).subarray(r * V, (r + 1) * V);
          worst = Math.max(worst, maxDiff(row, alone.logits!.data as Float32Array));
        }
      }
      // The two images give different logits for the same prompt (else the test shows nothing).
      const all = batched.logits!.data as Float32Array;
      const between = maxDiff(all.subarray(0, V), all.subarray(3 * V, 4 * V));
      assert.ok(between > 1e-3, `images differ by ${between}`);
      console.log(`batched vs single rows: maxdiff ${worst} (images differ by ${between})`);
      assert.ok(worst <= 1e-5, `maxdiff ${worst}`);
    } finally {
      await m.release();
    }
  },
});

Deno.test({
  name: "BLIP builders read exactly the checkpoint's tensors (shape tables agree with the file)",
  ignore: !hasShared,
  fn: async () => {
    const config = parseBlipConfig(readSharedJson(`${DIR}/config.json`));
    const file = await SafetensorsFile.open(sharedPath(`${DIR}/model.safetensors`));
    try {
      const stored = normalizeBlipWeights(tensorSources(file));
      const shapes = new Map([
        ...blipVisionParameterShapes(config.vision),
        ...blipTextParameterShapes(config.text),
      ]);
      assert.deepEqual([...shapes.keys()].sort(), [...stored.keys()].sort());
      for (const [name, shape] of shapes) {
        assert.deepEqual([...stored.get(name)!.shape], shape, name);
      }
    } finally {
      file.close();
    }
  },
});

Deno.test({
  name: "BLIP builders list missing, misshapen and unused weights in one TypeError",
  ignore: !hasShared,
  fn: async () => {
    const config = parseBlipConfig(readSharedJson(`${DIR}/config.json`));
    const file = await SafetensorsFile.open(sharedPath(`${DIR}/model.safetensors`));
    try {
      const weights = normalizeBlipWeights(tensorSources(file));
      weights.delete("vision_model.post_layernorm.bias");
      weights.set("vision_model.extra.weight", {
        dtype: "float32",
        shape: [1],
        data: new Float32Array(1),
      });
      const qkv = weights.get("vision_model.encoder.layers.0.self_attn.qkv.weight")!;
      weights.set("vision_model.encoder.layers.0.self_attn.qkv.weight", {
        ...qkv,
        shape: [32, 32],
      });
      assert.throws(
        () => buildBlipVisionModel(config.vision, weights),
        (e: Error) =>
          e instanceof TypeError &&
          e.message.includes('missing "vision_model.post_layernorm.bias"') &&
          e.message.includes("misshapen") &&
          e.message.includes('unused "vision_model.extra.weight"'),
      );
    } finally {
      file.close();
    }
  },
});

Deno.test("normalizeBlipWeights() refuses tensors of other BLIP heads", () => {
  const t = { dtype: "float32" as const, shape: [1], data: new Float32Array(1) };
  assert.throws(
    () => normalizeBlipWeights(new Map([["text_encoder.embeddings.word_embeddings.weight", t]])),
    (e: Error) => e instanceof TypeError && e.message.includes("BlipForConditionalGeneration"),
  );
});

Deno.test("parseBlipConfig() refuses other model types and mismatched widths", () => {
  assert.throws(() => parseBlipConfig({ model_type: "clip" }), RangeError);
  assert.throws(
    () => parseBlipConfig({ vision_config: { hidden_size: 1024, num_attention_heads: 16 } }),
    /encoder_hidden_size/,
  );
});
