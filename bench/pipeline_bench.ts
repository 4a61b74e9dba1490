/**
 * End-to-end txt2img benchmarks: the real pipeline (`StableDiffusion.open` + `txt2img` with
 * `conditionerFor`), timed around the UNet callback so the time spent outside ORT shows.
 *
 * `deno task bench` runs the short part: txt2img on the tiny SD 1.x-shaped random model, and the
 * denoising loop's own JavaScript cost per step at SD 1.5's 64x64 latents (CFG on, a UNet that
 * returns at once), which is the whole overhead around `session.run` at full size.
 *
 * `DENOISE_BENCH_FULL=1 deno run -A bench/pipeline_bench.ts` (or `DENOISE_BENCH_FULL=1 deno task
 * bench`, which also runs the other full benches) writes a full-size SD 1.5 model with random
 * weights (about 4.3 GB fp32: the real unet, vae and CLIP-L text encoder configs, generated in
 * chunks) and a byte-level tokenizer into `$DENOISE_BENCH_DIR` (default a temp folder, removed
 * afterwards unless DENOISE_BENCH_KEEP=1), then runs txt2img twice, each from a fresh
 * `StableDiffusion.open`: 512x512 with an empty build cache, then 256x256 with the cache filled
 * (batch 1, CFG 7.5, so the UNet runs on batch 2). It reports seconds per denoising step, time
 * to first step (open to the end of the first UNet call), prompt encoding and VAE decode times,
 * peak RSS (Linux VmHWM, reset before each run) and the share of the denoising loop spent
 * outside the UNet callback (which is `session.run` plus building its input tensors). Steps:
 * `DENOISE_BENCH_STEPS_512` (default 3) and `DENOISE_BENCH_STEPS_256` (default 5); ORT threads:
 * `DENOISE_BENCH_THREADS` (default ORT's choice). Results are printed as a Markdown table.
 */
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import {
  clipTextParameterShapes,
  createRandomModel,
  fullClipTextConfig,
  fullUnetConfig,
  fullVaeConfig,
  unetParameterShapes,
  vaeParameterShapes,
} from "../lib/models/random.ts";
import { conditionerFor } from "../lib/pipeline/conditioning.ts";
import { denoiseLatents, type StepConditioning, type UnetCall } from "../lib/pipeline/denoise.ts";
import { txt2img } from "../lib/pipeline/generate.ts";
import { batchGenerator, makeScheduler } from "../lib/pipeline/sampling.ts";
import { StableDiffusion } from "../lib/pipeline/stable_diffusion.ts";
import {
  SD15_UNET,
  SD_VAE,
  TINY_CLIP_TEXT,
  TINY_SD15_UNET,
  TINY_VAE,
} from "../tests/fixtures/configs.ts";
import { makeTinyModel } from "../tests/fixtures/random_model.ts";
import { writeByteTokenizer } from "../tests/fixtures/tokenizer.ts";

const PROMPT = {
  prompt: "a photo of a cat sitting on a wooden table, (highly detailed:1.1)",
  negative: "blurry",
  clipSkip: 1,
  promptSyntax: "a1111" as const,
  emphasis: "original" as const,
};

/** runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json. */
const SD15_SCHEDULER = {
  _class_name: "PNDMScheduler",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  trained_betas: null,
};

/**
 * runwayml/stable-diffusion-v1-5 text_encoder/config.json (CLIP ViT-L/14's text tower); the
 * fixtures hold no full-size text config.
 */
const SD15_CLIP_TEXT = {
  attention_dropout: 0.0,
  bos_token_id: 0,
  dropout: 0.0,
  eos_token_id: 2,
  hidden_act: "quick_gelu",
  hidden_size: 768,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  torch_dtype: "float32",
  vocab_size: 49408,
};

// ---------------------------------------------------------------------------------------------
// Short benchmarks (always)

const tinyTokenizer = await writeByteTokenizer(
  join(await Deno.makeTempDir({ prefix: "denoise-pipeline-bench-tok-" }), "tokenizer"),
);
const tinyDir = await makeTinyModel("sd15", { seed: 0, tokenizerDir: tinyTokenizer });
const tinyCache = await Deno.makeTempDir({ prefix: "denoise-pipeline-bench-cache-" });
let tinySd: StableDiffusion | undefined;

