import assert from "node:assert/strict";
import { SD15_UNET, SD_VAE, SDXL_UNET } from "../../tests/fixtures/configs.ts";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { parseUnetConfig } from "../models/config.ts";
import {
  clipTextParameterShapes,
  unetParameterShapes,
  vaeParameterShapes,
} from "../models/random.ts";
import { LDM_PREFIX, openClipKeyMap, unetKeyMap, vaeKeyMap } from "../model_io/key_map.ts";
import { parseLdmYaml, yamlGet } from "./ldm_yaml.ts";
import { diffusersToLdm, fuseQkv, ldmToDiffusers } from "./tensor_ops.ts";

function table(maps: Array<{ diffusers: string; ldm: string }>): Map<string, string> {
  return new Map(maps.map((m) => [m.diffusers, m.ldm]));
}

// Pairs as Diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py maps them.
Deno.test("unetKeyMap() gives the LDM names of SD 1.5's 686 UNet weights, one to one", () => {
  const shapes = unetParameterShapes(SD15_UNET);
  const maps = unetKeyMap(parseUnetConfig(SD15_UNET), shapes.keys());
  assert.equal(maps.length, 686);
  assert.equal(new Set(maps.map((m) => m.ldm)).size, 686, "two weights map to one LDM name");
  const t = table(maps);
  const p = LDM_PREFIX.unet;
  const expected: Record<string, string> = {
    "conv_in.weight": "input_blocks.0.0.weight",
    "time_embedding.linear_2.bias": "time_embed.2.bias",
    "down_blocks.0.resnets.0.norm1.weight": "input_blocks.1.0.in_layers.0.weight",
    "down_blocks.0.attentions.1.proj_in.weight": "input_blocks.2.1.proj_in.weight",
    "down_blocks.0.downsamplers.0.conv.weight": "input_blocks.3.0.op.weight",
    "down_blocks.1.resnets.0.conv_shortcut.weight": "input_blocks.4.0.skip_connection.weight",
    "down_blocks.3.resnets.1.conv2.weight": "input_blocks.11.0.out_layers.3.weight",
    "mid_block.resnets.1.time_emb_proj.weight": "middle_block.2.emb_layers.1.weight",
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight":
      "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
    "up_blocks.0.resnets.2.conv1.weight": "output_blocks.2.0.in_layers.2.weight",
    "up_blocks.0.upsamplers.0.conv.weight": "output_blocks.2.1.conv.weight",
    "up_blocks.1.upsamplers.0.conv.weight": "output_blocks.5.2.conv.weight",
    "up_blocks.3.attentions.2.proj_out.weight": "output_blocks.11.1.proj_out.weight",
    "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight":
      "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight",
    "conv_norm_out.weight": "out.0.weight",
    "conv_out.bias": "out.2.bias",
  };
  for (const [d, l] of Object.entries(expected)) assert.equal(t.get(d), p + l, d);
});

Deno.test("unetKeyMap() gives the LDM names of SDXL's 1680 UNet weights, one to one", () => {
  const shapes = unetParameterShapes(SDXL_UNET);
  const maps = unetKeyMap(parseUnetConfig(SDXL_UNET), shapes.keys());
  assert.equal(maps.length, 1680);
  assert.equal(new Set(maps.map((m) => m.ldm)).size, 1680);
  const t = table(maps);
  const p = LDM_PREFIX.unet;
  const expected: Record<string, string> = {
    "add_embedding.linear_1.weight": "label_emb.0.0.weight",
    "add_embedding.linear_2.bias": "label_emb.0.2.bias",
    "down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q.weight":
      "input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight",
    "down_blocks.1.downsamplers.0.conv.weight": "input_blocks.6.0.op.weight",
    "down_blocks.2.attentions.1.transformer_blocks.9.norm3.bias":
      "input_blocks.8.1.transformer_blocks.9.norm3.bias",
    "up_blocks.0.upsamplers.0.conv.weight": "output_blocks.2.2.conv.weight",
    "up_blocks.1.upsamplers.0.conv.weight": "output_blocks.5.2.conv.weight",
    "up_blocks.2.resnets.2.conv2.weight": "output_blocks.8.0.out_layers.3.weight",
  };
  for (const [d, l] of Object.entries(expected)) assert.equal(t.get(d), p + l, d);
});

