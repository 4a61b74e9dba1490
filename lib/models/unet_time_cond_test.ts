/**
 * The LCM guidance input of the UNet (`time_cond_proj_dim`, Diffusers 0.27 `TimestepEmbedding`
 * with `cond_proj`): config parsing, parameter names, and what `timestep_cond` does to the graph.
 */
import assert from "node:assert/strict";
import { SD15_UNET, TINY_SD15_UNET } from "../../tests/fixtures/configs.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor } from "../onnx/session.ts";
import { parseUnetConfig } from "./config.ts";
import { memoryWeights } from "./layers.ts";
import { randomWeights, unetParameterShapes } from "./random.ts";
import { buildUnet } from "./unet.ts";

const COND_DIM = 16;
const LCM_JSON = { ...TINY_SD15_UNET, time_cond_proj_dim: COND_DIM };

function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

type Feeds = Record<string, { data: Float32Array; dims: number[] }>;

async function run(model: ReturnType<typeof buildUnet>, ...feedSets: Feeds[]) {
  const session = await createSession(await serializeModel(model), { threads: 2 });
  try {
    const outs: Float32Array[] = [];
    for (const feeds of feedSets) {
      const hf: Record<string, HostTensor> = {};
      for (const [k, v] of Object.entries(feeds)) hf[k] = hostTensor("float32", v.data, v.dims);
      outs.push((await session.run(hf)).out_sample!.data as Float32Array);
    }
    return outs;
  } finally {
    await session.release();
  }
}

const B = 2;
const BASE_FEEDS: Feeds = {
  sample: { data: seeded(B * 4 * 8 * 8, 1), dims: [B, 4, 8, 8] },
  timestep: { data: Float32Array.of(499), dims: [1] },
  encoder_hidden_states: { data: seeded(B * 5 * 32, 2), dims: [B, 5, 32] },
};

Deno.test("parseUnetConfig() reads time_cond_proj_dim (null when absent, refuses 0)", () => {
  assert.equal(parseUnetConfig(TINY_SD15_UNET).timeCondProjDim, null);
  assert.equal(
    parseUnetConfig({ ...TINY_SD15_UNET, time_cond_proj_dim: null }).timeCondProjDim,
    null,
  );
  assert.equal(parseUnetConfig(LCM_JSON).timeCondProjDim, COND_DIM);
  assert.throws(
    () => parseUnetConfig({ ...TINY_SD15_UNET, time_cond_proj_dim: 0 }),
    (e: Error) => e instanceof RangeError && e.message.includes('"time_cond_proj_dim"'),
  );
  assert.throws(
    () => parseUnetConfig({ ...TINY_SD15_UNET, time_cond_proj_dim: 2.5 }),
    RangeError,
  );
});

Deno.test("unetParameterShapes() adds exactly Diffusers' time_embedding.cond_proj.weight", () => {
  // Diffusers: TimestepEmbedding.cond_proj = nn.Linear(cond_proj_dim, in_channels, bias=False),
  // in_channels = block_out_channels[0] for positional time embeddings.
  const plain = unetParameterShapes(TINY_SD15_UNET);
  const lcm = unetParameterShapes(LCM_JSON);
  const added = [...lcm.keys()].filter((k) => !plain.has(k));
  assert.deepEqual(added, ["time_embedding.cond_proj.weight"]);
  assert.deepEqual(lcm.get("time_embedding.cond_proj.weight"), [32, COND_DIM]);
  for (const [k, v] of plain) assert.deepEqual(lcm.get(k), v, k);
  // LCM_Dreamshaper_v7's UNet: SD 1.5's 686 tensors plus a [320, 256] cond_proj.
  const full = unetParameterShapes({ ...SD15_UNET, time_cond_proj_dim: 256 });
  assert.equal(full.size, 687);
  assert.deepEqual(full.get("time_embedding.cond_proj.weight"), [320, 256]);
  const rw = randomWeights(lcm, 0).get("time_embedding.cond_proj.weight");
  assert.deepEqual(rw?.shape, [32, COND_DIM]);
});

