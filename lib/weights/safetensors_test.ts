import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { f32ToF16 } from "../tensor/dtype.ts";
import { encodeSafetensors, SafetensorsFile, writeSafetensors } from "./safetensors.ts";

const REAL_FILES = [
  "golden/models/tiny_dummy/pipeline/text_encoder/model.safetensors",
  "golden/models/tiny_dummy/pipeline/unet/diffusion_pytorch_model.safetensors",
  "golden/models/tiny_dummy/pipeline/vae/diffusion_pytorch_model.safetensors",
  "golden/models/tiny_dummy/lora_kohya.safetensors",
  "golden/models/tiny_sd/pipeline/text_encoder/model.safetensors",
  "golden/models/tiny_sd/pipeline/unet/diffusion_pytorch_model.safetensors",
  "golden/models/tiny_sd/pipeline/vae/diffusion_pytorch_model.safetensors",
  "golden/models/tiny_sd/ldm/tiny_sd_ldm_fp16.safetensors",
  "golden/models/tiny_sd/lora_kohya.safetensors",
  "golden/models/taesd_random/diffusion_pytorch_model.safetensors",
  "fixtures/real/lora/cloneofsimo_lora_disney_inpainting.safetensors",
  "fixtures/real/lora/lycoris_lokr_smart_falcon_4.safetensors",
  "fixtures/real/embeddings/EasyNegative.safetensors",
  "fixtures/real/embeddings/sdxl_SDXL-Detail.safetensors",
];

/** Hand-made file: 8-byte LE length, header text, then `data`. */
function rawFile(
  header: string,
  data: Uint8Array = new Uint8Array(0),
  length?: bigint,
): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

Deno.test({
  name: "SafetensorsFile reads every real-world and golden file, and re-encodes them",
  ignore: !hasShared,
  async fn() {
    for (const rel of REAL_FILES) {
      const path = sharedPath(rel);
      const bytes = await Deno.readFile(path);
      const file = await SafetensorsFile.open(path);
      try {
        assert.ok(file.tensors.size > 0, rel);
        const tensors = [];
        let end = 0;
        for (const info of file.tensors.values()) {
          assert.ok(info.byteOffset >= end, `${rel}: ${info.name} out of file order`);
          end = info.byteOffset + info.byteLength;
          const data = await file.read(info.name);
          assert.deepEqual(data, bytes.subarray(info.byteOffset, end), `${rel}: ${info.name}`);
          tensors.push({ name: info.name, dtype: info.dtype, shape: info.shape, data });
        }
        assert.equal(end, bytes.byteLength, rel);
        // Same tensors and metadata through our writer must give a valid file with equal data;
        // files written by the reference writer (one metadata key) must come back byte-identical.
        const again = encodeSafetensors(tensors, file.metadata);
        const reread = SafetensorsFile.fromBytes(again, rel);
        for (const t of tensors) assert.deepEqual(await reread.read(t.name), t.data);
        assert.deepEqual(reread.metadata, file.metadata);
        if (rel.startsWith("golden/models/") && rel.includes("pipeline")) {
          assert.ok(again.every((b, i) => b === bytes[i]), `${rel}: re-encoded bytes differ`);
        }
      } finally {
        file.close();
      }
    }
  },
});

Deno.test({
  name:
    "SafetensorsFile.readFloat32() upcasts the fp16 LDM checkpoint to the fp32 pipeline exactly",
  ignore: !hasShared,
  async fn() {
    const ldm = await SafetensorsFile.open(
      sharedPath("golden/models/tiny_sd/ldm/tiny_sd_ldm_fp16.safetensors"),
    );
    const te = await SafetensorsFile.open(
      sharedPath("golden/models/tiny_sd/pipeline/text_encoder/model.safetensors"),
    );
    try {
      assert.equal(te.metadata.format, "pt");
      const pairs = [
        [
          "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
          "text_model.embeddings.position_embedding.weight",
        ],
        [
          "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
          "text_model.encoder.layers.0.self_attn.q_proj.weight",
        ],
      ] as const;
      for (const [a, b] of pairs) {
        assert.equal(ldm.info(a).dtype, "F16");
        assert.deepEqual(ldm.info(a).shape, te.info(b).shape);
        const half = await ldm.readFloat32(a);
        const full = await te.readFloat32(b);
        let maxdiff = 0;
        for (let i = 0; i < full.length; i++) {
          maxdiff = Math.max(maxdiff, Math.abs(half[i]! - full[i]!));
        }
        assert.equal(maxdiff, 0, `${a}: maxdiff ${maxdiff}`);
        // And fp32 -> fp16 reproduces the stored half bits.
        const stored = new Uint16Array((await ldm.read(a)).buffer);
        assert.deepEqual(f32ToF16(full), stored);
      }
      // I64 position ids decode to 0..76.
      const ids = await te.readFloat32("text_model.embeddings.position_ids");
      assert.deepEqual([...ids], Array.from({ length: 77 }, (_, i) => i));
    } finally {
      ldm.close();
      te.close();
    }
  },
});

