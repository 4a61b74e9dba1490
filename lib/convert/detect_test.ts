import assert from "node:assert/strict";
import { detectCheckpoint, type ShapeSource } from "./detect.ts";
import { parseLdmYaml } from "./ldm_yaml.ts";

/** A checkpoint that only has names and shapes, enough for detection. */
function fake(shapes: Record<string, number[]>): ShapeSource {
  return {
    names: () => Object.keys(shapes),
    has: (n) => n in shapes,
    info: (n) => ({ shape: shapes[n]! }),
  };
}

function checkpoint(text: string, inChannels: number, extra: Record<string, number[]> = {}) {
  return fake({
    "model.diffusion_model.input_blocks.0.0.weight": [320, inChannels, 3, 3],
    "first_stage_model.encoder.conv_in.weight": [128, 3, 3, 3],
    [`${text}token_embedding.weight`]: [49408, 1024],
    ...extra,
  });
}

Deno.test("detectCheckpoint() applies Diffusers' SD 2.x prediction rules", () => {
  const sd2 = checkpoint("cond_stage_model.model.", 4);
  assert.equal(detectCheckpoint(sd2).prediction, "v_prediction");
  assert.equal(detectCheckpoint(sd2, { globalStep: 875000 }).prediction, "epsilon");
  assert.equal(detectCheckpoint(sd2, { config: "sd2" }).prediction, "epsilon");
  const inpaint = checkpoint("cond_stage_model.model.", 9);
  const d = detectCheckpoint(inpaint);
  assert.equal(d.prediction, "epsilon");
  assert.equal(d.label, "SD 2.x, epsilon, 9-channel inpainting");
  const yaml = parseLdmYaml('model:\n  params:\n    parameterization: "v"\n');
  assert.equal(detectCheckpoint(inpaint, { yaml }).prediction, "v_prediction");
  const comfy = checkpoint("cond_stage_model.transformer.text_model.embeddings.", 4, {
    v_pred: [],
  });
  assert.equal(detectCheckpoint(comfy).prediction, "v_prediction");
  assert.equal(detectCheckpoint(comfy).family, "sd1");
});

Deno.test("detectCheckpoint() reads SGM YAMLs, families and refuses contradicting --config", () => {
  const xl = checkpoint("conditioner.embedders.1.model.", 4, {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": [
      49408,
      768,
    ],
  });
  const d = detectCheckpoint(xl);
  assert.equal(d.family, "sdxl");
  assert.deepEqual(d.textEncoders.map((t) => t.folder), ["text_encoder", "text_encoder_2"]);
  const yaml = parseLdmYaml(
    "model:\n  params:\n    denoiser_config:\n      params:\n        scaling_config:\n" +
      "          target: sgm.modules.diffusionmodules.denoiser_scaling.VScaling\n",
  );
  assert.equal(detectCheckpoint(xl, { yaml }).prediction, "v_prediction");
  const refiner = checkpoint("conditioner.embedders.0.model.", 4);
  assert.equal(detectCheckpoint(refiner).family, "sdxl-refiner");
  assert.throws(() => detectCheckpoint(xl, { config: "sd1" }), /--config sd1.*SDXL base/);
  assert.throws(
    () =>
      detectCheckpoint(checkpoint("cond_stage_model.transformer.", 4), { config: "sd1-inpaint" }),
    /9/,
  );
  assert.throws(
    () => detectCheckpoint(fake({ "model.diffusion_model.input_blocks.0.0.weight": [4, 4, 3, 3] })),
    /no text encoder/,
  );
});
