import assert from "node:assert/strict";
import { parseUnetConfig } from "../models/config.ts";
import { memoryWeights } from "../models/layers.ts";
import { randomWeights, unetParameterShapes } from "../models/random.ts";
import { buildUnet } from "../models/unet.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { seededUniform } from "./autodiff/testing.ts";
import { loraParameterPairs, unetLoraModuleName } from "./lora_parameters.ts";
import { buildUnetLoraTrainingGraph } from "./unet_lora_graph.ts";

// A UNet in tiny_dummy's layout (two blocks, cross-attention in the second) with random weights.
const JSON_CONFIG = {
  block_out_channels: [4, 8],
  layers_per_block: 1,
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D"],
  up_block_types: ["CrossAttnUpBlock2D", "UpBlock2D"],
  cross_attention_dim: 6,
  attention_head_dim: 2,
  norm_num_groups: 2,
  sample_size: 8,
};
const config = parseUnetConfig(JSON_CONFIG);
const weights = randomWeights(unetParameterShapes(JSON_CONFIG), 3);
const SHAPE = [2, 4, 8, 6] as const;
const SEQ = 5;
const RANK = 2;
const ALPHA = 3;

/** Random down and up matrices for every attention projection (rank 2). */
function randomLora(): Record<string, Float32Array> {
  const lora: Record<string, Float32Array> = {};
  let k = 0;
  for (const [name, t] of weights) {
    const m = /^(.*attn[12]\.to_(q|k|v|out\.0))\.weight$/.exec(name);
    if (m === null) continue;
    const [out, inF] = t.shape as [number, number];
    const module = unetLoraModuleName(m[1]!);
    lora[`${module}.lora_down.weight`] = Float32Array.from(
      seededUniform(RANK * inF, ++k, -0.5, 0.5),
    );
    lora[`${module}.lora_up.weight`] = Float32Array.from(seededUniform(out * RANK, ++k, -0.5, 0.5));
  }
  return lora;
}

function feeds(lora: Record<string, Float32Array>): Record<string, HostTensor> {
  const n = SHAPE.reduce((a, b) => a * b, 1);
  const f: Record<string, HostTensor> = {
    sample: hostTensor("float32", Float32Array.from(seededUniform(n, 7, -2, 2)), SHAPE),
    timestep: hostTensor("float32", Float32Array.of(500, 71), [2]),
    encoder_hidden_states: hostTensor("float32", Float32Array.from(seededUniform(2 * SEQ * 6, 8)), [
      2,
      SEQ,
      6,
    ]),
    target: hostTensor("float32", Float32Array.from(seededUniform(n, 9, -2, 2)), SHAPE),
  };
  for (const [name, data] of Object.entries(lora)) {
    const module = name.replace(/\.lora_(down|up)\.weight$/, "");
    const path = [...weights.keys()].find((w) => unetLoraModuleName(w.slice(0, -7)) === module)!;
    const [out, inF] = weights.get(path)!.shape as [number, number];
    f[name] = hostTensor("float32", data, name.includes("lora_down") ? [RANK, inF] : [out, RANK]);
  }
  return f;
}

async function trainingSession(attention: "fused" | "onnx"): Promise<OnnxSession> {
  const lora = randomLora();
  const { model } = buildUnetLoraTrainingGraph(config, memoryWeights(weights), {
    modules: loraParameterPairs(lora),
    alpha: ALPHA,
    shape: SHAPE,
    sequenceLength: SEQ,
    attention,
  });
  return await createSession(await serializeModel(model), { threads: 1 });
}

Deno.test("the LoRA training graph's prediction equals the UNet with the LoRA merged into its weights", async () => {
  const lora = randomLora();
  const merged = new Map(weights);
  for (const [name, t] of weights) {
    const m = /^(.*)\.weight$/.exec(name);
    const module = m === null ? "" : unetLoraModuleName(m[1]!);
    const down = lora[`${module}.lora_down.weight`];
    const up = lora[`${module}.lora_up.weight`];
    if (down === undefined || up === undefined) continue;
    // W' = W + alpha / rank * up @ down
    const [out, inF] = t.shape as [number, number];
    const data = t.data.slice();
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inF; i++) {
        let s = 0;
        for (let r = 0; r < RANK; r++) s += up[o * RANK + r]! * down[r * inF + i]!;
        data[o * inF + i] = data[o * inF + i]! + (ALPHA / RANK) * s;
      }
    }
    merged.set(name, { shape: t.shape, data });
  }
  const plain = await createSession(
    await serializeModel(buildUnet(config, memoryWeights(merged))),
    {
      threads: 1,
    },
  );
  const training = await trainingSession("fused");
  try {
    const f = feeds(lora);
    const want = (await plain.run({
      sample: f.sample!,
      timestep: f.timestep!,
      encoder_hidden_states: f.encoder_hidden_states!,
    })).out_sample!.data as Float32Array;
    const got = (await training.run(f)).out_sample!.data as Float32Array;
    let diff = 0;
    want.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - got[i]!))));
    console.log(
      `prediction vs merged-weight UNet: maxdiff ${diff.toExponential(2)} (tolerance 1e-5)`,
    );
    assert.ok(diff <= 1e-5);
  } finally {
    await plain.release();
    await training.release();
  }
});

