import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { encodeConditioning, type PromptOptions } from "../pipeline/conditioning.ts";
import { makeScheduler } from "../pipeline/sampling.ts";
import { StableDiffusion } from "../pipeline/stable_diffusion.ts";
import { ClipTokenizer } from "../tokenizer/mod.ts";
import { SafetensorsFile, writeSafetensors } from "../weights/safetensors.ts";
import { loadEmbedding, placeEmbeddings } from "./embedding.ts";
import { prepareAdapters } from "./prepare.ts";

const TABLE = "text_model.embeddings.token_embedding.weight";

function ramp(n: number, width: number, start: number): Float32Array {
  return Float32Array.from({ length: n * width }, (_, i) => start + i / 8);
}

async function floats(source: TensorSource): Promise<Float32Array> {
  const bytes = (await readSource("t", source)).slice();
  return new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
}

Deno.test("loadEmbedding() reads every layout, with the token, count and vectors it holds", async () => {
  const dir = await Deno.makeTempDir();
  const cases: Array<{
    file: string;
    tensors: Record<string, number[]>;
    format: string;
    count: number;
    token?: string;
  }> = [
    {
      file: "EmbParams.safetensors",
      tensors: { emb_params: [3, 8] },
      format: "emb_params",
      count: 3,
    },
    { file: "learned.safetensors", tensors: { "<cat-toy>": [8] }, format: "diffusers", count: 1 },
    { file: "multi.safetensors", tensors: { "<m>": [4, 8] }, format: "diffusers", count: 4 },
    {
      file: "xl.safetensors",
      tensors: { clip_l: [2, 8], clip_g: [2, 12] },
      format: "sdxl",
      count: 2,
    },
  ];
  for (const c of cases) {
    const path = join(dir, c.file);
    const tensors = Object.fromEntries(
      Object.entries(c.tensors).map(([k, shape]) => [
        k,
        { dtype: "F16" as const, shape, data: ramp(shape.reduce((a, b) => a * b), 1, 1) },
      ]),
    );
    await writeSafetensors(path, tensors);
    const e = await loadEmbedding(path);
    assert.equal(e.format, c.format, c.file);
    assert.equal(e.count, c.count, c.file);
    assert.equal(e.name, c.file.replace(".safetensors", ""));
    const l = e.vectors.text_encoder!;
    assert.equal(l.shape[0], c.count);
    assert.equal(l.data[1], 1.125, `${c.file}: F16 vectors read wrong`);
    assert.equal((await loadEmbedding(path, { name: "tok" })).name, "tok");
  }
  const bad = join(dir, "two.safetensors");
  await writeSafetensors(bad, {
    a: { dtype: "F32", shape: [8], data: new Float32Array(8) },
    b: { dtype: "F32", shape: [8], data: new Float32Array(8) },
  });
  await assert.rejects(loadEmbedding(bad), /Cannot use "two.safetensors" as an embedding/);
});

Deno.test({
  name: "loadEmbedding() reads the real A1111, Diffusers, cloneofsimo and SDXL files",
  ignore: !hasShared,
  fn: async () => {
    const expect: Array<[string, string, number, number | undefined]> = [
      ["a1111_bad-hands-5.pt", "a1111", 2, undefined],
      ["a1111_bad_prompt_version2.pt", "a1111", 8, undefined],
      ["embeddingmerge_SD1.5-HairDetail.pt", "a1111", 3, undefined],
      ["EasyNegative.safetensors", "emb_params", 8, undefined],
      ["diffusers_learned_embeds_birb-style.bin", "diffusers", 1, undefined],
      ["cloneofsimo_lora_kiriko2.ti.pt", "diffusers", 1, undefined],
      ["sdxl_SDXL-Detail.safetensors", "sdxl", 2, 1280],
    ];
    for (const [file, format, count, g] of expect) {
      const e = await loadEmbedding(sharedPath(`fixtures/real/embeddings/${file}`));
      assert.equal(e.format, format, file);
      assert.equal(e.count, count, file);
      assert.deepEqual(e.vectors.text_encoder!.shape, [count, 768], file);
      assert.equal(e.vectors.text_encoder_2?.shape[1], g, file);
    }
    const birb = await loadEmbedding(
      sharedPath("fixtures/real/embeddings/diffusers_learned_embeds_birb-style.bin"),
    );
    assert.equal(birb.fileToken, "<birb-style>");
    // A LoRA is not an embedding.
    await assert.rejects(
      loadEmbedding(sharedPath("fixtures/real/lora/lycoris_lokr_smart_falcon_4.safetensors")),
      /looks like a LoRA; pass it with --lora/,
    );
  },
});