Deno.test("encodeSafetensors() matches the reference writer's bytes", () => {
  // Expected bytes from huggingface/safetensors tensor.rs tests `test_serialization` and
  // `test_empty`.
  const data = new Float32Array([0, 1, 2, 3, 4, 5]);
  const out = encodeSafetensors([{ name: "attn.0", dtype: "F32", shape: [1, 2, 3], data }]);
  const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
  assert.deepEqual(out, rawFile(header, new Uint8Array(data.buffer)));
  assert.equal(header.length, 64);
  assert.deepEqual(encodeSafetensors([]), rawFile("{}      "));
  assert.deepEqual(
    encodeSafetensors({}, { framework: "pt" }),
    rawFile('{"__metadata__":{"framework":"pt"}}     '),
  );
  // Larger dtypes first, then names compared as bytes ("10" < "9"), whatever the given order.
  const mixed = encodeSafetensors({
    b: { dtype: "F16", shape: [1], data: new Float32Array([1]) },
    "9": { dtype: "F32", shape: [1], data: new Float32Array([1]) },
    "10": { dtype: "F32", shape: [1], data: new Float32Array([1]) },
    a: { dtype: "I64", shape: [], data: new Uint8Array(8) },
  });
  const file = SafetensorsFile.fromBytes(mixed);
  assert.deepEqual([...file.tensors.keys()], ["a", "10", "9", "b"]);
  assert.equal(file.tensors.get("a")!.byteOffset % 8, 0);
});

Deno.test("encodeSafetensors() rejects wrong sizes, duplicates and reserved names", () => {
  const t = (name: string, shape: number[], data: Uint8Array | Float32Array) => ({
    name,
    dtype: "F32" as const,
    shape,
    data,
  });
  assert.throws(
    () => encodeSafetensors([t("w", [2, 2], new Float32Array(3))]),
    (e: Error) =>
      e instanceof TypeError && /"w" \(F32 \[2, 2\]\) needs 16 bytes, got 12/.test(e.message),
  );
  assert.throws(
    () => encodeSafetensors([t("w", [1], new Float32Array(1)), t("w", [1], new Float32Array(1))]),
    /twice/,
  );
  assert.throws(() => encodeSafetensors([t("__metadata__", [0], new Uint8Array(0))]), /reserved/);
});

Deno.test("SafetensorsFile.fromBytes() rejects corrupt headers with a message naming the problem", () => {
  const f32 = (n: number) => new Uint8Array(4 * n);
  const ok = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  assert.equal(SafetensorsFile.fromBytes(rawFile(ok, f32(2))).tensors.size, 1);
  const cases: Array<[string, Uint8Array, RegExp, ErrorConstructor]> = [
    ["tiny", new Uint8Array(5), /only 5 bytes/, RangeError],
    [
      "huge length",
      rawFile(ok, f32(2), 200_000_000n),
      /exceeds the 100000000-byte limit/,
      RangeError,
    ],
    ["length past end", rawFile(ok, f32(2), 1000n), /runs past the end/, RangeError],
    [
      "not utf-8",
      rawFile('{"\xff"}', new Uint8Array(0)).map((b, i) => i === 10 ? 0xff : b),
      /UTF-8/,
      SyntaxError,
    ],
    ["not json", rawFile('{"w":', f32(0)), /not valid JSON/, SyntaxError],
    ["not object", rawFile("[1, 2]", f32(0)), /does not start with "\{"/, SyntaxError],
    [
      "unknown dtype",
      rawFile('{"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}', f32(2)),
      /tensor "w" has unknown dtype "F17"/,
      RangeError,
    ],
    [
      "bad shape",
      rawFile('{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', f32(2)),
      /tensor "w" has shape \[-2\]/,
      RangeError,
    ],
    [
      "size mismatch",
      rawFile('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', f32(2)),
      /"w" \(F32 \[3\]\) needs 12 bytes but data_offsets \[0, 8\] hold 8/,
      RangeError,
    ],
    [
      "end before start",
      rawFile('{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', f32(2)),
      /end < start/,
      RangeError,
    ],
    [
      "gap",
      rawFile(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
        f32(3),
      ),
      /tensor "b" starts at data offset 8, leaving a gap after 4/,
      RangeError,
    ],
    [
      "overlap",
      rawFile(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        f32(2),
      ),
      /tensor "b" at data offset 4 overlaps the previous tensor/,
      RangeError,
    ],
    ["truncated", rawFile(ok, f32(1)), /need 8 data bytes but the file holds 4/, RangeError],
    ["trailing bytes", rawFile(ok, f32(3)), /cover 8 of the 12 data bytes/, RangeError],
    [
      "metadata not strings",
      rawFile('{"__metadata__":{"steps":10}}', f32(0)),
      /"__metadata__" entry "steps" is a number, not a string/,
      RangeError,
    ],
    [
      "offset overflow",
      rawFile('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,1e300]}}', f32(2)),
      /data_offsets/,
      RangeError,
    ],
  ];
  for (const [what, bytes, message, type] of cases) {
    assert.throws(
      () => SafetensorsFile.fromBytes(bytes, "bad.safetensors"),
      (e: Error) =>
        e instanceof type && message.test(e.message) && e.message.includes('"bad.safetensors"'),
      what,
    );
  }
});

