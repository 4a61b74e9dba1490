import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { assertClose, type GoldenArray, readModelReference } from "../../tests/fixtures/golden.ts";
import { decodeImage } from "../image/codec.ts";
import type { OnnxModel } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor, type OnnxSession } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";
import { parseUnetConfig } from "./config.ts";
import {
  buildControlnet,
  controlnetConditioningScales,
  controlnetResidualSpecs,
} from "./controlnet.ts";
import { parseControlnetConfig } from "./controlnet_config.ts";
import { buildUnet } from "./unet.ts";

const SET = "tiny_sd_controlnet";

interface Stats {
  shape: number[];
  sum: number;
  abs_sum: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  first: number[];
}

interface Step {
  down: Array<GoldenArray | Stats>;
  mid: GoldenArray | Stats;
  unet_with_residuals?: GoldenArray;
}

interface Reference {
  raw: {
    cond_sha256_f32: string;
    cond_embedding: GoldenArray;
    t500: Step;
    t10: Step;
    t999: Step;
    "t500_scale0.5": Step & { conditioning_scale: number };
    t500_guess_mode: Step & { scales: number[] };
  };
}

type Outputs = Record<string, { data: Float32Array; dims: readonly number[] }>;

async function run(
  session: OnnxSession,
  feeds: Record<string, { data: Float32Array; dims: number[] }>,
): Promise<Outputs> {
  const hf: Record<string, ReturnType<typeof hostTensor>> = {};
  for (const [k, v] of Object.entries(feeds)) hf[k] = hostTensor("float32", v.data, v.dims);
  const out = await session.run(hf);
  const result: Outputs = {};
  for (const [k, v] of Object.entries(out)) {
    result[k] = { data: v.data as Float32Array, dims: v.dims };
  }
  return result;
}

async function sessionOf(model: OnnxModel): Promise<OnnxSession> {
  return await createSession(await serializeModel(model), { threads: 2 });
}

/** The control image as Diffusers' control_image_processor gives it: RGB / 255, [1, 3, H, W]. */
async function controlImage(name: string): Promise<{ data: Float32Array; dims: number[] }> {
  const image = await decodeImage(await Deno.readFile(sharedPath(`golden/models/${SET}/${name}`)));
  const plane = image.width * image.height;
  const data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) data[c * plane + i] = image.data[i * image.channels + c]! / 255;
  }
  return { data, dims: [1, 3, image.height, image.width] };
}

function isStats(x: GoldenArray | Stats): x is Stats {
  return (x as Stats).first !== undefined;
}

