/**
 * CLIP text encoder: graph build time, and session creation cold (write the model with
 * external data, then let ORT load and optimise it) versus cached (`createCachedSession` hit,
 * with and without ORT's saved optimised model). Two sizes with random F32 weights written once
 * to a temp .safetensors: the tiny test config and SD 1.5's ViT-L/14 text encoder (123 M
 * parameters, 492 MB).
 *
 * Run: deno bench --allow-all bench/onnx_bench.ts
 */
import { join } from "node:path";
import {
  buildClipTextModel,
  type ClipTextConfig,
  parseClipTextConfig,
} from "../lib/models/clip_text.ts";
import {
  cacheKey,
  createCachedSession,
  createSession,
  fileIdentity,
  tensorSources,
  writeModel,
} from "../lib/onnx/mod.ts";
import { SafetensorsFile, writeSafetensors } from "../lib/weights/safetensors.ts";

const CONFIGS: Record<string, Record<string, unknown>> = {
  tiny: {
    hidden_size: 32,
    intermediate_size: 64,
    num_attention_heads: 8,
    num_hidden_layers: 3,
  },
  "ViT-L": {
    hidden_size: 768,
    intermediate_size: 3072,
    num_attention_heads: 12,
    num_hidden_layers: 12,
  },
};

function shapes(c: ClipTextConfig): Array<[string, number[]]> {
  const H = c.hiddenSize;
  const out: Array<[string, number[]]> = [
    ["text_model.embeddings.token_embedding.weight", [c.vocabSize, H]],
    ["text_model.embeddings.position_embedding.weight", [c.maxPositionEmbeddings, H]],
    ["text_model.final_layer_norm.weight", [H]],
    ["text_model.final_layer_norm.bias", [H]],
  ];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `text_model.encoder.layers.${i}`;
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      out.push([`${p}.self_attn.${proj}.weight`, [H, H]], [`${p}.self_attn.${proj}.bias`, [H]]);
    }
    for (const ln of ["layer_norm1", "layer_norm2"]) {
      out.push([`${p}.${ln}.weight`, [H]], [`${p}.${ln}.bias`, [H]]);
    }
    out.push([`${p}.mlp.fc1.weight`, [c.intermediateSize, H]], [`${p}.mlp.fc1.bias`, [
      c.intermediateSize,
    ]]);
    out.push([`${p}.mlp.fc2.weight`, [H, c.intermediateSize]], [`${p}.mlp.fc2.bias`, [H]]);
  }
  return out;
}

let seed = 1;
function random(n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    a[i] = (seed / 2 ** 32 - 0.5) * scale;
  }
  return a;
}

const root = await Deno.makeTempDir({ prefix: "denoise-onnx-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

for (const [size, json] of Object.entries(CONFIGS)) {
  const config = parseClipTextConfig(json);
  const path = join(root, `${size}.safetensors`);
  await writeSafetensors(
    path,
    shapes(config).map(([name, shape]) => ({
      name,
      dtype: "F32" as const,
      shape,
      data: random(shape.reduce((a, b) => a * b, 1), 0.04),
    })),
  );
  const file = await SafetensorsFile.open(path);
  const sources = tensorSources(file);
  const build = () => buildClipTextModel(config, sources);
  const heavy = size === "tiny" ? {} : { n: 5, warmup: 1 };
  let run = 0;

  Deno.bench(`build CLIP graph (${size})`, { group: `build ${size}` }, () => {
    build();
  });

  Deno.bench(
    `session cold: write model + create session (${size})`,
    { group: `session ${size}`, baseline: true, ...heavy },
    async () => {
      const written = await writeModel(build(), join(root, `cold-${size}-${run++}`, "model.onnx"));
      await (await createSession(written.path)).release();
    },
  );

  const cacheDir = join(root, `cache-${size}`);
  const key = cacheKey({ weights: await fileIdentity(path), builder: "clip_text", size });
  await (await createCachedSession(cacheDir, key, build)).session.release(); // fill the cache
  const plainKey = `${key}-plain`;
  await (await createCachedSession(cacheDir, plainKey, build, { cacheOptimized: false })).session
    .release();

  Deno.bench(
    `session cached, ORT-optimised model (${size})`,
    { group: `session ${size}`, ...heavy },
    async () => {
      const { session, optimizedHit } = await createCachedSession(cacheDir, key, build);
      if (!optimizedHit) throw new Error("expected a cached optimised model");
      await session.release();
    },
  );

  Deno.bench(
    `session cached, optimise at load (${size})`,
    { group: `session ${size}`, ...heavy },
    async () => {
      const { session, hit } = await createCachedSession(cacheDir, plainKey, build, {
        cacheOptimized: false,
      });
      if (!hit) throw new Error("expected a cache hit");
      await session.release();
    },
  );
}