Deno.test("writeSafetensors() writes atomically and SafetensorsFile.open() reads back one tensor", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "w.safetensors");
    const values = Float32Array.from({ length: 1000 }, (_, i) => i / 7);
    await writeSafetensors(path, {
      big: { dtype: "F32", shape: [10, 100], data: values },
      half: { dtype: "F16", shape: [1000], data: values },
      brain: { dtype: "BF16", shape: [1000], data: values },
    }, { format: "pt" });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["w.safetensors"]);
    const file = await SafetensorsFile.open(path);
    try {
      assert.deepEqual(await file.readFloat32("big"), values);
      const half = await file.readFloat32("half");
      const brain = await file.readFloat32("brain");
      let dh = 0, db = 0;
      for (let i = 0; i < values.length; i++) {
        dh = Math.max(dh, Math.abs(half[i]! - values[i]!) / Math.max(1, values[i]!));
        db = Math.max(db, Math.abs(brain[i]! - values[i]!) / Math.max(1, values[i]!));
      }
      assert.ok(dh <= 2 ** -11, `fp16 maxdiff ${dh}`);
      assert.ok(db <= 2 ** -8, `bf16 maxdiff ${db}`);
      // Concurrent reads on one handle do not interleave.
      const [a, b] = await Promise.all([file.read("half"), file.read("brain")]);
      assert.equal(a.byteLength, 2000);
      assert.equal(b.byteLength, 2000);
      await assert.rejects(() => file.read("nope"), /Tensor "nope" is not in/);
    } finally {
      file.close();
    }
    // A failing write leaves neither the target nor a temp file behind.
    await assert.rejects(() =>
      writeSafetensors(join(dir, "missing", "x.safetensors"), {
        x: { dtype: "F32", shape: [1], data: new Float32Array(1) },
      })
    );
    await assert.rejects(
      () =>
        writeSafetensors(join(dir, "bad.safetensors"), {
          x: { dtype: "F32", shape: [2], data: new Float32Array(1) },
        }),
      TypeError,
    );
    assert.deepEqual([...Deno.readDirSync(dirname(path))].map((e) => e.name), ["w.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SafetensorsFile.open() reads only the header of a large sparse file", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    const header = '{"small":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},' +
      '"huge":{"dtype":"F32","shape":[1073741824],"data_offsets":[4,4294967300]}}';
    const head = rawFile(header);
    const file = await Deno.open(path, { write: true });
    await file.write(head);
    await file.write(new Uint8Array([1, 2, 3, 4]));
    await file.truncate(head.byteLength + 4 + 4294967296); // sparse: nothing written
    file.close();
    const st = await SafetensorsFile.open(path);
    try {
      assert.deepEqual(await st.read("small"), new Uint8Array([1, 2, 3, 4]));
      assert.equal(st.info("huge").byteLength, 4294967296);
    } finally {
      st.close();
    }
  } finally {
    await Deno.remove(path);
  }
});
