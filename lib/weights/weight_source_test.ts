import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { openWeights, weightByteLength } from "./weight_source.ts";

async function bytesAt(path: string, offset: number, length: number): Promise<Uint8Array> {
  return (await Deno.readFile(path)).subarray(offset, offset + length);
}

Deno.test({
  name: "openWeights() gives the same interface over safetensors and torch.save files",
  ignore: !hasShared,
  async fn() {
    const cases = [
      {
        path: sharedPath("golden/models/tiny_sd/ldm/tiny_sd_ldm_fp16.safetensors"),
        format: "safetensors",
        count: 981,
        name: "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
        info: { dtype: "F16", shape: [77, 32] },
      },
      {
        path: sharedPath("fixtures/real/pickles/taesana_encoder.pth"),
        format: "torch",
        count: 69,
        name: "2.weight",
        info: { dtype: "F16", shape: [64, 32, 3, 3] },
      },
      {
        path: sharedPath("fixtures/real/embeddings/a1111_bad-hands-5.pt"),
        format: "torch",
        count: 1,
        name: "string_to_param.*",
        info: { dtype: "F32", shape: [2, 768] },
      },
    ];
    for (const c of cases) {
      const w = await openWeights(c.path);
      try {
        assert.equal(w.format, c.format);
        assert.equal(w.names().length, c.count);
        assert.ok(w.has(c.name) && !w.has("nope"));
        assert.deepEqual(w.info(c.name), c.info);
        const t = await w.read(c.name);
        assert.equal(t.data.byteLength, weightByteLength(c.info as never));
        const f = await w.readFloat32(c.name);
        assert.equal(f.length, c.info.shape.reduce((a, b) => a * b, 1));
        assert.ok(f.every(Number.isFinite));
        // The in-place location holds exactly the bytes read.
        const loc = (await w.location(c.name))!;
        assert.equal(loc.path, c.path);
        assert.deepEqual(await bytesAt(c.path, loc.byteOffset, loc.byteLength), t.data);
        assert.throws(() => w.info("nope"), /Tensor "nope" is not in/);
      } finally {
        w.close();
      }
    }
  },
});

Deno.test("openWeights() refuses legacy torch.save files and unknown formats", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const legacy = join(dir, "old.ckpt");
    // A pre-1.6 torch.save begins with a protocol-2 pickle of its magic number (PROTO 2, LONG1).
    await Deno.writeFile(legacy, new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46]));
    await assert.rejects(() => openWeights(legacy), /legacy \(before PyTorch 1\.6\)/);
    const junk = join(dir, "junk.bin");
    await Deno.writeTextFile(junk, "hello world");
    await assert.rejects(() => openWeights(junk), /neither safetensors nor a torch\.save/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