Deno.test("vaeKeyMap() reverses the decoder blocks and marks attention as 1x1 convolutions", () => {
  const shapes = vaeParameterShapes(SD_VAE);
  const maps = vaeKeyMap(4, shapes.keys());
  assert.equal(maps.length, 248);
  assert.equal(new Set(maps.map((m) => m.ldm)).size, 248);
  const t = table(maps);
  const p = LDM_PREFIX.vae;
  const expected: Record<string, string> = {
    "decoder.up_blocks.0.resnets.0.conv1.weight": "decoder.up.3.block.0.conv1.weight",
    "decoder.up_blocks.0.upsamplers.0.conv.weight": "decoder.up.3.upsample.conv.weight",
    "decoder.up_blocks.3.resnets.2.norm2.bias": "decoder.up.0.block.2.norm2.bias",
    "encoder.down_blocks.1.resnets.0.conv_shortcut.weight":
      "encoder.down.1.block.0.nin_shortcut.weight",
    "encoder.down_blocks.2.downsamplers.0.conv.bias": "encoder.down.2.downsample.conv.bias",
    "encoder.mid_block.attentions.0.to_out.0.weight": "encoder.mid.attn_1.proj_out.weight",
    "decoder.mid_block.attentions.0.group_norm.weight": "decoder.mid.attn_1.norm.weight",
    "decoder.mid_block.resnets.1.conv2.weight": "decoder.mid.block_2.conv2.weight",
    "encoder.conv_norm_out.bias": "encoder.norm_out.bias",
    "post_quant_conv.weight": "post_quant_conv.weight",
  };
  for (const [d, l] of Object.entries(expected)) assert.equal(t.get(d), p + l, d);
  const ops = new Map(maps.map((m) => [m.diffusers, m.op.kind]));
  assert.equal(ops.get("encoder.mid_block.attentions.0.to_q.weight"), "conv1x1");
  assert.equal(ops.get("encoder.mid_block.attentions.0.to_q.bias"), "copy");
  assert.equal(ops.get("encoder.mid_block.attentions.0.group_norm.weight"), "copy");
});

Deno.test("openClipKeyMap() splits in_proj into q/k/v thirds and transposes text_projection", () => {
  const shapes = clipTextParameterShapes(
    { hidden_size: 8, intermediate_size: 16, num_attention_heads: 2, num_hidden_layers: 2 },
    true,
  );
  const p = LDM_PREFIX.sdxlText2;
  const maps = openClipKeyMap(shapes.keys(), p);
  const by = new Map(maps.map((m) => [m.diffusers, m]));
  assert.deepEqual(by.get("text_model.encoder.layers.1.self_attn.k_proj.bias"), {
    diffusers: "text_model.encoder.layers.1.self_attn.k_proj.bias",
    ldm: `${p}transformer.resblocks.1.attn.in_proj_bias`,
    op: { kind: "qkv", part: 1 },
  });
  assert.equal(
    by.get("text_model.encoder.layers.0.mlp.fc1.weight")?.ldm,
    `${p}transformer.resblocks.0.mlp.c_fc.weight`,
  );
  assert.equal(
    by.get("text_model.encoder.layers.0.layer_norm2.bias")?.ldm,
    `${p}transformer.resblocks.0.ln_2.bias`,
  );
  assert.equal(
    by.get("text_model.embeddings.position_embedding.weight")?.ldm,
    `${p}positional_embedding`,
  );
  assert.equal(by.get("text_model.final_layer_norm.weight")?.ldm, `${p}ln_final.weight`);
  assert.deepEqual(by.get("text_projection.weight")?.op, { kind: "transpose" });
});

