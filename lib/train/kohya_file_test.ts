import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { planLoras } from "../adapters/lora.ts";
import { SafetensorsFile, writeSafetensors } from "../weights/safetensors.ts";
import { pythonFloat, writeKohyaLora } from "./kohya_file.ts";
import { initLora } from "./lora_network.ts";

Deno.test("writeKohyaLora() writes down/up/alpha, ss_* metadata and kohya's sshs hashes; the loader applies every module", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-kohya-" });
  try {
    // A "model" with two linear layers (and one the LoRA does not touch).
    const unet = join(dir, "unet.safetensors");
    await writeSafetensors(unet, {
      "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight": {
        dtype: "F32",
        shape: [8, 16],
        data: new Float32Array(128),
      },
      "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.weight": {
        dtype: "F32",
        shape: [16, 8],
        data: new Float32Array(128),
      },
      "conv_in.weight": { dtype: "F32", shape: [4, 4, 3, 3], data: new Float32Array(144) },
    });
    const modules = [
      ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 16, 8],
      ["mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0", 8, 16],
    ].map(([path, inF, outF]) => ({
      module: `lora_unet_${String(path).replaceAll(".", "_")}`,
      target: "unet" as const,
      path: String(path),
      inFeatures: Number(inF),
      outFeatures: Number(outF),
    }));
    const weights = initLora(modules, 2, 7n);
    for (const [k, v] of Object.entries(weights)) if (k.endsWith("up.weight")) v.fill(0.5);
    const shapes: Record<string, number[]> = {};
    for (const m of modules) {
      shapes[`${m.module}.lora_down.weight`] = [2, m.inFeatures];
      shapes[`${m.module}.lora_up.weight`] = [m.outFeatures, 2];
    }
    const out = join(dir, "lora.safetensors");
    const hashes = await writeKohyaLora(out, { weights, shapes, alpha: 1 }, {
      ss_network_module: "networks.lora",
      ss_network_dim: "2",
      ss_network_alpha: pythonFloat(1),
      note: "not hashed",
    });
    using file = await SafetensorsFile.open(out);
    assert.equal(file.metadata.ss_network_alpha, "1.0");
    assert.equal(file.metadata.sshs_model_hash, hashes.modelHash);
    assert.equal(file.metadata.sshs_legacy_hash, hashes.legacyHash);
    assert.deepEqual(file.tensors.get(`${modules[0]!.module}.alpha`)!.shape, []);
    assert.deepEqual(file.tensors.get(`${modules[1]!.module}.lora_up.weight`)!.shape, [16, 2]);
    // sshs_model_hash: the SHA-256 of the bytes after the header (A1111's addnet hash).
    const bytes = await Deno.readFile(out);
    const header = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const addnet = createHash("sha256").update(bytes.subarray(8 + header)).digest("hex");
    assert.equal(hashes.modelHash, addnet);
    // Files under 1 MiB: the legacy hash is kohya's hash of zero bytes.
    assert.equal(hashes.legacyHash, "e3b0c442");
    const plan = await planLoras([{ path: out, te: 1, unet: 1 }], { unet });
    const ledger = plan.ledgers[0]!;
    assert.equal(ledger.applied.length, 2);
    assert.deepEqual([ledger.unmatched, ledger.ignored], [[], []]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pythonFloat() prints numbers as Python's str(float)", () => {
  assert.deepEqual(
    [4, 0.0001, 1e-5, 5e-7, 0.5, 1.5e-4, 123456.5].map(pythonFloat),
    ["4.0", "0.0001", "1e-05", "5e-07", "0.5", "0.00015", "123456.5"],
  );
});