for (const attention of ["fused", "onnx"] as const) {
  Deno.test(`UNet LoRA gradients match finite differences of the loss (${attention} attention, float32)`, async () => {
    const lora = randomLora();
    const session = await trainingSession(attention);
    try {
      const base = await session.run(feeds(lora));
      const names = Object.keys(lora);
      // Directional derivatives: along the gradient itself and along a random direction.
      let norm = 0;
      for (const n of names) for (const g of base[`${n}.grad`]!.data as Float32Array) norm += g * g;
      norm = Math.sqrt(norm);
      const random: Record<string, Float32Array> = {};
      names.forEach((
        n,
        k,
      ) => (random[n] = Float32Array.from(seededUniform(lora[n]!.length, 100 + k))));
      let rnorm = 0;
      for (const n of names) for (const v of random[n]!) rnorm += v * v;
      rnorm = Math.sqrt(rnorm);
      for (
        const [label, dir, scale] of [
          ["gradient", (n: string) => base[`${n}.grad`]!.data as Float32Array, norm],
          ["random", (n: string) => random[n]!, rnorm],
        ] as const
      ) {
        const h = 1e-2;
        const moved = (sign: number) => {
          const out: Record<string, Float32Array> = {};
          for (const n of names) {
            out[n] = lora[n]!.map((v, i) => v + (sign * h * dir(n)[i]!) / scale);
          }
          return out;
        };
        const lp = (await session.run(feeds(moved(1)), ["loss"])).loss!.data[0] as number;
        const lm = (await session.run(feeds(moved(-1)), ["loss"])).loss!.data[0] as number;
        const numeric = (lp - lm) / (2 * h);
        let analytic = 0;
        for (const n of names) {
          const g = base[`${n}.grad`]!.data as Float32Array;
          const d = dir(n);
          for (let i = 0; i < g.length; i++) analytic += (g[i]! * d[i]!) / scale;
        }
        const err = Math.abs(numeric - analytic) / norm;
        console.log(
          `${attention}: d loss along the ${label} direction: analytic ${
            analytic.toExponential(4)
          }, ` +
            `numeric ${numeric.toExponential(4)}, diff ${
              err.toExponential(2)
            } of |grad| (tolerance 5e-3)`,
        );
        assert.ok(err <= 5e-3);
      }
    } finally {
      await session.release();
    }
  });
}

Deno.test("the fused and plain attention training graphs give the same loss and gradients", async () => {
  const lora = randomLora();
  const fused = await trainingSession("fused");
  const plain = await trainingSession("onnx");
  try {
    const a = await fused.run(feeds(lora));
    const b = await plain.run(feeds(lora));
    assert.ok(Math.abs((a.loss!.data[0] as number) - (b.loss!.data[0] as number)) <= 1e-6);
    let worst = 0;
    for (const name of Object.keys(lora)) {
      const x = a[`${name}.grad`]!.data as Float32Array;
      const y = b[`${name}.grad`]!.data as Float32Array;
      let scale = 1e-12;
      for (const v of y) scale = Math.max(scale, Math.abs(v));
      x.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - y[i]!) / scale)));
    }
    console.log(
      `fused vs plain attention gradients: max diff ${
        worst.toExponential(2)
      } of scale (tolerance 1e-4)`,
    );
    assert.ok(worst <= 1e-4);
  } finally {
    await fused.release();
    await plain.release();
  }
});

Deno.test("buildUnetLoraTrainingGraph() rejects LoRA modules that match no linear layer, or misfit", () => {
  const lora = randomLora();
  lora["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"] = new Float32Array(8);
  lora["lora_unet_mid_block_attentions_0_proj_in.lora_up.weight"] = new Float32Array(8);
  assert.throws(
    () =>
      buildUnetLoraTrainingGraph(config, memoryWeights(weights), {
        modules: loraParameterPairs(lora),
        alpha: 1,
        shape: SHAPE,
        sequenceLength: SEQ,
      }),
    /match no linear layer of the UNet: lora_unet_mid_block_attentions_0_proj_in/,
  );
  const misfit = randomLora();
  const key = Object.keys(misfit)[0]!;
  misfit[key] = new Float32Array(misfit[key]!.length + 1);
  assert.throws(
    () =>
      buildUnetLoraTrainingGraph(config, memoryWeights(weights), {
        modules: loraParameterPairs(misfit),
        alpha: 1,
        shape: SHAPE,
        sequenceLength: SEQ,
      }),
    /does not fit/,
  );
});