Deno.test("ldmToDiffusers() and diffusersToLdm() invert each other on q/k/v, transpose and 1x1 conv", () => {
  const f32 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);
  // in_proj_weight [3d, d] with d = 2: rows q0 q1 k0 k1 v0 v1.
  const inProj = {
    dtype: "F32" as const,
    shape: [6, 2],
    data: f32([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
  };
  const parts = ([0, 1, 2] as const).map((part) =>
    ldmToDiffusers(inProj, { kind: "qkv", part }, "w")
  );
  assert.deepEqual([...new Float32Array(parts[1]!.data.slice().buffer)], [4, 5, 6, 7]);
  assert.deepEqual(parts[2]!.shape, [2, 2]);
  assert.deepEqual(fuseQkv(parts, "w").data, inProj.data);
  const proj = { dtype: "F32" as const, shape: [2, 3], data: f32([1, 2, 3, 4, 5, 6]) };
  const tr = ldmToDiffusers(proj, { kind: "transpose" }, "p");
  assert.deepEqual(tr.shape, [3, 2]);
  assert.deepEqual([...new Float32Array(tr.data.slice().buffer)], [1, 4, 2, 5, 3, 6]);
  assert.deepEqual(diffusersToLdm(tr, { kind: "transpose" }).data, proj.data);
  const conv = { dtype: "F16" as const, shape: [2, 2, 1, 1], data: new Uint8Array(8) };
  const lin = ldmToDiffusers(conv, { kind: "conv1x1" }, "c");
  assert.deepEqual(lin.shape, [2, 2]);
  assert.deepEqual(diffusersToLdm(lin, { kind: "conv1x1" }).shape, [2, 2, 1, 1]);
  assert.throws(
    () =>
      ldmToDiffusers({ ...conv, shape: [2, 2, 3, 3], data: new Uint8Array(72) }, {
        kind: "conv1x1",
      }, "c"),
    /1x1/,
  );
});

Deno.test("parseLdmYaml() reads LDM inference YAML nesting, flow lists and comments", () => {
  const y = parseLdmYaml(
    "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion # the class\n  params:\n" +
      '    linear_end: 0.0120\n    parameterization: "v"\n    use_ema: False\n' +
      "    unet_config:\n      params:\n        attention_resolutions: [ 4, 2, 1 ]\n" +
      "        num_head_channels: 64\n        legacy: False\n    cond_stage_config:\n" +
      "      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder\n      params:\n" +
      '        freeze: True\n        layer: "penultimate"\n    scheduler_config:\n' +
      "      params:\n        cycle_lengths:\n        - 10000000000000\n        f_max:\n        - 1.0\n",
  );
  assert.equal(yamlGet(y, "model.params.linear_end"), 0.012);
  assert.equal(yamlGet(y, "model.params.parameterization"), "v");
  assert.equal(yamlGet(y, "model.params.use_ema"), false);
  assert.deepEqual(yamlGet(y, "model.params.unet_config.params.attention_resolutions"), [4, 2, 1]);
  assert.equal(yamlGet(y, "model.params.unet_config.params.num_head_channels"), 64);
  assert.equal(yamlGet(y, "model.params.cond_stage_config.params.layer"), "penultimate");
  assert.deepEqual(yamlGet(y, "model.params.scheduler_config.params.f_max"), [1]);
  assert.throws(() => parseLdmYaml("a: &anchor 1\n"), SyntaxError);
  assert.throws(() => parseLdmYaml("a:\n\tb: 1\n"), /tabs/);
});

Deno.test({
  name: "parseLdmYaml() reads the tiny_sd inference YAML",
  ignore: !hasShared,
  fn: async () => {
    const y = parseLdmYaml(
      await Deno.readTextFile(sharedPath("golden/models/tiny_sd/ldm/v1-inference-tiny.yaml")),
    );
    assert.equal(yamlGet(y, "model.params.unet_config.params.num_heads"), 8);
    assert.deepEqual(yamlGet(y, "model.params.unet_config.params.channel_mult"), [1, 1, 1, 2]);
    assert.equal(yamlGet(y, "model.params.first_stage_config.params.ddconfig.resolution"), 128);
    assert.equal(yamlGet(y, "model.params.scale_factor"), 0.18215);
  },
});
