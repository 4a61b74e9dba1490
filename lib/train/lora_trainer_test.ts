// LoraTrainer beyond the golden single step: text-encoder LoRA through the chain rule across the
// UNet and text-encoder sessions (SD 1.x and SDXL, checked against finite differences of the
// loss), min-SNR loss weights, and activation checkpointing (same gradients).
import assert from "node:assert/strict";
import { makeTinyModel } from "../../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../../tests/fixtures/tokenizer.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { textEncoderLoraModules, unetLoraModules } from "./lora_network.ts";
import { LoraTrainer, type LoraTrainingBatch } from "./lora_trainer.ts";

const TOKENIZER = await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" }));
const SD15 = await makeTinyModel("sd15", { seed: 11, tokenizerDir: TOKENIZER });
const SDXL = await makeTinyModel("sdxl", { seed: 12, tokenizerDir: TOKENIZER });

/** A LoRA on some UNet modules and on text-encoder modules, with random (non-zero) up weights. */
async function lora(model: string, sdxl: boolean, seed: number) {
  const unet = (await unetLoraModules(`${model}/unet/diffusion_pytorch_model.safetensors`))
    .slice(0, 6);
  const te = sdxl
    ? [
      ...(await textEncoderLoraModules(
        `${model}/text_encoder/model.safetensors`,
        "text_encoder",
        "lora_te1_",
      )).slice(0, 4),
      ...(await textEncoderLoraModules(
        `${model}/text_encoder_2/model.safetensors`,
        "text_encoder_2",
        "lora_te2_",
      )).slice(-4),
    ]
    : (await textEncoderLoraModules(
      `${model}/text_encoder/model.safetensors`,
      "text_encoder",
      "lora_te_",
    )).slice(0, 8);
  const rng = new TorchCpuGenerator(seed);
  const out: Record<string, Float32Array> = {};
  for (const m of [...unet, ...te]) {
    out[`${m.module}.lora_down.weight`] = rng.randn([2, m.inFeatures]).map((v) => v * 0.3);
    out[`${m.module}.lora_up.weight`] = rng.randn([m.outFeatures, 2]).map((v) => v * 0.3);
  }
  return out;
}

function batch(lora: Record<string, Float32Array>, b: number): LoraTrainingBatch {
  const rng = new TorchCpuGenerator(3);
  return {
    lora,
    alpha: 2,
    shape: [b, 4, 8, 8],
    latents: rng.randn([b, 4, 8, 8]),
    noise: rng.randn([b, 4, 8, 8]),
    timesteps: [700, 250].slice(0, b),
    prompt: ["a red square", "blue circle"].slice(0, b),
  };
}

function norm(a: Float32Array): number {
  let s = 0;
  for (const v of a) s += v * v;
  return Math.sqrt(s);
}

/**
 * d loss / d(direction of the gradient) by central differences with Richardson extrapolation
 * (steps h and h/2: error O(h^4); the tiny random models' attention is sharp, so the loss
 * curves fast), against |gradient|; returns the relative error.
 */
async function checkDirectional(
  trainer: LoraTrainer,
  base: LoraTrainingBatch,
  names: readonly string[],
  grads: Record<string, Float32Array>,
): Promise<number> {
  let total = 0;
  for (const n of names) total += norm(grads[n]!) ** 2;
  total = Math.sqrt(total);
  const derivative = async (h: number) => {
    const moved = (sign: number) => {
      const l = { ...base.lora };
      for (const n of names) l[n] = l[n]!.map((v, i) => v + sign * h * grads[n]![i]! / total);
      return { ...base, lora: l };
    };
    return ((await trainer.step(moved(1))).loss - (await trainer.step(moved(-1))).loss) / (2 * h);
  };
  const [d1, d2] = [await derivative(4e-3), await derivative(2e-3)];
  return Math.abs((4 * d2 - d1) / 3 - total) / total;
}

