/**
 * `denoise animate` benchmarks.
 *
 * `deno task bench` runs the short part: the video loop's own host-side work for one step of a
 * 16-frame clip at 512 px (64x64 latents) with a UNet that does nothing: layout conversions to and
 * from frames-as-batch, context-window gathering and fusing, guidance. Once without windows,
 * once with 8-frame windows overlapping by 2.
 *
 * `DENOISE_BENCH_FULL=1 deno run -A bench/animate_bench.ts` runs the whole pipeline in-process
 * (`runAnimateJob`, what the CLI calls) on an SD 1.5-sized model with random weights (UNet
 * 3.44 GB, CLIP-L text encoder, SD VAE, fp32) and an mm_sd_v15_v2-shaped motion module (random,
 * Diffusers MotionAdapter folder), written once to `$DENOISE_BENCH_DIR` (default a temp folder,
 * removed unless DENOISE_BENCH_KEEP=1). It reports wall time and peak RSS (VmHWM, reset at each
 * phase) of: model and motion-UNet setup plus prompt encoding, the denoising steps, and the VAE
 * decode (frame by frame). Knobs: DENOISE_BENCH_FRAMES (16), DENOISE_BENCH_SIZE (512),
 * DENOISE_BENCH_STEPS (1), DENOISE_BENCH_CFG (7.5), DENOISE_BENCH_THREADS (ORT's default),
 * DENOISE_BENCH_LOW_MEMORY=1 (`--low-memory`: text encoder freed before the loop, motion UNet
 * before decoding). The build cache is `$DENOISE_BENCH_DIR/cache`: kept, a rerun's setup is a hit.
 */
import { join } from "node:path";
import { AnimateJob } from "../lib/job/animate.ts";
import {
  clipTextParameterShapes,
  fullClipTextConfig,
  fullUnetConfig,
  fullVaeConfig,
  unetParameterShapes,
  vaeParameterShapes,
} from "../lib/models/random.ts";
import {
  motionConfigJson,
  motionParameterShapes,
  parseMotionConfig,
} from "../lib/models/motion.ts";
import { runAnimateJob } from "../lib/pipeline/animate_run.ts";
import { TorchCpuGenerator } from "../lib/rng/torch_cpu_generator.ts";
import { denoiseVideo } from "../lib/pipeline/video_loop.ts";
import type { Scheduler } from "../lib/schedulers/mod.ts";
import { SD15_UNET, SD_VAE } from "../tests/fixtures/configs.ts";
import { writeByteTokenizer } from "../tests/fixtures/tokenizer.ts";
import { writeRandomSafetensors } from "./random_safetensors.ts";

// ---------------------------------------------------------------------------------------------
// Short benchmarks (always)

const LOOP_SHAPE: [number, number, number, number, number] = [1, 4, 16, 64, 64];
const loopLatents = new TorchCpuGenerator(0).randn(LOOP_SHAPE);
const embedding = { data: new Float32Array(77 * 768), tokens: 77, dim: 768 };
const oneStep: Scheduler = {
  timesteps: Float64Array.of(999),
  initNoiseSigma: 1,
  order: 1,
  setTimesteps() {},
  scaleModelInput: (x) => x,
  step: (eps) => eps,
  addNoise: (x) => x,
  img2imgTimesteps: () => ({ timesteps: new Float64Array(), startIndex: 0 }),
};

for (const context of [undefined, { length: 8, overlap: 2 }]) {
  Deno.bench(
    `video loop host work, 16 frames 64x64 latents, CFG, ${
      context ? "8-frame windows" : "one window"
    }`,
    { group: "video-loop" },
    async () => {
      await denoiseVideo({
        scheduler: oneStep,
        latents: loopLatents,
        shape: LOOP_SHAPE,
        conditioning: () => ({
          uncond: { embedding },
          conds: [{ weight: 1, frames: [{ embedding }] }],
        }),
        guidanceScale: 7.5,
        unet: (input) => Promise.resolve(input.sample),
        rng: new TorchCpuGenerator(0),
        maxFrames: 32,
        context,
      });
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Full size (DENOISE_BENCH_FULL=1)

/** CLIP ViT-L/14 text encoder (SD 1.x `text_encoder/config.json`, the values that matter). */
const CLIP_L = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_attention_heads: 12,
  num_hidden_layers: 12,
  max_position_embeddings: 77,
  vocab_size: 49408,
  hidden_act: "quick_gelu",
  projection_dim: 768,
};

function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

function resetPeakRss(): void {
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
}

const GB = 1e9;

async function writeJson(path: string, value: unknown): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(value, null, 2) + "\n");
}

