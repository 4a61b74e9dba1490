import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import { buildClipTextModel, parseClipTextConfig } from "./clip_text.ts";

interface Golden {
  text_encoder: Array<{
    prompt: string;
    input_ids: number[];
    last_hidden_state: { shape: number[]; values: number[] };
    pooler_output: { shape: number[]; values: number[] };
    clip_skip1: { shape: number[]; values: number[] };
  }>;
}

/** reference.json holds Python's bare `-Infinity` in a scheduler config: not JSON. */
function readReference(relative: string): Golden {
  const text = Deno.readTextFileSync(sharedPath(relative));
  return JSON.parse(text.replace(/-?\bInfinity\b|\bNaN\b/g, "null")) as Golden;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const model of ["tiny_dummy", "tiny_sd"]) {
  Deno.test({
    name: `buildClipTextModel() matches transformers on ${model} (last, clip-skip, pooled)`,
    ignore: !hasShared,
    fn: async () => {
      const dir = `golden/models/${model}/pipeline/text_encoder`;
      const config = parseClipTextConfig(readSharedJson(`${dir}/config.json`));
      const file = await SafetensorsFile.open(sharedPath(`${dir}/model.safetensors`));
      const built = buildClipTextModel(config, tensorSources(file));
      const session = await createSession(await serializeModel(built));
      const golden = readReference(`golden/models/${model}/reference.json`);
      try {
        const L = config.numHiddenLayers;
        for (const ref of golden.text_encoder) {
          const ids = BigInt64Array.from(ref.input_ids, (v) => BigInt(v));
          const out = await session.run({
            input_ids: hostTensor("int64", ids, [1, ids.length]),
          });
          const last = maxDiff(
            out.last_hidden_state!.data as Float32Array,
            ref.last_hidden_state.values,
          );
          const pooled = maxDiff(out.pooler_output!.data as Float32Array, ref.pooler_output.values);
          const skip = maxDiff(
            out[`normed_hidden_states.${L - 1}`]!.data as Float32Array,
            ref.clip_skip1.values,
          );
          const msg = `"${ref.prompt}": maxdiff last ${last}, pooled ${pooled}, clip_skip1 ${skip}`;
          assert.ok(last <= 1e-4 && pooled <= 1e-4 && skip <= 1e-4, msg);
        }
      } finally {
        await session.release();
        file.close();
      }
    },
  });
}

async function tinySd() {
  const dir = "golden/models/tiny_sd/pipeline/text_encoder";
  const config = parseClipTextConfig(readSharedJson(`${dir}/config.json`));
  const file = await SafetensorsFile.open(sharedPath(`${dir}/model.safetensors`));
  return { config, file, golden: readReference("golden/models/tiny_sd/reference.json") };
}

function rows(data: Float32Array, width: number, from: number, to: number): Float32Array {
  return data.subarray(from * width, to * width);
}

Deno.test({
  name: "buildClipTextModel() handles dynamic batch and sequence length like transformers",
  ignore: !hasShared,
  fn: async () => {
    const { config, file, golden } = await tinySd();
    const session = await createSession(
      await serializeModel(buildClipTextModel(config, tensorSources(file))),
    );
    try {
      const H = config.hiddenSize;
      const [a, b] = [golden.text_encoder[0]!, golden.text_encoder[2]!];
      // Batch of two padded prompts: each row equals its single-prompt reference.
      const ids = BigInt64Array.from([...a.input_ids, ...b.input_ids], (v) => BigInt(v));
      const out = await session.run({ input_ids: hostTensor("int64", ids, [2, 77]) });
      const last = out.last_hidden_state!.data as Float32Array;
      const pooled = out.pooler_output!.data as Float32Array;
      const d1 = Math.max(
        maxDiff(rows(last, 77 * H, 0, 1), a.last_hidden_state.values),
        maxDiff(rows(last, 77 * H, 1, 2), b.last_hidden_state.values),
        maxDiff(rows(pooled, H, 0, 1), a.pooler_output.values),
        maxDiff(rows(pooled, H, 1, 2), b.pooler_output.values),
      );
      assert.ok(d1 <= 1e-4, `batch 2: maxdiff ${d1}`);
      // Unpadded ids (up to the EOS): the causal mask makes every row equal the padded run's.
      const n = a.input_ids.indexOf(49407) + 1;
      const short = BigInt64Array.from(a.input_ids.slice(0, n), (v) => BigInt(v));
      const out2 = await session.run({ input_ids: hostTensor("int64", short, [1, n]) });
      assert.deepEqual(out2.last_hidden_state!.dims, [1, n, H]);
      const d2 = Math.max(
        maxDiff(
          out2.last_hidden_state!.data as Float32Array,
          a.last_hidden_state.values.slice(0, n * H),
        ),
        maxDiff(out2.pooler_output!.data as Float32Array, a.pooler_output.values),
      );
      assert.ok(d2 <= 1e-4, `sequence ${n}: maxdiff ${d2}`);
    } finally {
      await session.release();
      file.close();
    }
  },
});

