/**
 * ControlNet benchmarks: the cost of one denoising step with a ControlNet against one without.
 *
 * `deno task bench` runs the short part: a tiny SD 1.x-shaped UNet step alone (the baseline) and
 * with a tiny ControlNet before it, at the model level (one UNet graph with residual inputs, fed
 * zeros without a net) and through the pipeline path (a tiny model opened as StableDiffusion: the
 * plain UNet graph without a net; with one, the ControlNet extension's loop hook, which runs the
 * net registered as a component and switches the call to the residual UNet).
 *
 * `DENOISE_BENCH_CONTROLNET=1 deno run -A bench/controlnet_bench.ts` measures the real shapes at
 * 256 px (32x32 latents): an SD 1.5-shaped UNet (`runwayml/stable-diffusion-v1-5` config) and an
 * SD 1.5-shaped ControlNet (`lllyasviel/control_v11p_sd15_canny` config), random weights written
 * once (3.4 GB + 1.4 GB fp32) to `$DENOISE_BENCH_DIR` (default a temp folder, removed afterwards
 * unless DENOISE_BENCH_KEEP=1). `DENOISE_BENCH_FULL=1` also runs 512 px (64x64 latents). A step is
 * batch 2 (classifier-free guidance) with a 77-token context: without a net, one UNet evaluation;
 * with one, the ControlNet then the UNet fed its residuals. One UNet graph (with residual inputs,
 * fed zeros for the step without a net) serves both, so the UNet costs the same in both. The two
 * kinds of step alternate (`DENOISE_BENCH_RUNS` pairs, default 3, after a warm-up of each), so a
 * machine whose load changes affects both alike; every pair's ratio is printed, then a Markdown
 * table for docs/performance.md.
 */
import { join } from "node:path";
import { createCachedSession } from "../lib/onnx/cache.ts";
import { serializeModel } from "../lib/onnx/model_file.ts";
import {
  createSession,
  type HostTensor,
  hostTensor,
  type OnnxSession,
} from "../lib/onnx/session.ts";
import { tensorSources } from "../lib/onnx/tensor_sources.ts";
import { SafetensorsFile } from "../lib/weights/safetensors.ts";
import { parseUnetConfig, type UnetConfig } from "../lib/models/config.ts";
import {
  buildControlnet,
  controlnetConditioningScales,
  controlnetResidualSpecs,
} from "../lib/models/controlnet.ts";
import { type ControlnetConfig, parseControlnetConfig } from "../lib/models/controlnet_config.ts";
import { memoryWeights } from "../lib/models/layers.ts";
import {
  controlnetParameterShapes,
  randomWeights,
  unetParameterShapes,
} from "../lib/models/random.ts";
import { buildUnet } from "../lib/models/unet.ts";
import { SD15_UNET, TINY_SD15_UNET } from "../tests/fixtures/configs.ts";
import { TINY_MODELS } from "../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../tests/fixtures/tokenizer.ts";
import { encodeImage } from "../lib/image/codec.ts";
import { ControlnetJob } from "../lib/job/controlnet.ts";
import { createRandomControlnet, createRandomModel } from "../lib/models/random.ts";
import { ControlImages } from "../lib/pipeline/control_image.ts";
import { controlnetExtension } from "../lib/pipeline/controlnet.ts";
import type { StepState, UnetInput } from "../lib/pipeline/denoise.ts";
import { StableDiffusion } from "../lib/pipeline/stable_diffusion.ts";
import { writeRandomSafetensors } from "./random_safetensors.ts";

/** lllyasviel/control_v11p_sd15_canny config.json (the values that differ from defaults). */
const SD15_CONTROLNET = { cross_attention_dim: 768 };
const TINY_CONTROLNET = { ...TINY_SD15_UNET, conditioning_embedding_out_channels: [8, 16, 16, 32] };

function feedsFor(unet: UnetConfig, net: ControlnetConfig, batch: number, latent: number) {
  const cross = unet.crossAttentionDim[0]!;
  const sample = new Float32Array(batch * 4 * latent * latent);
  for (let i = 0; i < sample.length; i++) sample[i] = Math.sin(i * 0.1);
  const ehs = new Float32Array(batch * 77 * cross);
  for (let i = 0; i < ehs.length; i++) ehs[i] = Math.cos(i * 0.01);
  const side = latent * 8;
  const cond = new Float32Array(batch * 3 * side * side);
  for (let i = 0; i < cond.length; i++) cond[i] = (i * 7919) % 13 === 0 ? 1 : 0;
  const common = {
    sample: hostTensor("float32", sample, [batch, 4, latent, latent]),
    timestep: hostTensor("float32", Float32Array.of(500), [1]),
    encoder_hidden_states: hostTensor("float32", ehs, [batch, 77, cross]),
  };
  const scales = controlnetConditioningScales(net, 1);
  const netFeeds = {
    ...common,
    controlnet_cond: hostTensor("float32", cond, [batch, 3, side, side]),
    conditioning_scales: hostTensor("float32", scales, [scales.length]),
  };
  const zeros: Record<string, HostTensor> = {};
  for (const s of controlnetResidualSpecs(net)) {
    const h = Math.ceil(latent / s.downscale);
    zeros[s.name] = hostTensor("float32", new Float32Array(batch * s.channels * h * h), [
      batch,
      s.channels,
      h,
      h,
    ]);
  }
  return { common, netFeeds, zeros };
}

