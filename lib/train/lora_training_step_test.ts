import assert from "node:assert/strict";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { AdamW } from "./adamw.ts";
import { loraTrainerFor, loraTrainingStep, releaseLoraTrainers } from "./lora_training_step.ts";
import { addNoisePerItem, velocityPerItem } from "./noising.ts";

// ../shared/golden/lora_train: one step of Diffusers' train_text_to_image_lora.py on tiny_dummy.
interface Summary {
  shape: number[];
  sum: number;
  abs_sum: number;
  first8: number[];
}
interface Golden {
  batch: {
    latents: { shape: number[]; values: number[] };
    noise: { values: number[] };
    encoder_hidden_states: { values: number[] };
    alphas_cumprod: Record<string, number>;
  };
  runs: Array<{
    timestep: number;
    prediction_type: "epsilon" | "v_prediction";
    noisy_latents: { values: number[] };
    model_pred_step0: { values: number[] };
    loss0: number;
    grads: Record<string, Summary>;
    after_step1: Record<string, Summary>;
    fp64: { losses: number[] };
  }>;
}

const MODEL = sharedPath("golden/models/tiny_dummy/pipeline");
const PROMPT = "a photo of a cat";

async function readLora(): Promise<Record<string, Float32Array>> {
  using file = await SafetensorsFile.open(sharedPath("golden/lora_train/lora_init.safetensors"));
  const out: Record<string, Float32Array> = {};
  for (const name of file.tensors.keys()) out[name] = await file.readFloat32(name);
  return out;
}

function sum(a: Float32Array): [number, number] {
  let s = 0;
  let abs = 0;
  for (const v of a) {
    s += v;
    abs += Math.abs(v);
  }
  return [s, abs];
}

/** Compares a tensor with a golden summary: first8 within `tol`, sums within `tol` * count. */
function compareSummary(label: string, got: Float32Array, want: Summary, tol: number): number {
  assert.equal(got.length, want.shape.reduce((a, b) => a * b, 1), `${label}: size`);
  let diff = 0;
  want.first8.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - got[i]!))));
  const [s, abs] = sum(got);
  // The sums are rounded to 7 significant digits; allow that rounding plus tol per element.
  const sumTol = tol * got.length + 5e-7 * Math.abs(want.abs_sum);
  assert.ok(diff <= tol, `${label}: first8 maxdiff ${diff} > ${tol}`);
  assert.ok(Math.abs(s - want.sum) <= sumTol, `${label}: sum ${s} vs ${want.sum}`);
  assert.ok(Math.abs(abs - want.abs_sum) <= sumTol, `${label}: abs_sum ${abs} vs ${want.abs_sum}`);
  return diff;
}

Deno.test({
  name: "loraTrainingStep() + AdamW match one step of train_text_to_image_lora.py on tiny_dummy",
  ignore: !hasShared,
  async fn() {
    const golden = readSharedJson<Golden>("golden/lora_train/lora_train.json");
    const run = golden.runs[0]!;
    const lora = await readLora();
    const latents = Float32Array.from(golden.batch.latents.values);
    const noise = Float32Array.from(golden.batch.noise.values);
    const shape = golden.batch.latents.shape;
    try {
      // The batch: DDPM schedule, noised latents and text states.
      const trainer = await loraTrainerFor(MODEL);
      for (const [t, a] of Object.entries(golden.batch.alphas_cumprod)) {
        assert.ok(
          Math.abs(trainer.schedule.alphasCumprod[Number(t)]! - a) <= 5e-7 * a,
          `acp[${t}]`,
        );
      }
      const noisy = addNoisePerItem(trainer.schedule.alphasCumprod, latents, noise, [run.timestep]);
      let d = 0;
      run.noisy_latents.values.forEach((v, i) => (d = Math.max(d, Math.abs(v - noisy[i]!))));
      // The golden latents and noise are rounded to 7 digits, the golden noisy latents were made
      // from the unrounded ones: up to ~1.5e-6 apart for |noise| < 4.
      console.log(`noisy latents: maxdiff ${d.toExponential(2)} (tolerance 2e-6)`);
      assert.ok(d <= 2e-6);
      const states = await (await trainer.textStates()).encode([PROMPT]);
      d = 0;
      golden.batch.encoder_hidden_states.values.forEach((
        v,
        i,
      ) => (d = Math.max(d, Math.abs(v - states[i]!))));
      console.log(`text states: maxdiff ${d.toExponential(2)} (tolerance 1e-5)`);
      assert.ok(d <= 1e-5);

      // One step: loss and gradients.
      const { loss, grads } = await loraTrainingStep({
        model: MODEL,
        lora,
        alpha: 4,
        shape,
        latents,
        noise,
        timesteps: [run.timestep],
        prompt: PROMPT,
      });
      console.log(
        `loss ${loss} vs ${run.loss0}: diff ${
          Math.abs(loss - run.loss0).toExponential(2)
        } (tolerance 1e-6)`,
      );
      assert.ok(Math.abs(loss - run.loss0) <= 1e-6);
      assert.deepEqual(Object.keys(grads).sort(), Object.keys(run.grads).sort());
      let gradDiff = 0;
      for (const [name, want] of Object.entries(run.grads)) {
        gradDiff = Math.max(gradDiff, compareSummary(`grad ${name}`, grads[name]!, want, 1e-7));
        if (want.abs_sum === 0) {
          assert.ok(grads[name]!.every((v) => v === 0), `${name} is exactly 0`);
        }
      }
      console.log(`gradients: first8 maxdiff ${gradDiff.toExponential(2)} (tolerance 1e-7)`);

      // AdamW step 1.
      const params: Record<string, Float32Array> = {};
      for (const [k, v] of Object.entries(lora)) params[k] = v.slice();
      const opt = new AdamW({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 });
      opt.step(params, grads);
      let paramDiff = 0;
      for (const [name, want] of Object.entries(run.after_step1)) {
        paramDiff = Math.max(paramDiff, compareSummary(`param ${name}`, params[name]!, want, 1e-6));
      }
      console.log(
        `parameters after AdamW step 1: first8 maxdiff ${
          paramDiff.toExponential(2)
        } (tolerance 1e-6)`,
      );
      assert.ok(
        lora[Object.keys(run.grads)[0]!]!.every((v, i) =>
          v === lora[Object.keys(run.grads)[0]!]![i]
        ),
      );

      // Ten more updates on the same batch: the float64 run's losses (7 significant digits).
      const losses = [loss];
      for (let i = 1; i < run.fp64.losses.length; i++) {
        const step = await loraTrainingStep({
          model: MODEL,
          lora: params,
          alpha: 4,
          shape,
          latents,
          noise,
          timesteps: [run.timestep],
          prompt: PROMPT,
        });
        losses.push(step.loss);
        opt.step(params, step.grads);
      }
      let lossDiff = 0;
      run.fp64.losses.forEach((
        v,
        i,
      ) => (lossDiff = Math.max(lossDiff, Math.abs(v - losses[i]!) / v)));
      console.log(
        `losses over 11 updates vs the float64 run: max relative diff ${
          lossDiff.toExponential(2)
        } (tolerance 1e-5)`,
      );
      assert.ok(lossDiff <= 1e-5);
    } finally {
      await releaseLoraTrainers();
    }
  },
});