Deno.bench("txt2img() tiny SD 1.x model, 64x64, 4 steps, CFG 7.5", {
  group: "tiny-pipeline",
}, async (b) => {
  tinySd ??= await StableDiffusion.open(tinyDir, { cacheDir: tinyCache, threads: 2 });
  b.start();
  await txt2img(tinySd, {
    steps: 4,
    cfg: 7.5,
    sampler: "EulerDiscreteScheduler",
    seeds: [0n],
    rng: "cpu",
    width: 64,
    height: 64,
    conditioner: conditionerFor({ ...PROMPT, steps: 4 }),
  });
  b.end();
});

// The loop around the UNet at SD 1.5's 512x512 latent size, with the UNet taken out: what is
// left is scaleModelInput, the batch concatenation, CFG, the scheduler step and its noise.
const LATENT: [number, number, number, number] = [1, 4, 64, 64];
const unetOut = new Float32Array(2 * 4 * 64 * 64).map((_, i) => Math.sin(i * 0.01));
const noUnet: UnetCall = () => Promise.resolve(unetOut);
const embedding = { data: new Float32Array(77 * 768).fill(0.1), tokens: 77, dim: 768 };
const conditioning = (): StepConditioning => ({
  uncond: { embedding },
  conds: [{ cond: { embedding }, weight: 1 }],
});

for (const sampler of ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"]) {
  Deno.bench(`denoiseLatents() 10 steps at 64x64 latents, CFG, no-op UNet (${sampler})`, {
    group: "loop-overhead",
  }, async () => {
    const scheduler = makeScheduler(SD15_SCHEDULER, sampler, undefined);
    scheduler.setTimesteps(10);
    const rng = batchGenerator("cpu", [0n]);
    await denoiseLatents({
      scheduler,
      latents: rng.randn([...LATENT]),
      shape: LATENT,
      conditioning,
      guidanceScale: 7.5,
      unet: noUnet,
      rng,
    });
  });
}

globalThis.addEventListener("unload", () => {
  // Sessions are left to the process exit: an unawaited release here crashed ORT at exit.
  // makeTinyModel and the tokenizer live in a folder of their own temp folder.
  for (const dir of [tinyCache, join(tinyDir, ".."), join(tinyTokenizer, "..")]) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone */ }
  }
});

// ---------------------------------------------------------------------------------------------
// Full-size SD 1.5 pipeline (DENOISE_BENCH_FULL=1)

const GB = 1e9;