/** One step without a net (UNet, zero residuals) and with one (ControlNet, then UNet). */
function steps(unet: OnnxSession, net: OnnxSession, feeds: ReturnType<typeof feedsFor>) {
  return {
    without: async () => {
      await unet.run({ ...feeds.common, ...feeds.zeros });
    },
    with: async () => {
      const residuals = await net.run(feeds.netFeeds);
      await unet.run({ ...feeds.common, ...residuals });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Short benchmarks (always)

const tinyUnetConfig = parseUnetConfig(TINY_SD15_UNET);
const tinyNetConfig = parseControlnetConfig(TINY_CONTROLNET);
let tiny: ReturnType<typeof steps> | undefined;
async function tinySteps() {
  if (tiny !== undefined) return tiny;
  const unetWeights = memoryWeights(randomWeights(unetParameterShapes(TINY_SD15_UNET), 0));
  const netWeights = memoryWeights(randomWeights(controlnetParameterShapes(TINY_CONTROLNET), 1));
  const unet = await createSession(
    await serializeModel(buildUnet(tinyUnetConfig, unetWeights, { controlnetResiduals: true })),
    { threads: 2 },
  );
  const net = await createSession(
    await serializeModel(buildControlnet(tinyNetConfig, netWeights)),
    { threads: 2 },
  );
  tiny = steps(unet, net, feedsFor(tinyUnetConfig, tinyNetConfig, 2, 16));
  return tiny;
}

Deno.bench("tiny UNet step 2x4x16x16, no ControlNet", {
  group: "tiny-controlnet",
  baseline: true,
}, async (b) => {
  const s = await tinySteps();
  b.start();
  await s.without();
  b.end();
});

Deno.bench("tiny UNet step 2x4x16x16 with a tiny ControlNet", {
  group: "tiny-controlnet",
}, async (b) => {
  const s = await tinySteps();
  b.start();
  await s.with();
  b.end();
});

// ---------------------------------------------------------------------------------------------
// The pipeline path (always): a tiny SD 1.x-shaped model opened as StableDiffusion, its UNet
// call without a net (the plain "unet" graph), and with the ControlNet extension's loop hook
// (net registered as a component, residual UNet "unet_controlnet") before the same call.

let pipeline: { without: () => Promise<void>; with: () => Promise<void> } | undefined;
async function pipelineSteps() {
  if (pipeline !== undefined) return pipeline;
  const dir = await Deno.makeTempDir({ prefix: "denoise-controlnet-bench-pipeline-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  const model = join(dir, "model");
  await createRandomModel(TINY_MODELS.sd15, model, {
    seed: 0,
    tokenizerDir: await writeByteTokenizer(join(dir, "tokenizer")),
  });
  await createRandomControlnet(TINY_CONTROLNET, join(dir, "net"), { seed: 1 });
  const env = { cacheDir: join(dir, "cache"), threads: 2, version: "bench" };
  const sd = await StableDiffusion.open(model, { cacheDir: env.cacheDir, threads: 2 });
  const images = new ControlImages();
  const side = 128;
  const pixels = new Uint8Array(side * side * 3).map((_, i) => (i * 7919) % 13 === 0 ? 255 : 0);
  const sha = images.add({
    bytes: await encodeImage({ width: side, height: side, channels: 3, data: pixels }, "png"),
    label: "bench",
  });
  const job = ControlnetJob.parse({
    command: "controlnet",
    controls: [{ net: join(dir, "net"), sha256: sha }],
  });
  const { hooks } = await controlnetExtension({ env, images }).prepare({ sd, job, inputs: {} });
  const unet = sd.unetCall();
  const cross = tinyUnetConfig.crossAttentionDim[0]!;
  const latent = new Float32Array(4 * 16 * 16).map((_, i) => Math.sin(i * 0.1));
  const input: UnetInput = {
    sample: new Float32Array(2 * latent.length).map((_, i) => latent[i % latent.length]!),
    sampleShape: [2, 4, 16, 16],
    timestep: 500,
    hiddenStates: new Float32Array(2 * 77 * cross).map((_, i) => Math.cos(i * 0.01)),
    hiddenShape: [2, 77, cross],
    extra: {},
  };
  const embedding = { data: new Float32Array(77 * cross), tokens: 77, dim: cross };
  const state: StepState = {
    i: 0,
    loopIndex: 0,
    loopLength: 20,
    t: 500,
    n: 1,
    passes: [{ embedding }, { embedding }],
    withUncond: true,
    latentInput: latent,
  };
  pipeline = {
    without: async () => {
      await unet(input);
    },
    with: async () => {
      await unet(await hooks[0]!.beforeUnet!(input, state));
    },
  };
  return pipeline;
}

Deno.bench("pipeline path: tiny model step, no ControlNet (plain UNet graph)", {
  group: "tiny-controlnet-pipeline",
  baseline: true,
}, async (b) => {
  const s = await pipelineSteps();
  b.start();
  await s.without();
  b.end();
});

Deno.bench("pipeline path: tiny model step with the ControlNet hook (net + residual UNet)", {
  group: "tiny-controlnet-pipeline",
}, async (b) => {
  const s = await pipelineSteps();
  b.start();
  await s.with();
  b.end();
});

// ---------------------------------------------------------------------------------------------
// SD 1.5 shapes (DENOISE_BENCH_CONTROLNET=1: 256 px; DENOISE_BENCH_FULL=1: 256 and 512 px)

async function time(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function sd15Benchmark(latents: number[]): Promise<void> {
  const dir = Deno.env.get("DENOISE_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "denoise-controlnet-bench-" });
  const keep = Deno.env.get("DENOISE_BENCH_KEEP") === "1";
  const runs = Number(Deno.env.get("DENOISE_BENCH_RUNS") ?? "3");
  const rows: Array<[string, string]> = [];
  const log = (k: string, v: string) => {
    rows.push([k, v]);
    console.error(`${k}: ${v}`);
  };
  await Deno.mkdir(dir, { recursive: true });
  const sessions: OnnxSession[] = [];
  try {
    const unetConfig = parseUnetConfig(SD15_UNET);
    const netConfig = parseControlnetConfig(SD15_CONTROLNET);
    const open = async (
      name: string,
      shapes: Map<string, number[]>,
      build: (f: SafetensorsFile) => ReturnType<typeof buildUnet>,
    ) => {
      const path = join(dir, `${name}.safetensors`);
      try {
        await Deno.stat(path);
      } catch {
        const t0 = performance.now();
        const size = await writeRandomSafetensors(path, shapes);
        log(
          `write random ${name} weights (once)`,
          `${(size / 1e9).toFixed(2)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        );
      }
      const file = await SafetensorsFile.open(path);
      const t0 = performance.now();
      const cached = await createCachedSession(
        join(dir, "cache"),
        `bench-${name}`,
        () => build(file),
        { cacheOptimized: false },
      );
      file.close();
      log(`${name} session (ORT optimises)`, `${((performance.now() - t0) / 1000).toFixed(1)} s`);
      sessions.push(cached.session);
      return cached.session;
    };
    const unet = await open(
      "unet",
      unetParameterShapes(SD15_UNET),
      (f) => buildUnet(unetConfig, tensorSources(f), { controlnetResiduals: true }),
    );
    const net = await open(
      "controlnet",
      controlnetParameterShapes(SD15_CONTROLNET),
      (f) => buildControlnet(netConfig, tensorSources(f)),
    );
    for (const latent of latents) {
      const s = steps(unet, net, feedsFor(unetConfig, netConfig, 2, latent));
      await s.without(); // warm-up: allocations, first-run kernels
      await s.with();
      const without: number[] = [];
      const withNet: number[] = [];
      for (let r = 0; r < runs; r++) {
        without.push(await time(s.without));
        withNet.push(await time(s.with));
        console.error(
          `${latent * 8} px pair ${r + 1}: ${without[r]!.toFixed(2)} s, ${
            withNet[r]!.toFixed(2)
          } s ` +
            `(x${(withNet[r]! / without[r]!).toFixed(2)})`,
        );
      }
      const px = `${latent * 8} px (2x4x${latent}x${latent})`;
      log(`step without ControlNet, ${px}`, without.map((t) => t.toFixed(2)).join(", ") + " s");
      log(`step with ControlNet, ${px}`, withNet.map((t) => t.toFixed(2)).join(", ") + " s");
      log(
        `ratio with/without, ${px}`,
        `x${(median(withNet) / median(without)).toFixed(2)} (medians; pairs ${
          withNet.map((t, i) => (t / without[i]!).toFixed(2)).join(", ")
        })`,
      );
    }
  } finally {
    for (const s of sessions) await s.release();
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log("\n| measurement | value |\n|---|---|");
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await sd15Benchmark([32, 64]);
} else if (Deno.env.get("DENOISE_BENCH_CONTROLNET") === "1") {
  await sd15Benchmark([32]);
}