for (const [label, model, sdxl] of [["SD 1.x", SD15, false], ["SDXL", SDXL, true]] as const) {
  Deno.test(`LoraTrainer.step() text-encoder LoRA gradients match finite differences (${label})`, async () => {
    const trainer = await LoraTrainer.open(model, { threads: 1 });
    try {
      const b = batch(await lora(model, sdxl, 5), 1);
      const { grads } = await trainer.step(b);
      const prefixes = sdxl ? ["lora_te1_", "lora_te2_"] : ["lora_te_"];
      for (const prefix of prefixes) {
        const names = Object.keys(grads).filter((n) => n.startsWith(prefix));
        assert.ok(names.length > 0 && names.every((n) => norm(grads[n]!) > 0), `${prefix} grads`);
        const err = await checkDirectional(trainer, b, names, grads);
        console.log(
          `${label} ${prefix}*: directional derivative rel. error ${
            err.toExponential(2)
          } (tolerance 5e-3)`,
        );
        assert.ok(err < 5e-3);
      }
    } finally {
      await trainer.release();
    }
  });
}

Deno.test("LoraTrainer.step() lossWeights: the loss and gradients are mean_b(w_b * item loss)", async () => {
  const trainer = await LoraTrainer.open(SD15, { threads: 1 });
  try {
    const l = await lora(SD15, false, 6);
    const two = batch(l, 2);
    const weights = [0.25, 1.5];
    const weighted = await trainer.step({ ...two, lossWeights: weights });
    const items = [];
    for (let i = 0; i < 2; i++) {
      const per = 4 * 8 * 8;
      items.push(
        await trainer.step({
          ...two,
          shape: [1, 4, 8, 8],
          latents: two.latents.slice(i * per, (i + 1) * per),
          noise: two.noise.slice(i * per, (i + 1) * per),
          timesteps: [two.timesteps[i]!],
          prompt: [(two.prompt as string[])[i]!],
        }),
      );
    }
    const want = (weights[0]! * items[0]!.loss + weights[1]! * items[1]!.loss) / 2;
    const rel = Math.abs(weighted.loss - want) / want;
    console.log(
      `weighted loss ${weighted.loss} vs ${want}: rel. diff ${
        rel.toExponential(2)
      } (tolerance 1e-5)`,
    );
    assert.ok(rel < 1e-5);
    let diff = 0;
    let scale = 0;
    for (const [n, g] of Object.entries(weighted.grads)) {
      const a = items[0]!.grads[n]!;
      const c = items[1]!.grads[n]!;
      for (let i = 0; i < g.length; i++) {
        const e = (weights[0]! * a[i]! + weights[1]! * c[i]!) / 2;
        diff = Math.max(diff, Math.abs(g[i]! - e));
        scale = Math.max(scale, Math.abs(e));
      }
    }
    console.log(
      `weighted gradients: max diff ${(diff / scale).toExponential(2)} of scale (tolerance 1e-4)`,
    );
    assert.ok(diff / scale < 1e-4);
  } finally {
    await trainer.release();
  }
});

Deno.test("LoraTrainer checkpointing: recomputed activations give the same loss and gradients", async () => {
  const plain = await LoraTrainer.open(SD15, { threads: 1 });
  const recomputed = await LoraTrainer.open(SD15, { threads: 1, checkpointing: true });
  try {
    const b = batch(await lora(SD15, false, 7), 2);
    const [x, y] = [await plain.step(b), await recomputed.step(b)];
    assert.ok(Math.abs(x.loss - y.loss) <= 1e-6 * x.loss, `loss ${x.loss} vs ${y.loss}`);
    let diff = 0;
    let scale = 0;
    for (const [n, g] of Object.entries(x.grads)) {
      const r = y.grads[n]!;
      for (let i = 0; i < g.length; i++) {
        diff = Math.max(diff, Math.abs(g[i]! - r[i]!));
        scale = Math.max(scale, Math.abs(g[i]!));
      }
    }
    console.log(
      `checkpointing: gradients max diff ${
        (diff / scale).toExponential(2)
      } of scale (tolerance 1e-4)`,
    );
    assert.ok(diff / scale < 1e-4);
  } finally {
    await plain.release();
    await recomputed.release();
  }
});