/** Peak resident set size since the last reset, in bytes (Linux). */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resets the peak RSS counter (Linux >= 4.0: writing 5 to clear_refs). */
function resetPeakRss(): void {
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/**
 * Writes random float32 weights for `shapes` as a safetensors file, one 4M-value chunk at a
 * time (the UNet alone is 3.4 GB, too much to hold as `createRandomModel` does). Values are
 * uniform with std 1/sqrt(fan_in) for matrices and kernels, 1 +- 0.1 for norm scales and
 * +-0.1 for biases, like `randomWeights` but from a fast xorshift stream. `extra` tensors (the
 * text encoder's int64 position ids) are written after the floats.
 */
async function writeRandomSafetensors(
  path: string,
  shapes: ReadonlyMap<string, readonly number[]>,
  seed: number,
  extra: Array<{ name: string; shape: number[]; data: BigInt64Array }> = [],
): Promise<number> {
  const names = [...shapes.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  const count = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  for (const name of names) {
    const n = count(shapes.get(name)!);
    header[name] = {
      dtype: "F32",
      shape: shapes.get(name),
      data_offsets: [offset, offset + n * 4],
    };
    offset += n * 4;
  }
  for (const e of extra) {
    header[e.name] = {
      dtype: "I64",
      shape: e.shape,
      data_offsets: [offset, offset + e.data.length * 8],
    };
    offset += e.data.length * 8;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((json.length + 8) % 8)) % 8);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(new TextEncoder().encode(json), 8);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await writeAll(file, head);
  const chunk = new Float32Array(1 << 22);
  let state = (0x9e3779b9 ^ seed) >>> 0 || 1;
  for (const name of names) {
    const shape = shapes.get(name)!;
    const n = count(shape);
    const fanIn = shape.length >= 2 ? count(shape.slice(1)) : 1;
    const scale = shape.length >= 2 ? Math.sqrt(3 / fanIn) : 0.1 * Math.sqrt(3);
    const base = shape.length < 2 && name.endsWith(".weight") ? 1 : 0;
    for (let done = 0; done < n; done += chunk.length) {
      const m = Math.min(chunk.length, n - done);
      for (let i = 0; i < m; i++) {
        // xorshift32 -> uniform [-1, 1)
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        chunk[i] = base + scale * ((state >>> 0) / 2 ** 31 - 1);
      }
      await writeAll(file, new Uint8Array(chunk.buffer, 0, m * 4));
    }
  }
  for (const e of extra) await writeAll(file, new Uint8Array(e.data.buffer));
  return head.length + offset;
}

/**
 * Writes the full-size SD 1.5 model: `createRandomModel` lays out the folder (model_index.json,
 * scheduler, tokenizer) from tiny configs, then each component's config.json and weights are
 * replaced by the full-size ones, written in chunks. Returns the total weight bytes.
 */
async function writeFullModel(dir: string, tokenizerDir: string): Promise<number> {
  await createRandomModel(
    { unet: TINY_SD15_UNET, vae: TINY_VAE, textEncoder: TINY_CLIP_TEXT },
    dir,
    { tokenizerDir },
  );
  const unet = fullUnetConfig(SD15_UNET);
  const vae = fullVaeConfig(SD_VAE);
  const text = fullClipTextConfig(SD15_CLIP_TEXT, false);
  const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
  let bytes = 0;
  await fsp.writeFile(join(dir, "unet", "config.json"), json(unet));
  bytes += await writeRandomSafetensors(
    join(dir, "unet", "diffusion_pytorch_model.safetensors"),
    unetParameterShapes(unet),
    0,
  );
  await fsp.writeFile(join(dir, "vae", "config.json"), json(vae));
  bytes += await writeRandomSafetensors(
    join(dir, "vae", "diffusion_pytorch_model.safetensors"),
    vaeParameterShapes(vae),
    1,
  );
  await fsp.writeFile(join(dir, "text_encoder", "config.json"), json(text));
  bytes += await writeRandomSafetensors(
    join(dir, "text_encoder", "model.safetensors"),
    clipTextParameterShapes(text, false),
    2,
    [{
      name: "text_model.embeddings.position_ids",
      shape: [1, 77],
      data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)),
    }],
  );
  await fsp.writeFile(join(dir, "scheduler", "scheduler_config.json"), json(SD15_SCHEDULER));
  return bytes;
}

interface RunFigures {
  size: number;
  steps: number;
  /** Seconds from before `StableDiffusion.open` to the end of the first UNet call. */
  firstStep: number;
  /** Seconds in the conditioner (text encoder session + encoding). */
  encode: number;
  /** Seconds per step, steps 2..N (between consecutive progress events). */
  stepTimes: number[];
  /** Seconds in each UNet callback (the first includes creating the UNet session). */
  unetTimes: number[];
  /** Steps 2..N: loop seconds and seconds inside the UNet callback. */
  loop: number;
  inside: number;
  /** Seconds from the last step to the decoded image. */
  decode: number;
  total: number;
  peak: number;
}