/** Writes the SD 1.5-sized Diffusers folder and motion adapter (skipped when present). */
async function writeModels(dir: string): Promise<{ model: string; motion: string; bytes: number }> {
  const model = join(dir, "sd15_random");
  const motion = join(dir, "mm_v15_v2_random");
  let bytes = 0;
  const component = async (
    name: string,
    config: Record<string, unknown>,
    file: string,
    shapes: Map<string, number[]>,
  ) => {
    const folder = join(model, name);
    await Deno.mkdir(folder, { recursive: true });
    await writeJson(join(folder, "config.json"), config);
    const path = join(folder, file);
    bytes += await Deno.stat(path).then((s) => s.size).catch(() =>
      writeRandomSafetensors(path, shapes)
    );
  };
  await component(
    "unet",
    fullUnetConfig(SD15_UNET),
    "diffusion_pytorch_model.safetensors",
    unetParameterShapes(SD15_UNET),
  );
  await component(
    "vae",
    fullVaeConfig(SD_VAE),
    "diffusion_pytorch_model.safetensors",
    vaeParameterShapes(SD_VAE),
  );
  const clip = fullClipTextConfig(CLIP_L, false);
  await component("text_encoder", clip, "model.safetensors", clipTextParameterShapes(clip, false));
  await writeByteTokenizer(join(model, "tokenizer"));
  await Deno.mkdir(join(model, "scheduler"), { recursive: true });
  await writeJson(join(model, "scheduler", "scheduler_config.json"), {
    _class_name: "EulerDiscreteScheduler",
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    beta_start: 0.00085,
    num_train_timesteps: 1000,
    prediction_type: "epsilon",
    steps_offset: 1,
    timestep_spacing: "leading",
  });
  await writeJson(join(model, "model_index.json"), {
    _class_name: "StableDiffusionPipeline",
    _diffusers_version: "0.27.2",
    scheduler: ["diffusers", "EulerDiscreteScheduler"],
    text_encoder: ["transformers", "CLIPTextModel"],
    tokenizer: ["transformers", "CLIPTokenizer"],
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
    safety_checker: [null, null],
    feature_extractor: [null, null],
    requires_safety_checker: false,
  });
  // mm_sd_v15_v2: 4 blocks, 2 motion layers per block, a mid block, 32 positions.
  const mmConfig = parseMotionConfig({ motion_max_seq_length: 32 });
  await Deno.mkdir(motion, { recursive: true });
  await writeJson(join(motion, "config.json"), {
    _class_name: "MotionAdapter",
    ...motionConfigJson(mmConfig),
  });
  const mmPath = join(motion, "diffusion_pytorch_model.safetensors");
  bytes += await Deno.stat(mmPath).then((s) => s.size).catch(() =>
    writeRandomSafetensors(mmPath, motionParameterShapes(mmConfig))
  );
  return { model, motion, bytes };
}

async function fullBenchmark(): Promise<void> {
  const dir = Deno.env.get("DENOISE_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "denoise-animate-bench-" });
  const keep = Deno.env.get("DENOISE_BENCH_KEEP") === "1";
  const frames = Number(Deno.env.get("DENOISE_BENCH_FRAMES") ?? 16);
  const size = Number(Deno.env.get("DENOISE_BENCH_SIZE") ?? 512);
  const steps = Number(Deno.env.get("DENOISE_BENCH_STEPS") ?? 1);
  const cfg = Number(Deno.env.get("DENOISE_BENCH_CFG") ?? 7.5);
  const threads = Deno.env.get("DENOISE_BENCH_THREADS");
  const lowMemory = Deno.env.get("DENOISE_BENCH_LOW_MEMORY") === "1";
  const rows: Array<[string, string]> = [];
  const log = (k: string, v: string) => {
    rows.push([k, v]);
    console.error(`${k}: ${v}`);
  };
  await Deno.mkdir(dir, { recursive: true });
  try {
    let t = performance.now();
    const { model, motion, bytes } = await writeModels(dir);
    log(
      "weights (written once)",
      `${(bytes / GB).toFixed(2)} GB, ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    const job = AnimateJob.parse({
      command: "animate",
      prompt: "a red fox running in snow",
      model,
      motionModule: motion,
      frames,
      width: size,
      height: size,
      steps,
      cfg,
      seed: 0,
    });
    // Phases follow the pipeline's progress events: setup ends at the first denoise event,
    // the loop at the first decode event.
    const phases: Array<{ name: string; seconds: number; rss: number }> = [];
    let phase = "setup: open the model, encode the prompt, build or load the motion UNet";
    resetPeakRss();
    t = performance.now();
    const next = (name: string) => {
      phases.push({ name: phase, seconds: (performance.now() - t) / 1000, rss: peakRss() });
      phase = name;
      resetPeakRss();
      t = performance.now();
    };
    const made = await runAnimateJob(
      {
        cacheDir: join(dir, "cache"),
        version: "bench",
        lowMemory,
        ...(threads !== undefined ? { threads: Number(threads) } : {}),
      },
      job,
      {
        onProgress: (e) => {
          if (e.task === "denoise" && e.step === 0) {
            next(
              `${steps} denoising step(s), ${cfg > 1 ? 2 * frames : frames} frames per UNet call`,
            );
          } else if (e.task === "decode" && e.step === 0) {
            next(`VAE decode, ${frames} frames one at a time`);
          }
        },
      },
    );
    next("done");
    for (const p of phases) {
      log(p.name, `${p.seconds.toFixed(1)} s, peak RSS ${(p.rss / GB).toFixed(2)} GB`);
    }
    log("clip", `${made.frames.length} frames of ${made.width}x${made.height}`);
  } finally {
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log("\n| measurement | value |\n|---|---|");
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await fullBenchmark();
}