Deno.test("placeEmbeddings() appends N rows per embedding after the vocabulary", async () => {
  const dir = await Deno.makeTempDir();
  const a = join(dir, "a.safetensors");
  const b = join(dir, "b.safetensors");
  await writeSafetensors(a, { emb_params: { dtype: "F32", shape: [2, 4], data: ramp(2, 4, 10) } });
  await writeSafetensors(b, { "<b>": { dtype: "F32", shape: [4], data: ramp(1, 4, 20) } });
  const embeddings = [await loadEmbedding(a), await loadEmbedding(b)];
  const plan = await placeEmbeddings(embeddings, { text_encoder: { firstId: 5, width: 4 } });
  assert.deepEqual(plan.tokens, [{ name: "a", ids: [5, 6] }, { name: "b", ids: [7] }]);
  const table = ramp(5, 4, 0);
  const sources = new Map<string, TensorSource>([[TABLE, {
    dtype: "float32",
    shape: [5, 4],
    data: table,
  }]]);
  const out = await plan.transforms.text_encoder!.apply(sources);
  const edited = out.get(TABLE)!;
  assert.deepEqual(edited.shape, [8, 4]);
  const rows = await floats(edited);
  assert.deepEqual([...rows.subarray(0, 20)], [...table]);
  assert.deepEqual([...rows.subarray(20, 28)], [...ramp(2, 4, 10)]);
  assert.deepEqual([...rows.subarray(28, 32)], [...ramp(1, 4, 20)]);
  // Wrong width: an embedding for another family.
  await assert.rejects(
    placeEmbeddings(embeddings, { text_encoder: { firstId: 5, width: 8 } }),
    /its vectors are 4 wide, the text_encoder expects 8; it was made for another model family/,
  );
});

const PROMPT: Omit<PromptOptions, "prompt" | "negative"> = {
  steps: 1,
  clipSkip: 1,
  promptSyntax: "a1111",
  emphasis: "original",
};

Deno.test("a textual-inversion token changes the conditioning exactly by its rows (prompt and negative)", async () => {
  const model = await makeTinyModel("sd15", {
    seed: 11,
    tokenizerDir: await writeByteTokenizer(await Deno.makeTempDir()),
  });
  const tokenizer = await ClipTokenizer.fromDirectory(join(model, "tokenizer"));
  // An embedding whose 3 vectors are the table rows of the tokens of "fox": writing its name must
  // give exactly what writing "fox" gives.
  const ids = tokenizer.encode("fox");
  assert.equal(ids.length, 3);
  using weights = await SafetensorsFile.open(join(model, "text_encoder/model.safetensors"));
  const table = await weights.readFloat32(TABLE);
  const width = weights.info(TABLE).shape[1]!;
  const rows = new Float32Array(ids.length * width);
  ids.forEach((id, i) => rows.set(table.subarray(id * width, (id + 1) * width), i * width));
  const dir = await Deno.makeTempDir();
  const path = join(dir, "Vulpes.safetensors");
  await writeSafetensors(path, { emb_params: { dtype: "F32", shape: [3, width], data: rows } });

  const adapters = await prepareAdapters(
    { prompt: "a red Vulpes", negative: "blurry Vulpes", embedding: [{ path }] },
    {
      components: { text_encoder: join(model, "text_encoder/model.safetensors") },
      tables: { text_encoder: { firstId: tokenizer.vocabSize, width } },
    },
  );
  assert.deepEqual(adapters.tokens, [{ name: "Vulpes", ids: [49408, 49409, 49410] }]);
  assert.match(adapters.infotext["TI hashes"]!, /^Vulpes: [0-9a-f]{12}$/);
  const cacheDir = await Deno.makeTempDir();
  const plain = await StableDiffusion.open(model, { cacheDir, threads: 1 });
  const ti = await StableDiffusion.open(model, {
    cacheDir,
    threads: 1,
    transforms: adapters.transforms,
  });
  try {
    const scheduler = makeScheduler(plain.model.schedulerConfig, "euler", undefined);
    scheduler.setTimesteps(1);
    const size = { width: 64, height: 64 };
    const expected = (await encodeConditioning(plain, scheduler, {
      ...PROMPT,
      prompt: "a red fox",
      negative: "blurry fox",
    }, size))(0);
    const withToken = (await encodeConditioning(ti, scheduler, {
      ...PROMPT,
      prompt: "a red Vulpes",
      negative: "blurry Vulpes",
      embeddings: adapters.tokens,
    }, size))(0);
    const untouched = (await encodeConditioning(plain, scheduler, {
      ...PROMPT,
      prompt: "a red dog",
      negative: "blurry dog",
    }, size))(0);
    const diff = (x: Float32Array, y: Float32Array) =>
      x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
    const cond = diff(
      withToken.conds[0]!.cond.embedding.data,
      expected.conds[0]!.cond.embedding.data,
    );
    const uncond = diff(withToken.uncond.embedding.data, expected.uncond.embedding.data);
    assert.ok(cond <= 1e-6, `prompt maxdiff ${cond}`);
    assert.ok(uncond <= 1e-6, `negative maxdiff ${uncond}`);
    // The check can fail: another word gives another conditioning.
    assert.ok(
      diff(untouched.conds[0]!.cond.embedding.data, expected.conds[0]!.cond.embedding.data) > 1e-3,
    );
  } finally {
    await plain.release();
    await ti.release();
  }
});
