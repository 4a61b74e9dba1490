/**
 * Issue 17 item 8: weights that do not fit the model are bad input (exit 3) named by tensor and
 * both shapes, not a bug (exit 1): a tensor of the wrong shape in the model, a LyCORIS file
 * whose shapes do not fit it, a LoRA whose own tensors do not fit together.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SafetensorsFile, writeSafetensors } from "../lib/weights/safetensors.ts";
import { runCli } from "./cli.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const ARGS = ["--steps", "1", "--seed", "0", "-q"];

function assertBadInput(r: { code: number; stderr: string }, message: RegExp) {
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /report it as a bug/);
}

Deno.test("a misshapen model tensor, a misfit LyCORIS file and a broken LoRA exit 3 naming shapes", async () => {
  const home = await Deno.makeTempDir({ prefix: "denoise-badw-home-" });
  const tokenizer = await writeByteTokenizer(await Deno.makeTempDir({ prefix: "denoise-tok-" }));
  const model = await makeTinyModel("sd15", { seed: 2, tokenizerDir: tokenizer });
  const env = { DENOISE_HOME: home };
  const out = join(home, "out.png");
  try {
    // LyCORIS LoKr: kron([4, 4], [8, 6]) is [32, 24]; the tiny UNet's to_q is [32, 32].
    const lokr = join(home, "misfit_lokr.safetensors");
    const key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    await writeSafetensors(lokr, {
      [`${key}.lokr_w1`]: { dtype: "F32", shape: [4, 4], data: new Float32Array(16) },
      [`${key}.lokr_w2`]: { dtype: "F32", shape: [8, 6], data: new Float32Array(48) },
      [`${key}.alpha`]: { dtype: "F32", shape: [], data: new Float32Array([1]) },
    });
    assertBadInput(
      await runCli(["generate", "a cat", "-m", model, "--lora", lokr, ...ARGS, "-o", out], { env }),
      new RegExp(
        `denoise: Cannot apply LoRA "misfit_lokr.safetensors": "${key}" changes a weight of ` +
          `shape \\[32, 24\\], but "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.` +
          `weight" has shape \\[32, 32\\] \\(its tensors: lokr_w1 \\[4, 4\\], lokr_w2 \\[8, 6\\]`,
      ),
    );
    // A LoCon whose up and down disagree on the rank.
    const broken = join(home, "broken.safetensors");
    await writeSafetensors(broken, {
      [`${key}.lora_down.weight`]: { dtype: "F32", shape: [4, 32], data: new Float32Array(128) },
      [`${key}.lora_up.weight`]: { dtype: "F32", shape: [32, 3], data: new Float32Array(96) },
    });
    assertBadInput(
      await runCli(["generate", "a cat", "-m", model, "--lora", broken, ...ARGS, "-o", out], {
        env,
      }),
      /the tensors of "lora_unet_[a-z0-9_]+_to_q" do not fit together \(down \[4, 32\], up \[32, 3\]\)/,
    );

    // The model itself: conv_in.bias [32] saved as [16, 2].
    const unet = join(model, "unet", "diffusion_pytorch_model.safetensors");
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Uint8Array }> = {};
    {
      using file = await SafetensorsFile.open(unet);
      for (const [name, info] of file.tensors) {
        const shape = name === "conv_in.bias" ? [16, 2] : [...info.shape];
        tensors[name] = { dtype: "F32", shape, data: await file.read(name) };
      }
    }
    await writeSafetensors(unet, tensors);
    assertBadInput(
      await runCli(["generate", "a cat", "-m", model, ...ARGS, "-o", out], { env }),
      /^denoise: Cannot build UNet2DConditionModel: misshapen "conv_in.bias" \[16, 2\] \(expected \[32\]\)/,
    );
  } finally {
    await Deno.remove(home, { recursive: true });
    await Deno.remove(tokenizer, { recursive: true });
    await Deno.remove(join(model, ".."), { recursive: true });
  }
});