Deno.test({
  name:
    "LoraTrainer.step() v-prediction: loss is the MSE to sqrt(a) noise - sqrt(1-a) x0; batch items with their own timesteps",
  ignore: !hasShared,
  async fn() {
    const golden = readSharedJson<Golden>("golden/lora_train/lora_train.json");
    const lora = await readLora();
    // Non-zero up matrices, so that the down gradients are not trivially zero.
    for (const [k, v] of Object.entries(lora)) {
      if (k.endsWith("lora_up.weight")) v.forEach((_, i) => (v[i] = 0.05 * Math.sin(i + k.length)));
    }
    const x0 = Float32Array.from(golden.batch.latents.values);
    const noise = Float32Array.from(golden.batch.noise.values);
    const n = x0.length;
    const trainer = await loraTrainerFor(MODEL);
    try {
      const acp = trainer.schedule.alphasCumprod;
      const one = await trainer.step({
        lora,
        alpha: 4,
        shape: [1, 4, 32, 32],
        latents: x0,
        noise,
        timesteps: [900],
        prompt: PROMPT,
        predictionType: "v_prediction",
      });
      const v = velocityPerItem(acp, x0, noise, [900]);
      const a = acp[900]!;
      let mse = 0;
      for (let i = 0; i < n; i++) {
        const want = Math.sqrt(a) * noise[i]! - Math.sqrt(1 - a) * x0[i]!;
        assert.ok(Math.abs(v[i]! - want) <= 1e-6);
        mse += (one.prediction[i]! - v[i]!) ** 2;
      }
      mse /= n;
      console.log(`v-prediction loss ${one.loss} vs MSE of its prediction ${mse}`);
      assert.ok(Math.abs(one.loss - mse) <= 1e-6 * mse);

      // A batch of two (t = 900 and t = 500, different latents and prompts) against the two
      // items alone: MSE over the batch is the mean of the items' MSEs, and so are the gradients.
      const x1 = x0.map((x, i) => 0.5 * x + 0.1 * Math.cos(i));
      const n1 = noise.map((e, i) => noise[(i + 17) % n]! * 0.9 + 0.05 * e);
      const single = await trainer.step({
        lora,
        alpha: 4,
        shape: [1, 4, 32, 32],
        latents: x1,
        noise: n1,
        timesteps: [500],
        prompt: "a red fox",
        predictionType: "v_prediction",
      });
      const both = await trainer.step({
        lora,
        alpha: 4,
        shape: [2, 4, 32, 32],
        latents: Float32Array.from([...x0, ...x1]),
        noise: Float32Array.from([...noise, ...n1]),
        timesteps: [900, 500],
        prompt: [PROMPT, "a red fox"],
        predictionType: "v_prediction",
      });
      const meanLoss = (one.loss + single.loss) / 2;
      console.log(`batch of 2 loss ${both.loss} vs mean of items ${meanLoss}`);
      assert.ok(Math.abs(both.loss - meanLoss) <= 1e-5 * meanLoss);
      let worst = 0;
      for (const [name, g] of Object.entries(both.grads)) {
        const a0 = one.grads[name]!;
        const a1 = single.grads[name]!;
        let scale = 0;
        for (let i = 0; i < g.length; i++) {
          scale = Math.max(scale, Math.abs(a0[i]!), Math.abs(a1[i]!));
        }
        for (let i = 0; i < g.length; i++) {
          worst = Math.max(worst, Math.abs(g[i]! - (a0[i]! + a1[i]!) / 2) / Math.max(scale, 1e-12));
        }
      }
      console.log(
        `batch of 2 gradients vs mean of items: max diff ${
          worst.toExponential(2)
        } of scale (tolerance 1e-3)`,
      );
      assert.ok(worst <= 1e-3);
    } finally {
      await releaseLoraTrainers();
    }
  },
});
