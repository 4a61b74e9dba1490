import assert from "node:assert/strict";
import { loraParameterPairs, unetLoraModuleName } from "./lora_parameters.ts";

Deno.test("loraParameterPairs() pairs kohya down/up tensors, ignores .alpha and sorts by module", () => {
  const pairs = loraParameterPairs({
    "lora_unet_b.lora_up.weight": new Float32Array(6),
    "lora_unet_b.lora_down.weight": new Float32Array(4),
    "lora_unet_b.alpha": Float32Array.of(4),
    "lora_unet_a.lora_down.weight": new Float32Array(2),
    "lora_unet_a.lora_up.weight": new Float32Array(2),
  });
  assert.deepEqual(pairs.map((p) => [p.module, p.downSize, p.upSize]), [
    ["lora_unet_a", 2, 2],
    ["lora_unet_b", 4, 6],
  ]);
  assert.equal(
    unetLoraModuleName("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0"),
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0",
  );
});

Deno.test("loraParameterPairs() rejects half modules, unknown roles and parts, and empty LoRAs", () => {
  const t = new Float32Array(4);
  assert.throws(
    () => loraParameterPairs({ "lora_unet_a.lora_down.weight": t }),
    /has no .lora_up.weight/,
  );
  assert.throws(() => loraParameterPairs({ "lora_unet_a.hada_w1_a": t }), /neither/);
  assert.throws(
    () => loraParameterPairs({ "lora_vae_x.lora_down.weight": t, "lora_vae_x.lora_up.weight": t }),
    /is not a kohya UNet or text-encoder name/,
  );
  const te = loraParameterPairs({
    "lora_te1_x.lora_down.weight": t,
    "lora_te1_x.lora_up.weight": t,
  });
  assert.equal(te[0]!.module, "lora_te1_x");
  assert.throws(() => loraParameterPairs({}), /nothing to train/);
});