function layerNorm(x: Float32Array, width: number, eps: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    const row = x.subarray(r * width, (r + 1) * width);
    let mean = 0;
    for (const v of row) mean += v;
    mean /= width;
    let variance = 0;
    for (const v of row) variance += (v - mean) ** 2;
    variance /= width;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < width; c++) out[r * width + c] = (row[c]! - mean) * inv;
  }
  return out;
}

Deno.test({
  name: "buildClipTextModel() with projection gives text_embeds and raw hidden states",
  ignore: !hasShared,
  fn: async () => {
    const { config, file, golden } = await tinySd();
    const H = config.hiddenSize;
    const P = 8;
    const proj = Float32Array.from({ length: P * H }, (_, i) => Math.cos(i * 0.37) / 4);
    const weights = tensorSources(file);
    weights.set("text_projection.weight", { dtype: "float32", shape: [P, H], data: proj });
    const model = buildClipTextModel({ ...config, projectionDim: P }, weights);
    assert.equal(model.proto.graph.name, "CLIPTextModelWithProjection");
    const session = await createSession(await serializeModel(model));
    try {
      const ref = golden.text_encoder[0]!;
      const ids = BigInt64Array.from(ref.input_ids, (v) => BigInt(v));
      const out = await session.run({ input_ids: hostTensor("int64", ids, [1, 77]) });
      const pooled = out.pooler_output!.data as Float32Array;
      const expect = Array.from({ length: P }, (_, r) => {
        let s = 0;
        for (let c = 0; c < H; c++) s += proj[r * H + c]! * pooled[c]!;
        return s;
      });
      const dProj = maxDiff(out.text_embeds!.data as Float32Array, expect);
      assert.ok(dProj <= 1e-5, `text_embeds maxdiff ${dProj}`);
      // hidden_states.L is the last layer before final_layer_norm (whose weights are random,
      // so compare through the pre-affine normalisation of both sides).
      const L = config.numHiddenLayers;
      const raw = out[`hidden_states.${L}`]!.data as Float32Array;
      const gamma = await file.readFloat32("text_model.final_layer_norm.weight");
      const beta = await file.readFloat32("text_model.final_layer_norm.bias");
      const normed = layerNorm(raw, H, config.layerNormEps).map((v, i) =>
        v * gamma[i % H]! + beta[i % H]!
      );
      const dRaw = maxDiff(normed, ref.last_hidden_state.values);
      assert.ok(dRaw <= 1e-4, `final_layer_norm(hidden_states.${L}) maxdiff ${dRaw}`);
      assert.equal(Object.keys(out).filter((k) => k.startsWith("hidden_states.")).length, L + 1);
    } finally {
      await session.release();
      file.close();
    }
  },
});

