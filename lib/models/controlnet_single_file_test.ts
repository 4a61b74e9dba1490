import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { assertClose } from "../../tests/fixtures/golden.ts";
import { writeTorchCheckpoint } from "../convert/testing.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../weights/safetensors.ts";
import {
  buildControlnet,
  controlnetConditioningScales,
  controlnetResidualSpecs,
} from "./controlnet.ts";
import { type ControlnetConfig, parseControlnetConfig } from "./controlnet_config.ts";
import { loadControlnet } from "./controlnet_loader.ts";
import {
  controlnetKeysFromLdm,
  controlnetLayout,
  detectControlnetConfig,
} from "./controlnet_single_file.ts";
import { controlnetParameterShapes } from "./random.ts";

/**
 * Diffusers name -> original (cldm.py) name, written independently of the module under test from
 * the ControlNet layout: input_blocks numbered through all levels (a downsampler takes a number),
 * ResBlock sublayers, middle_block 0/1/2, zero_convs.k.0, input_hint_block convs at even indices.
 */
function toOriginalName(name: string, config: ControlnetConfig): string {
  const table = new Map<string, string>();
  let at = 1;
  const n = config.blockOutChannels.length;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < config.layersPerBlock[i]!; j++) {
      table.set(`down_blocks.${i}.resnets.${j}.`, `input_blocks.${at}.0.`);
      table.set(`down_blocks.${i}.attentions.${j}.`, `input_blocks.${at}.1.`);
      at++;
    }
    if (i < n - 1) table.set(`down_blocks.${i}.downsamplers.0.conv.`, `input_blocks.${at++}.0.op.`);
  }
  table.set("mid_block.resnets.0.", "middle_block.0.");
  table.set("mid_block.attentions.0.", "middle_block.1.");
  table.set("mid_block.resnets.1.", "middle_block.2.");
  table.set("time_embedding.linear_1.", "time_embed.0.");
  table.set("time_embedding.linear_2.", "time_embed.2.");
  table.set("add_embedding.linear_1.", "label_emb.0.0.");
  table.set("add_embedding.linear_2.", "label_emb.0.2.");
  table.set("conv_in.", "input_blocks.0.0.");
  table.set("controlnet_mid_block.", "middle_block_out.0.");
  const widths = config.conditioningEmbeddingOutChannels.length;
  table.set("controlnet_cond_embedding.conv_in.", "input_hint_block.0.");
  for (let b = 0; b < 2 * (widths - 1); b++) {
    table.set(`controlnet_cond_embedding.blocks.${b}.`, `input_hint_block.${2 * b + 2}.`);
  }
  table.set("controlnet_cond_embedding.conv_out.", `input_hint_block.${4 * (widths - 1) + 2}.`);
  for (let k = 0; k < controlnetResidualSpecs(config).length - 1; k++) {
    table.set(`controlnet_down_blocks.${k}.`, `zero_convs.${k}.0.`);
  }
  const resnet: Array<[string, string]> = [
    ["norm1.", "in_layers.0."],
    ["conv1.", "in_layers.2."],
    ["norm2.", "out_layers.0."],
    ["conv2.", "out_layers.3."],
    ["time_emb_proj.", "emb_layers.1."],
    ["conv_shortcut.", "skip_connection."],
  ];
  for (const [from, to] of table) {
    if (!name.startsWith(from)) continue;
    let rest = name.slice(from.length);
    if (from.includes("resnets.")) {
      const r = resnet.find(([d]) => rest.startsWith(d));
      assert.ok(r, `no ResBlock name for ${name}`);
      rest = r[1] + rest.slice(r[0].length);
    }
    return to + rest;
  }
  throw new Error(`no original name for ${name}`);
}

/** Published configs (the keys that differ from ControlNetModel's defaults). */
const PUBLISHED: Record<string, Record<string, unknown>> = {
  // lllyasviel/control_v11p_sd15_canny
  sd15: { cross_attention_dim: 768 },
  // thibaud/controlnet-sd21-canny-diffusers
  sd2: {
    cross_attention_dim: 1024,
    attention_head_dim: [5, 10, 20, 20],
    use_linear_projection: true,
  },
  // diffusers/controlnet-canny-sdxl-1.0
  sdxl: {
    block_out_channels: [320, 640, 1280],
    down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    transformer_layers_per_block: [1, 2, 10],
    attention_head_dim: [5, 10, 20],
    cross_attention_dim: 2048,
    use_linear_projection: true,
    addition_embed_type: "text_time",
    addition_time_embed_dim: 256,
    projection_class_embeddings_input_dim: 2816,
  },
};

for (const [base, json] of Object.entries(PUBLISHED)) {
  Deno.test(`detectControlnetConfig() recovers the ${base} ControlNet config from original-layout shapes`, () => {
    const want = parseControlnetConfig(json);
    assert.equal(want.base, base);
    const shapes = controlnetParameterShapes(json);
    for (const prefix of ["control_model.", ""]) {
      const original = new Map<string, number[]>();
      for (const [name, shape] of shapes) original.set(prefix + toOriginalName(name, want), shape);
      assert.equal(controlnetLayout([...original.keys()]), "ldm");
      const map = controlnetKeysFromLdm(original.keys());
      assert.equal(map.size, shapes.size);
      const renamed = new Map<string, number[]>();
      for (const [n, s] of original) renamed.set(map.get(n)!, s);
      assert.deepEqual([...renamed.keys()].sort(), [...shapes.keys()].sort());
      assert.deepEqual(parseControlnetConfig(detectControlnetConfig(renamed)), want);
    }
    // A Diffusers-named single file (no config.json) is detected the same way.
    assert.deepEqual(parseControlnetConfig(detectControlnetConfig(shapes)), want);
  });
}

