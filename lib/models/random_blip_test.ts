import assert from "node:assert/strict";
import { join } from "node:path";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { parseBlipConfig } from "./blip_config.ts";
import { buildBlipCrossKeyValues, buildBlipTextDecoder } from "./blip_text.ts";
import { buildBlipVisionModel } from "./blip_vision.ts";
import { normalizeBlipWeights } from "./blip_weights.ts";
import { createRandomBlip, TINY_BLIP_CONFIG } from "./random_blip.ts";

Deno.test("createRandomBlip() writes weights the BLIP builders read completely", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = parseBlipConfig(TINY_BLIP_CONFIG);
    for (const values of ["torch", "fast"] as const) {
      const out = join(dir, values);
      await createRandomBlip(TINY_BLIP_CONFIG, out, { seed: 3, values });
      const file = await SafetensorsFile.open(join(out, "model.safetensors"));
      try {
        // Each builder throws on a missing, misshapen or unused weight.
        const weights = normalizeBlipWeights(tensorSources(file));
        buildBlipVisionModel(config.vision, weights);
        buildBlipCrossKeyValues(config.text, weights);
        buildBlipTextDecoder(config.text, weights);
      } finally {
        file.close();
      }
      const vocab = (await Deno.readTextFile(join(out, "vocab.txt"))).trimEnd().split("\n");
      assert.equal(vocab.length, 64);
      assert.deepEqual([vocab[0], vocab[3], vocab[62]], ["[PAD]", "[SEP]", "[DEC]"]);
      for (const f of ["config.json", "preprocessor_config.json", "tokenizer_config.json"]) {
        JSON.parse(await Deno.readTextFile(join(out, f)));
      }
    }
    // Same seed, same bytes.
    await createRandomBlip(TINY_BLIP_CONFIG, join(dir, "again"), { seed: 3, values: "torch" });
    assert.deepEqual(
      await Deno.readFile(join(dir, "again", "model.safetensors")),
      await Deno.readFile(join(dir, "torch", "model.safetensors")),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
