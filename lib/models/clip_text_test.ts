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