Deno.test("SD 1.5 ControlNet: 361M parameters in the names of lllyasviel's files", () => {
  const config = parseControlnetConfig(PUBLISHED.sd15);
  const shapes = controlnetParameterShapes(PUBLISHED.sd15);
  const original = [...shapes.keys()].map((n) => toOriginalName(n, config));
  for (
    const name of [
      "input_hint_block.14.weight",
      "zero_convs.11.0.weight",
      "middle_block_out.0.bias",
      "input_blocks.11.0.out_layers.3.weight",
      "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
    ]
  ) assert.ok(original.includes(name), name);
  let total = 0;
  for (const s of shapes.values()) total += s.reduce((a, b) => a * b, 1);
  // control_v11p_sd15_canny.pth holds about 1.45 GB of fp32 values.
  console.log(`SD 1.5 ControlNet parameters: ${total}`);
  assert.ok(total > 360e6 && total < 362e6, `parameter count ${total}`);
});

Deno.test("controlnetLayout() and controlnetKeysFromLdm() refuse what is not an original ControlNet", () => {
  assert.throws(
    () => controlnetLayout(["model.diffusion_model.out.2.weight"], '"x.ckpt"'),
    /"x.ckpt"/,
  );
  assert.throws(
    () => controlnetLayout(["lora_controlnet", "input_hint_block.0.weight"]),
    /Control-LoRA/,
  );
  assert.throws(() => controlnetLayout(["lllite_unet_x.down.weight"]), /ControlLLLite/);
  assert.throws(
    () => controlnetKeysFromLdm(["input_hint_block.0.weight", "input_blocks.1.0.foo.weight"]),
    /"input_blocks\.1\.0\.foo\.weight"/,
  );
});

const SET = "tiny_sd_controlnet";

async function originalFile(
  net: string,
  dir: string,
  form: "fp16-safetensors" | "pth",
): Promise<string> {
  const folder = sharedPath(`golden/models/${SET}/${net}`);
  const config = parseControlnetConfig(
    JSON.parse(await Deno.readTextFile(join(folder, "config.json"))),
  );
  using file = await SafetensorsFile.open(join(folder, "diffusion_pytorch_model.safetensors"));
  const tensors: TensorToWrite[] = [];
  for (const [name, info] of file.tensors) {
    assert.equal(info.dtype, "F32");
    const data = await file.readFloat32(name);
    const original = toOriginalName(name, config);
    // The golden weights are fp16-representable, so the F16 copy loses nothing.
    tensors.push(
      form === "fp16-safetensors"
        ? { name: `control_model.${original}`, dtype: "F16", shape: [...info.shape], data }
        : { name: original, dtype: "F32", shape: [...info.shape], data },
    );
  }
  if (form === "fp16-safetensors") {
    // Old full files bundle the SD model too; those tensors are not the net's.
    tensors.push({
      name: "model.diffusion_model.out.2.bias",
      dtype: "F16",
      shape: [4],
      data: new Float32Array(4),
    });
    const path = join(dir, `${net}.safetensors`);
    await writeSafetensors(path, tensors);
    return path;
  }
  const path = join(dir, `${net}.pth`);
  await writeTorchCheckpoint(
    path,
    tensors.map((t) => ({
      ...t,
      data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    })),
  );
  return path;
}

Deno.test({
  name:
    "loadControlnet() reads both tiny nets from original-layout .safetensors (fp16, prefixed) and .pth (no prefix) with outputs identical to the Diffusers folder",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "denoise-controlnet-" });
    try {
      for (const net of ["controlnet", "controlnet_b"]) {
        const folder = await loadControlnet(sharedPath(`golden/models/${SET}/${net}`));
        const outputs: Array<Record<string, Float32Array>> = [];
        for (
          const path of [
            null,
            await originalFile(net, dir, "fp16-safetensors"),
            await originalFile(net, dir, "pth"),
          ]
        ) {
          const loaded = path === null ? folder : await loadControlnet(path);
          try {
            assert.equal(loaded.layout, path === null ? "diffusers-folder" : "original-file");
            assert.deepEqual(loaded.config, folder.config, `${path}: detected config`);
            const session = await createSession(
              await serializeModel(buildControlnet(loaded.config, loaded.weights)),
              { threads: 2 },
            );
            try {
              const scales = controlnetConditioningScales(loaded.config, 0.8);
              const gen = new TorchCpuGenerator(5);
              const out = await session.run({
                sample: hostTensor("float32", gen.randn([1, 4, 8, 8]), [1, 4, 8, 8]),
                timestep: hostTensor("float32", Float32Array.of(321), [1]),
                encoder_hidden_states: hostTensor("float32", gen.randn([1, 7, 32]), [1, 7, 32]),
                controlnet_cond: hostTensor("float32", gen.rand([1, 3, 64, 64]), [1, 3, 64, 64]),
                conditioning_scales: hostTensor("float32", scales, [scales.length]),
              });
              outputs.push(
                Object.fromEntries(
                  Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]),
                ),
              );
            } finally {
              await session.release();
            }
          } finally {
            if (path !== null) loaded.close();
          }
        }
        folder.close();
        for (const [i, form] of [[1, "fp16 .safetensors"], [2, ".pth"]] as const) {
          for (const name of Object.keys(outputs[0]!)) {
            assertClose(outputs[i]![name]!, outputs[0]![name]!, 0, `${net} ${form} ${name}`);
          }
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
