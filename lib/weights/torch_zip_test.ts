import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { zipSync } from "fflate";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { bytesToFloat32 } from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { UnsafePickleError } from "./pickle.ts";
import { isTensor, loadTorchFile, loadTorchStateDict, TorchArchive } from "./torch_zip.ts";

const enc = new TextEncoder();

function pk(...parts: Array<string | number[]>): Uint8Array {
  const chunks = parts.map((p) =>
    typeof p === "string" ? Uint8Array.from(p, (c) => c.charCodeAt(0)) : Uint8Array.from(p)
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function sbu(text: string): number[] {
  return [0x8c, text.length, ...enc.encode(text)];
}

/**
 * The pickle torch.save writes for one tensor (protocol 2): GLOBAL _rebuild_tensor_v2, then
 * MARK, the persistent id tuple ('storage', torch.<type>, key, 'cpu', numel) + BINPERSID,
 * storage offset, size tuple, stride tuple, requires_grad False, OrderedDict() hooks, TUPLE,
 * REDUCE.
 */
function tensorPickle(
  type: string,
  key: string,
  numel: number,
  offset: number,
  size: number[],
  stride: number[],
): Array<string | number[]> {
  const ints = (xs: number[]) =>
    xs.flatMap((x) => [0x4a, ...new Uint8Array(new Int32Array([x]).buffer)]);
  return [
    "ctorch._utils\n_rebuild_tensor_v2\n(",
    "(",
    sbu("storage"),
    `ctorch\n${type}\n`,
    sbu(key),
    sbu("cpu"),
    ints([numel]),
    "tQ",
    ints([offset]),
    "(",
    ints(size),
    "t(",
    ints(stride),
    "t",
    [0x89],
    "ccollections\nOrderedDict\n)R",
    "tR",
  ];
}

function archive(files: Record<string, Uint8Array>, level: 0 | 6 = 0): Uint8Array {
  return zipSync(files, { level });
}

/** A torch-layout archive: {"state_dict": {"w": 2x3 F32, "wt": its transpose, "h": F16 slice}}. */
function handMade(level: 0 | 6 = 0): Uint8Array {
  const pickle = pk(
    [0x80, 2],
    "}(",
    sbu("state_dict"),
    "}(",
    sbu("w"),
    ...tensorPickle("FloatStorage", "0", 6, 0, [2, 3], [3, 1]),
    sbu("wt"),
    ...tensorPickle("FloatStorage", "0", 6, 0, [3, 2], [1, 3]),
    sbu("h"),
    ...tensorPickle("HalfStorage", "1", 4, 1, [2], [2]),
    "u",
    sbu("epoch"),
    "K\x07u.",
  );
  return archive({
    "archive/data.pkl": pickle,
    "archive/data/0": new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer),
    // fp16 0, 1, 2, 3 -> view offset 1 stride 2 gives [1, 3]
    "archive/data/1": new Uint8Array(new Uint16Array([0, 0x3c00, 0x4000, 0x4200]).buffer),
    "archive/version": enc.encode("3\n"),
    "archive/byteorder": enc.encode("little"),
  }, level);
}

const f32 = (t: Tensor | undefined) => [...bytesToFloat32(t!.data, t!.dtype)];

Deno.test("loadTorchStateDict() rebuilds strided views contiguous, stored or deflated", async () => {
  for (const level of [0, 6] as const) {
    const sd = await loadTorchStateDict(handMade(level));
    assert.deepEqual([...sd.keys()], ["w", "wt", "h"]);
    assert.deepEqual(sd.get("w")!.shape, [2, 3]);
    assert.deepEqual(f32(sd.get("w")), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(sd.get("wt")!.shape, [3, 2]);
    assert.deepEqual(f32(sd.get("wt")), [1, 4, 2, 5, 3, 6]);
    assert.equal(sd.get("h")!.dtype, "F16");
    assert.deepEqual(f32(sd.get("h")), [1, 3]);
  }
  const root = await loadTorchFile(handMade()) as Map<string, unknown>;
  assert.equal(root.get("epoch"), 7);
  assert.ok(isTensor((root.get("state_dict") as Map<string, unknown>).get("w")));
});

Deno.test("TorchArchive rejects out-of-range views, missing storages and unsafe entries", async () => {
  const base = {
    "archive/data/0": new Uint8Array(24),
    "archive/version": enc.encode("3\n"),
  };
  const one = (t: Array<string | number[]>) => pk([0x80, 2], ...t, ".");
  await assert.rejects(
    () =>
      loadTorchFile(archive({
        ...base,
        "archive/data.pkl": one(tensorPickle("FloatStorage", "0", 6, 2, [2, 3], [3, 1])),
      })),
    /reaches element 8 of storage "0", which has 6/,
  );
  await assert.rejects(
    () =>
      loadTorchFile(archive({
        ...base,
        "archive/data.pkl": one(tensorPickle("FloatStorage", "9", 6, 0, [6], [1])),
      })),
    /references storage "9" but the archive has no entry "archive\/data\/9"/,
  );
  await assert.rejects(
    () =>
      loadTorchFile(archive({
        ...base,
        "archive/data.pkl": one(tensorPickle("DoubleStorage", "0", 6, 0, [6], [1])),
      })),
    /storage "0" needs 48 bytes, entry has 24/,
  );
  await assert.rejects(
    () =>
      loadTorchFile(
        archive({ ...base, "archive/data.pkl": one(["K\x01"]), "../evil": enc.encode("x") }),
      ),
    /unsafe entry name "\.\.\/evil"/,
  );
  await assert.rejects(
    () => loadTorchFile(archive({ ...base, "/etc/evil": enc.encode("x") })),
    /unsafe entry name "\/etc\/evil"/,
  );
  await assert.rejects(() => loadTorchFile(archive(base)), /expected one "<name>\/data\.pkl"/);
  await assert.rejects(() => loadTorchFile(new Uint8Array(100)), /end-of-central-directory/);
});

Deno.test("loadTorchFile() refuses a .ckpt whose pickle calls os.system, and nothing runs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const marker = join(dir, "pwned");
    const path = join(dir, "evil.ckpt");
    // A real-looking checkpoint: the state dict holds one tensor and the payload.
    const pickle = pk(
      [0x80, 2],
      "}(",
      sbu("w"),
      ...tensorPickle("FloatStorage", "0", 1, 0, [1], [1]),
      sbu("payload"),
      "cos\nsystem\n(",
      sbu(`touch ${marker}`),
      "tRu.",
    );
    await Deno.writeFile(
      path,
      archive({ "archive/data.pkl": pickle, "archive/data/0": new Uint8Array(4) }),
    );
    for (const load of [loadTorchFile, loadTorchStateDict, TorchArchive.open]) {
      await assert.rejects(
        () => load(path),
        (e: unknown) =>
          e instanceof UnsafePickleError && e.global === "os.system" &&
          e.message.includes(path),
      );
    }
    assert.ok(!existsSync(marker), "the marker file was created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTorchFile() reads numpy scalars as Lightning checkpoints store them", async () => {
  // pickle.dumps({'global_step': np.int64(470000), 'score': np.float64(1.5),
  //               'f': np.float32(0.25), 'b': np.bool_(True)}, protocol=2).hex(), numpy 2.4
  const hex =
    "80027d710028580b000000676c6f62616c5f737465707101636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7102636e756d70790a64747970650a71035802000000693871048988877105527106284b0358010000003c71074e4e4e4affffffff4affffffff4b0074710862635f636f646563730a656e636f64650a71095809000000c3b02b070000000000710a58060000006c6174696e31710b86710c52710d86710e52710f580500000073636f72657110680268035802000000663871118988877112527113284b0368074e4e4e4affffffff4affffffff4b007471146268095809000000000000000000c3b83f7115680b867116527117867118527119580100000066711a6802680358020000006634711b898887711c52711d284b0368074e4e4e4affffffff4affffffff4b0074711e62680958050000000000c2803e711f680b8671205271218671225271235801000000627124680268035802000000623171258988877126527127284b0358010000007c71284e4e4e4affffffff4affffffff4b00747129626809580100000001712a680b86712b52712c86712d52712e752e";
  const pickle = Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
  const root = await loadTorchFile(archive({ "archive/data.pkl": pickle }));
  assert.deepEqual(
    root,
    new Map<string, unknown>([["global_step", 470000], ["score", 1.5], ["f", 0.25], ["b", true]]),
  );
});

// Reference values: CPython 3.11 + numpy 2.4 reading the same archives with zipfile and a
// find_class-restricted pickle.Unpickler, storage bytes viewed with np.lib.stride_tricks and
// summed in float64 (no torch involved).
const REAL: Array<{
  file: string;
  count: number;
  key: string;
  dtype: string;
  shape: number[];
  sum: number;
  first: number[];
}> = [
  {
    file: "pickles/a1111_karlo_ViT-L-14_stats.th",
    count: 2,
    key: "1",
    dtype: "F32",
    shape: [768],
    sum: 360.4344074726105,
    first: [0.5112088918685913, 0.5527952313423157, 0.3962853252887726],
  },
  {
    file: "pickles/taesana_encoder.pth",
    count: 69,
    key: "2.weight",
    dtype: "F16",
    shape: [64, 32, 3, 3],
    sum: -67.09310680627823,
    first: [-0.04388427734375, -0.052215576171875, -0.0555419921875],
  },
  {
    file: "pickles/a1111_vae_approx_model.pt",
    count: 16,
    key: "conv1.weight",
    dtype: "F32",
    shape: [8, 4, 7, 7],
    sum: 2.8526150873467486,
    first: [0.006625134497880936, -0.004911966621875763, -0.03208731859922409],
  },
  {
    file: "lora/cloneofsimo_lora_kiriko2.text_encoder.pt",
    count: 96,
    key: "5",
    dtype: "F32",
    shape: [4, 768],
    sum: -0.9959169616849977,
    first: [0.08723220229148865, -0.05138392746448517, -0.02163607068359852],
  },
  {
    file: "embeddings/a1111_bad-hands-5.pt",
    count: 1,
    key: "string_to_param.*",
    dtype: "F32",
    shape: [2, 768],
    sum: -0.30692294931941433,
    first: [0.0113283796235919, -0.252994179725647, 0.11308833956718445],
  },
  {
    file: "embeddings/diffusers_learned_embeds_birb-style.bin",
    count: 1,
    key: "<birb-style>",
    dtype: "F32",
    shape: [768],
    sum: 0.5117834557313472,
    first: [0.17009150981903076, 0.00896500889211893, 0.07673729211091995],
  },
];

Deno.test({
  name: "loadTorchStateDict() reads the real torch.save fixtures with numpy-checked values",
  ignore: !hasShared,
  async fn() {
    for (const r of REAL) {
      const sd = await loadTorchStateDict(sharedPath(`fixtures/real/${r.file}`));
      assert.equal(sd.size, r.count, r.file);
      const t = sd.get(r.key)!;
      assert.equal(t.dtype, r.dtype, r.file);
      assert.deepEqual(t.shape, r.shape, r.file);
      const v = bytesToFloat32(t.data, t.dtype);
      const sum = v.reduce((a, b) => a + b, 0);
      const maxdiff = Math.max(...r.first.map((x, i) => Math.abs(x - v[i]!)));
      assert.ok(Math.abs(sum - r.sum) < 1e-6, `${r.file}: sum ${sum} vs ${r.sum}`);
      assert.ok(maxdiff < 1e-7, `${r.file}: first values maxdiff ${maxdiff}`);
    }
  },
});

Deno.test({
  name: "loadTorchFile() loads every real pickle, embedding and LoRA .pt fixture",
  ignore: !hasShared,
  async fn() {
    const files = [
      "pickles/a1111_karlo_ViT-L-14_stats.th",
      "pickles/a1111_test_empty.pt",
      "pickles/a1111_vae_approx_model.pt",
      "pickles/taesana_encoder.pth",
      "embeddings/a1111_bad-hands-5.pt",
      "embeddings/a1111_bad_prompt_version2.pt",
      "embeddings/embeddingmerge_SD1.5-HairDetail.pt",
      "embeddings/cloneofsimo_lora_kiriko2.ti.pt",
      "embeddings/diffusers_learned_embeds_birb-style.bin",
      "lora/cloneofsimo_lora_kiriko2.text_encoder.pt",
    ];
    for (const f of files) await loadTorchFile(sharedPath(`fixtures/real/${f}`));

    const empty = await loadTorchFile(sharedPath("fixtures/real/pickles/a1111_test_empty.pt"));
    assert.ok(empty instanceof Map && empty.size === 0);
    // A1111 embeddings: {string_to_token, string_to_param: {"*": [n, 768]}, name, step, ...}
    const emb = await loadTorchFile(
      sharedPath("fixtures/real/embeddings/embeddingmerge_SD1.5-HairDetail.pt"),
    ) as Map<string, unknown>;
    assert.equal(emb.get("name"), "_EmbeddingMerge_temp");
    assert.equal(emb.get("sd_checkpoint"), null);
    assert.deepEqual((emb.get("string_to_token") as Map<string, unknown>).get("*"), 265);
    const param = (emb.get("string_to_param") as Map<string, Tensor>).get("*")!;
    assert.deepEqual(param.shape, [3, 768]);
    const v2 = await loadTorchStateDict(
      sharedPath("fixtures/real/embeddings/a1111_bad_prompt_version2.pt"),
    );
    assert.deepEqual(v2.get("string_to_param.*")!.shape, [8, 768]);
    // The cloneofsimo LoRA is a plain list of alternating up [768, 4] / down [4, 768] weights.
    const lora = await loadTorchFile(
      sharedPath("fixtures/real/lora/cloneofsimo_lora_kiriko2.text_encoder.pt"),
    ) as Tensor[];
    assert.equal(lora.length, 96);
    assert.ok(lora.every((t, i) => t.shape.join() === (i % 2 ? "4,768" : "768,4")));
    // The karlo stats are a (mean, std) tuple; std must be positive.
    const [, std] = await loadTorchFile(
      sharedPath("fixtures/real/pickles/a1111_karlo_ViT-L-14_stats.th"),
    ) as Tensor[];
    assert.ok(bytesToFloat32(std!.data, "F32").every((x) => x > 0));
  },
});

Deno.test({
  name: "TorchArchive lists tensors without reading them and reads one on demand",
  ignore: !hasShared,
  async fn() {
    const ar = await TorchArchive.open(sharedPath("fixtures/real/pickles/taesana_encoder.pth"));
    try {
      const refs = ar.tensorRefs();
      assert.equal(refs.size, 69);
      const ref = refs.get("0.weight")!;
      assert.deepEqual(ref.shape, [32, 3, 3, 3]);
      assert.equal(ref.dtype, "F16");
      const t = await ar.readTensor(ref);
      assert.equal(t.data.byteLength, 32 * 27 * 2);
    } finally {
      ar.close();
    }
  },
});