/** Compares a tensor with a reference: all values (1e-4), or the recorded statistics. */
function compare(actual: Float32Array, want: GoldenArray | Stats, label: string): void {
  if (!isStats(want)) {
    assertClose(actual, want.values, 1e-4, label);
    return;
  }
  assertClose(actual.subarray(0, want.first.length), want.first, 1e-4, `${label} first values`);
  let sum = 0, abs = 0, min = Infinity, max = -Infinity;
  for (const v of actual) {
    sum += v;
    abs += Math.abs(v);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const mean = sum / actual.length;
  let sq = 0;
  for (const v of actual) sq += (v - mean) ** 2;
  const std = Math.sqrt(sq / actual.length); // numpy .std(): population
  const diffs = {
    mean: Math.abs(mean - want.mean),
    std: Math.abs(std - want.std),
    min: Math.abs(min - want.min),
    max: Math.abs(max - want.max),
    absMean: Math.abs(abs - want.abs_sum) / actual.length,
  };
  console.log(`${label} stats: ${JSON.stringify(diffs)}`);
  for (const [k, d] of Object.entries(diffs)) {
    assert.ok(d <= 1e-4, `${label}: ${k} differs by ${d}`);
  }
}

Deno.test({
  name:
    "buildControlnet() matches Diffusers on tiny_sd_controlnet: embedding, residuals, UNet output, scale 0.5, guess mode",
  ignore: !hasShared,
  fn: async (t) => {
    const ref = readModelReference<Reference>(SET).raw;
    const dir = sharedPath(`golden/models/${SET}/controlnet`);
    const config = parseControlnetConfig(
      JSON.parse(await Deno.readTextFile(join(dir, "config.json"))),
    );
    assert.equal(config.base, "sd15");
    using file = await SafetensorsFile.open(join(dir, "diffusion_pytorch_model.safetensors"));
    const net = await sessionOf(
      buildControlnet(config, tensorSources(file), { conditioningEmbeddingOutput: true }),
    );
    const unetDir = sharedPath("golden/models/tiny_sd/pipeline/unet");
    const unetConfig = parseUnetConfig(
      JSON.parse(await Deno.readTextFile(join(unetDir, "config.json"))),
    );
    using unetFile = await SafetensorsFile.open(
      join(unetDir, "diffusion_pytorch_model.safetensors"),
    );
    const unet = await sessionOf(
      buildUnet(unetConfig, tensorSources(unetFile), { controlnetResiduals: true }),
    );
    try {
      const cond = await controlImage("control_edges.png");
      const sha = createHash("sha256").update(new Uint8Array(cond.data.buffer)).digest("hex");
      assert.equal(
        sha,
        ref.cond_sha256_f32,
        "control image tensor differs from Diffusers' preprocess",
      );
      const sample = { data: new TorchCpuGenerator(3).randn([1, 4, 16, 16]), dims: [1, 4, 16, 16] };
      const ehs = { data: new TorchCpuGenerator(4).randn([1, 77, 32]), dims: [1, 77, 32] };
      const specs = controlnetResidualSpecs(config);
      assert.equal(specs.length, 13);

      const step = async (t: number, scales: Float32Array, want: Step, label: string) => {
        const out = await run(net, {
          sample,
          timestep: { data: Float32Array.of(t), dims: [1] },
          encoder_hidden_states: ehs,
          controlnet_cond: cond,
          conditioning_scales: { data: scales, dims: [scales.length] },
        });
        specs.slice(0, -1).forEach((s, k) => {
          assert.deepEqual(out[s.name]!.dims, want.down[k]!.shape);
          compare(out[s.name]!.data, want.down[k]!, `${label} down ${k}`);
        });
        const mid = out["mid_block_additional_residual"]!;
        assert.deepEqual(mid.dims, want.mid.shape);
        compare(mid.data, want.mid, `${label} mid`);
        if (want.unet_with_residuals !== undefined) {
          const feeds: Record<string, { data: Float32Array; dims: number[] }> = {
            sample,
            timestep: { data: Float32Array.of(t), dims: [1] },
            encoder_hidden_states: ehs,
          };
          for (const s of specs) {
            feeds[s.name] = { data: out[s.name]!.data, dims: [...out[s.name]!.dims] };
          }
          const y = await run(unet, feeds);
          compare(y["out_sample"]!.data, want.unet_with_residuals, `${label} UNet with residuals`);
        }
        return out;
      };

      await t.step(
        "t=500: conditioning embedding, 12 down residuals, mid residual, UNet output",
        async () => {
          const out = await step(500, controlnetConditioningScales(config, 1), ref.t500, "t=500");
          compare(
            out["controlnet_cond_embedding"]!.data,
            ref.cond_embedding,
            "t=500 cond embedding",
          );
        },
      );
      await t.step("t=10 and t=999 (statistics), UNet output", async () => {
        await step(10, controlnetConditioningScales(config, 1), ref.t10, "t=10");
        await step(999, controlnetConditioningScales(config, 1), ref.t999, "t=999");
      });
      await t.step("t=500 at conditioning scale 0.5", async () => {
        const s = ref["t500_scale0.5"];
        assert.equal(s.conditioning_scale, 0.5);
        await step(500, controlnetConditioningScales(config, 0.5), s, "t=500 scale 0.5");
      });
      await t.step("t=500 in guess mode (logspace(-1, 0, 13) per residual)", async () => {
        const g = ref.t500_guess_mode;
        const scales = controlnetConditioningScales(config, 1, { guessMode: true });
        assertClose(scales, g.scales, 1e-7, "guess-mode scales");
        await step(500, scales, g, "t=500 guess mode");
      });
    } finally {
      await net.release();
      await unet.release();
    }
  },
});