async function timedRun(
  modelDir: string,
  cacheDir: string,
  size: number,
  steps: number,
  threads: number | undefined,
): Promise<RunFigures> {
  resetPeakRss();
  const t0 = performance.now();
  const sd = await StableDiffusion.open(modelDir, {
    cacheDir,
    ...(threads !== undefined ? { threads } : {}),
  });
  const unetSpans: Array<[number, number]> = [];
  const progress: number[] = [];
  let encodeSpan: [number, number] = [0, 0];
  // Every UNet evaluation of txt2img goes through sd.unetCall(): time each call.
  const unetCall = sd.unetCall.bind(sd);
  sd.unetCall = () => {
    const call = unetCall();
    return async (input) => {
      const start = performance.now();
      const out = await call(input);
      unetSpans.push([start, performance.now()]);
      return out;
    };
  };
  const conditioner = conditionerFor({ ...PROMPT, steps });
  try {
    await txt2img(sd, {
      steps,
      cfg: 7.5,
      sampler: "EulerDiscreteScheduler",
      seeds: [0n],
      rng: "cpu",
      width: size,
      height: size,
      conditioner: async (s, scheduler, sz) => {
        const start = performance.now();
        const c = await conditioner(s, scheduler, sz);
        encodeSpan = [start, performance.now()];
        return c;
      },
      onProgress: (e) => {
        if (e.task === "denoise") progress.push(performance.now());
      },
    });
  } finally {
    await sd.release();
  }
  const end = performance.now();
  const s = (ms: number) => ms / 1000;
  const inside = unetSpans.slice(1).reduce((a, [x, y]) => a + (y - x), 0);
  return {
    size,
    steps,
    firstStep: s(unetSpans[0]![1] - t0),
    encode: s(encodeSpan[1] - encodeSpan[0]),
    stepTimes: progress.slice(1).map((p, i) => s(p - progress[i]!)),
    unetTimes: unetSpans.map(([x, y]) => s(y - x)),
    loop: s(progress[progress.length - 1]! - progress[0]!),
    inside: s(inside),
    decode: s(end - progress[progress.length - 1]!),
    total: s(end - t0),
    peak: peakRss(),
  };
}

async function fullBenchmark(): Promise<void> {
  const dir = Deno.env.get("DENOISE_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "denoise-pipeline-bench-" });
  const keep = Deno.env.get("DENOISE_BENCH_KEEP") === "1";
  const steps512 = Number(Deno.env.get("DENOISE_BENCH_STEPS_512") ?? "3");
  const steps256 = Number(Deno.env.get("DENOISE_BENCH_STEPS_256") ?? "5");
  const threadsEnv = Deno.env.get("DENOISE_BENCH_THREADS");
  const threads = threadsEnv === undefined ? undefined : Number(threadsEnv);
  const rows: Array<[string, string]> = [];
  const log = (k: string, v: string) => {
    rows.push([k, v]);
    console.error(`${k}: ${v}`);
  };
  const modelDir = join(dir, "sd15-random");
  const cacheDir = join(dir, "cache");
  try {
    await Deno.mkdir(dir, { recursive: true });
    await fsp.rm(cacheDir, { recursive: true, force: true });
    let bytes: number;
    const done = join(modelDir, ".complete");
    try {
      bytes = Number(await Deno.readTextFile(done));
    } catch {
      const t0 = performance.now();
      const tokenizer = await writeByteTokenizer(join(dir, "tokenizer"));
      bytes = await writeFullModel(modelDir, tokenizer);
      await Deno.writeTextFile(done, String(bytes));
      log("write random model (bench setup)", `${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    log("weight files (unet + vae + text encoder, fp32)", `${(bytes / GB).toFixed(2)} GB`);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");
    for (
      const [size, steps, cache] of [[512, steps512, "empty"], [256, steps256, "filled"]] as const
    ) {
      const r = await timedRun(modelDir, cacheDir, size, steps, threads);
      const mean = r.stepTimes.reduce((a, b) => a + b, 0) / r.stepTimes.length;
      const outside = r.loop - r.inside;
      log(
        `${size}x${size}: seconds per step (steps 2-${steps})`,
        `${mean.toFixed(2)} s (${fmt(r.stepTimes)})`,
      );
      log(
        `${size}x${size}: UNet callback times`,
        `${fmt(r.unetTimes)} s (first includes session creation)`,
      );
      log(`${size}x${size}: time to first step (cache ${cache})`, `${r.firstStep.toFixed(1)} s`);
      log(
        `${size}x${size}: prompt encoding (incl. text encoder session)`,
        `${r.encode.toFixed(1)} s`,
      );
      log(`${size}x${size}: VAE decode (incl. decoder session)`, `${r.decode.toFixed(1)} s`);
      log(`${size}x${size}: whole txt2img (open to image)`, `${r.total.toFixed(1)} s`);
      log(
        `${size}x${size}: loop time outside the UNet callback (steps 2-${steps})`,
        `${(outside * 1000).toFixed(1)} ms of ${r.loop.toFixed(2)} s (${
          (100 * outside / r.loop).toFixed(3)
        }%)`,
      );
      log(`${size}x${size}: peak RSS`, `${(r.peak / GB).toFixed(2)} GB`);
    }
  } finally {
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log("\n| measurement | value |\n|---|---|");
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await fullBenchmark();
}