Deno.test("buildUnet() timestep_cond: a zero cond_proj gives the plain UNet, a non-zero one changes it", async () => {
  const plainWeights = randomWeights(unetParameterShapes(TINY_SD15_UNET), 7);
  const plain = buildUnet(parseUnetConfig(TINY_SD15_UNET), memoryWeights(plainWeights));
  const zero = new Map(plainWeights);
  zero.set("time_embedding.cond_proj.weight", {
    shape: [32, COND_DIM],
    data: new Float32Array(32 * COND_DIM),
  });
  const config = parseUnetConfig(LCM_JSON);
  const lcmZero = buildUnet(config, memoryWeights(zero));
  assert.ok(lcmZero.proto.graph.input.some((i) => i.name === "timestep_cond"));
  assert.ok(!plain.proto.graph.input.some((i) => i.name === "timestep_cond"));
  const cond = { data: seeded(B * COND_DIM, 3), dims: [B, COND_DIM] };
  const withCond = { ...BASE_FEEDS, timestep_cond: cond };
  const [ref] = await run(plain, BASE_FEEDS);
  const [z] = await run(lcmZero, withCond);
  const zd = maxDiff(z!, ref!);
  assert.ok(zd === 0, `zero cond_proj: maxdiff ${zd}, expected 0`);

  // A non-zero projection: the output moves, and only the items whose cond row changed.
  const nonZero = new Map(zero);
  nonZero.set("time_embedding.cond_proj.weight", {
    shape: [32, COND_DIM],
    data: seeded(32 * COND_DIM, 4),
  });
  const lcm = buildUnet(config, memoryWeights(nonZero));
  const cond2 = cond.data.slice();
  for (let j = COND_DIM; j < 2 * COND_DIM; j++) cond2[j] = cond2[j]! + 1;
  const [a, b] = await run(lcm, withCond, {
    ...BASE_FEEDS,
    timestep_cond: { data: cond2, dims: [B, COND_DIM] },
  });
  const item = 4 * 8 * 8;
  const moved = maxDiff(a!, ref!);
  assert.ok(moved > 1e-3, `non-zero cond_proj moved the output by only ${moved}`);
  assert.equal(maxDiff(a!.subarray(0, item), b!.subarray(0, item)), 0, "item 0 must not change");
  const moved1 = maxDiff(a!.subarray(item), b!.subarray(item));
  assert.ok(moved1 > 1e-3, `item 1's cond changed its output by only ${moved1}`);
});

Deno.test("buildUnet() adds cond_proj(timestep_cond) to the sinusoids before linear_1", async () => {
  // With cond_proj = identity (cond dim = block_out_channels[0] = 32), timestep t1 with
  // cond = proj(t2) - proj(t1) must give the output of timestep t2 with a zero cond, where proj
  // is Diffusers' get_timestep_embedding (flip_sin_to_cos, shift 0), computed here in float64.
  const json = { ...TINY_SD15_UNET, time_cond_proj_dim: 32 };
  const weights = randomWeights(unetParameterShapes(json), 8);
  const eye = new Float32Array(32 * 32);
  for (let r = 0; r < 32; r++) eye[r * 32 + r] = 1;
  weights.set("time_embedding.cond_proj.weight", { shape: [32, 32], data: eye });
  const model = buildUnet(parseUnetConfig(json), memoryWeights(weights));
  const proj = (t: number): number[] => {
    const half = 16;
    const args = Array.from(
      { length: half },
      (_, j) => t * Math.exp((-Math.log(10000) * j) / half),
    );
    return [...args.map(Math.cos), ...args.map(Math.sin)];
  };
  const [t1, t2] = [499, 261];
  const delta = proj(t2).map((v, j) => v - proj(t1)[j]!);
  const cond = new Float32Array(B * 32);
  for (let k = 0; k < B; k++) cond.set(delta, k * 32);
  const [a, b] = await run(
    model,
    { ...BASE_FEEDS, timestep_cond: { data: cond, dims: [B, 32] } },
    {
      ...BASE_FEEDS,
      timestep: { data: Float32Array.of(t2), dims: [1] },
      timestep_cond: { data: new Float32Array(B * 32), dims: [B, 32] },
    },
  );
  // float32 sinusoids of t = 499 differ from float64 ones by ~1e-5; measured 6e-6 at the output.
  const d = maxDiff(a!, b!);
  assert.ok(d < 1e-4, `t1 + cond vs t2: maxdiff ${d} >= 1e-4`);
  const [c] = await run(model, {
    ...BASE_FEEDS,
    timestep_cond: { data: new Float32Array(B * 32), dims: [B, 32] },
  });
  assert.ok(maxDiff(a!, c!) > 1e-2, "the two timesteps must give different outputs");
});