/** One layer whose attention adds 0 and whose MLP is fc2(act(fc1(LN(h)))) with identities. */
function activationProbe(act: string) {
  const H = 4;
  const config = parseClipTextConfig({
    hidden_size: H,
    intermediate_size: H,
    num_attention_heads: 1,
    num_hidden_layers: 1,
    vocab_size: 5,
    max_position_embeddings: 3,
    hidden_act: act,
  });
  const w = new Map<string, { dtype: "float32"; shape: number[]; data: Float32Array }>();
  const put = (name: string, shape: number[], fill: (i: number) => number) =>
    w.set(name, {
      dtype: "float32",
      shape,
      data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => fill(i)),
    });
  const eye = (i: number) => (i % (H + 1) === 0 ? 1 : 0);
  put("text_model.embeddings.token_embedding.weight", [5, H], (i) => Math.sin(i * 1.3) * 3);
  put("text_model.embeddings.position_embedding.weight", [3, H], (i) => Math.cos(i) * 2);
  const pre = "text_model.encoder.layers.0";
  for (const p of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
    put(`${pre}.self_attn.${p}.weight`, [H, H], () => 0);
    put(`${pre}.self_attn.${p}.bias`, [H], () => 0);
  }
  for (const ln of [`${pre}.layer_norm1`, `${pre}.layer_norm2`, "text_model.final_layer_norm"]) {
    put(`${ln}.weight`, [H], () => 1);
    put(`${ln}.bias`, [H], () => 0);
  }
  put(`${pre}.mlp.fc1.weight`, [H, H], eye);
  put(`${pre}.mlp.fc1.bias`, [H], () => 0);
  put(`${pre}.mlp.fc2.weight`, [H, H], eye);
  put(`${pre}.mlp.fc2.bias`, [H], () => 0);
  return { config, weights: w, H };
}

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead (|x| < 4 here).
  let sum = x;
  let term = x;
  for (let n = 1; n < 200; n++) {
    term *= -x * x / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

const ACTIVATIONS: Record<string, (x: number) => number> = {
  quick_gelu: (x) => x / (1 + Math.exp(-1.702 * x)),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_new: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
};

for (const [act, f] of Object.entries(ACTIVATIONS)) {
  Deno.test(`buildClipTextModel() applies hidden_act "${act}" as transformers defines it`, async () => {
    const { config, weights, H } = activationProbe(act);
    const session = await createSession(await serializeModel(buildClipTextModel(config, weights)));
    try {
      const ids = new BigInt64Array([0n, 3n, 4n]);
      const out = await session.run({ input_ids: hostTensor("int64", ids, [1, 3]) });
      const h0 = out["hidden_states.0"]!.data as Float32Array;
      const h1 = out["hidden_states.1"]!.data as Float32Array;
      const ln = layerNorm(h0, H, config.layerNormEps);
      const expect = Array.from(h0, (v, i) => v + f(ln[i]!));
      const diff = maxDiff(h1, expect);
      assert.ok(diff <= 1e-5, `${act}: maxdiff ${diff}`);
    } finally {
      await session.release();
    }
  });
}

Deno.test("buildClipTextModel() lists missing, misshapen and unused weights together", () => {
  const { config, weights } = activationProbe("gelu");
  weights.delete("text_model.encoder.layers.0.mlp.fc1.bias");
  weights.set("text_model.encoder.layers.0.mlp.fc2.bias", {
    dtype: "float32",
    shape: [3],
    data: new Float32Array(3),
  });
  weights.set("extra.weight", { dtype: "float32", shape: [1], data: new Float32Array(1) });
  assert.throws(
    () => buildClipTextModel(config, weights),
    (e: Error) =>
      e instanceof TypeError &&
      e.message.includes('missing "text_model.encoder.layers.0.mlp.fc1.bias"') &&
      e.message.includes(
        'misshapen "text_model.encoder.layers.0.mlp.fc2.bias" [3] (expected [4])',
      ) &&
      e.message.includes('unused "extra.weight"'),
  );
});

Deno.test({
  name: "buildClipTextModel() float16 graph stays within 5e-3 of transformers (fp32 norms)",
  ignore: !hasShared,
  fn: async () => {
    const { config, file, golden } = await tinySd();
    const weights = tensorSources(file, { floatType: "float16" });
    const model = buildClipTextModel(config, weights, { floatType: "float16" });
    assert.ok(model.initializers.every((i) => i.source.dtype === "float16"));
    const session = await createSession(await serializeModel(model));
    try {
      const ref = golden.text_encoder[0]!;
      const ids = BigInt64Array.from(ref.input_ids, (v) => BigInt(v));
      const out = await session.run({ input_ids: hostTensor("int64", ids, [1, 77]) });
      assert.equal(out.last_hidden_state!.type, "float32");
      const d = Math.max(
        maxDiff(out.last_hidden_state!.data as Float32Array, ref.last_hidden_state.values),
        maxDiff(out.pooler_output!.data as Float32Array, ref.pooler_output.values),
      );
      assert.ok(d <= 5e-3, `fp16 maxdiff ${d}`);
      assert.throws(
        () => buildClipTextModel(config, weights),
        /is float16 but the graph is float32/,
      );
    } finally {
      await session.release();
      file.close();
    }
  },
});
