// The text encoder builder's ops (embedding Gather, position Slice, causal mask, quick-GELU,
// LayerNormalization, the pooler's GatherND) differentiated end to end on a random model.
import assert from "node:assert/strict";
import { buildClipTextModel, parseClipTextConfig } from "../models/clip_text.ts";
import { memoryWeights } from "../models/layers.ts";
import { clipTextParameterShapes, randomWeights } from "../models/random.ts";
import { DataType } from "../onnx/proto.ts";
import { GraphBuilder, type OnnxModel } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor } from "../onnx/session.ts";
import { gradientGraph } from "./autodiff/gradient_graph.ts";
import { mergeGraphs } from "./autodiff/merge_graphs.ts";
import { seededUniform } from "./autodiff/testing.ts";
import { appendMseLoss } from "./mse_loss.ts";

const JSON_CONFIG = {
  vocab_size: 40,
  hidden_size: 8,
  intermediate_size: 16,
  num_attention_heads: 2,
  num_hidden_layers: 2,
  max_position_embeddings: 6,
};

/** `model` with the named weights turned into graph inputs (so a test can feed them). */
function weightsAsInputs(model: OnnxModel, names: readonly string[]): OnnxModel {
  const moved = model.initializers.filter((w) => names.includes(w.name));
  const graph = model.proto.graph;
  return {
    proto: {
      ...model.proto,
      graph: {
        ...graph,
        input: [
          ...graph.input,
          ...moved.map(({ name, source }) => ({
            name,
            type: {
              tensorType: {
                elemType: DataType[source.dtype],
                shape: { dim: source.shape.map((d) => ({ dimValue: d })) },
              },
            },
          })),
        ],
      },
    },
    initializers: model.initializers.filter((w) => !names.includes(w.name)),
  };
}

Deno.test("CLIP text encoder gradients (last hidden state and pooled output) match finite differences", async () => {
  const config = parseClipTextConfig(JSON_CONFIG);
  const weights = randomWeights(clipTextParameterShapes(JSON_CONFIG, false), 5);
  const trained = [
    "text_model.embeddings.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.0.self_attn.q_proj.weight",
    "text_model.encoder.layers.1.mlp.fc1.weight",
  ];
  let model = weightsAsInputs(buildClipTextModel(config, memoryWeights(weights)), trained);
  model = appendMseLoss(model, "last_hidden_state", [2, 5, 8]);
  model = appendMseLoss(model, "pooler_output", [2, 8], {
    target: "pooled_target",
    output: "pooled_loss",
  });
  const sum = new GraphBuilder("total");
  sum.output(
    sum.op("Add", [{ name: "mse_loss", type: "float32" }, {
      name: "pooled_loss",
      type: "float32",
    }]),
    "total",
  );
  model = mergeGraphs(model, sum.build(), { keepBaseOutputs: true });
  const training = gradientGraph(model, {
    loss: "total",
    wrt: trained,
    inputShapes: { input_ids: [2, 5] },
  });
  const session = await createSession(await serializeModel(training), { threads: 1 });
  try {
    const feeds = (params: Record<string, Float32Array>): Record<string, HostTensor> => {
      const f: Record<string, HostTensor> = {
        input_ids: hostTensor(
          "int64",
          BigInt64Array.from([3, 7, 7, 39, 0, 5, 1, 39, 2, 2], BigInt),
          [2, 5],
        ),
        target: hostTensor("float32", Float32Array.from(seededUniform(80, 3)), [2, 5, 8]),
        pooled_target: hostTensor("float32", Float32Array.from(seededUniform(16, 4)), [2, 8]),
      };
      for (const name of trained) {
        f[name] = hostTensor("float32", params[name]!, weights.get(name)!.shape);
      }
      return f;
    };
    const params = Object.fromEntries(trained.map((n) => [n, weights.get(n)!.data]));
    const base = await session.run(feeds(params));
    for (const name of trained) {
      const g = base[`${name}.grad`]!.data as Float32Array;
      let norm = 0;
      for (const v of g) norm += v * v;
      norm = Math.sqrt(norm);
      assert.ok(norm > 0, `${name} has a gradient`);
      // d loss along the gradient's direction = |gradient|
      const h = 1e-2;
      const moved = (sign: number) => ({
        ...params,
        [name]: params[name]!.map((v, i) => v + (sign * h * g[i]!) / norm),
      });
      const lp = (await session.run(feeds(moved(1)), ["loss"])).loss!.data[0] as number;
      const lm = (await session.run(feeds(moved(-1)), ["loss"])).loss!.data[0] as number;
      const numeric = (lp - lm) / (2 * h);
      const err = Math.abs(numeric - norm) / norm;
      console.log(
        `${name}: |grad| ${norm.toExponential(4)}, numeric ${numeric.toExponential(4)}, diff ${
          err.toExponential(2)
        } (tolerance 5e-3)`,
      );
      assert.ok(err <= 5e-3);
    }
  } finally {
    await session.release();
  }
});
