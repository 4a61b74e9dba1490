/**
 * AnimateDiff motion-module benchmarks: what the temporal transformers cost on top of the UNet.
 *
 * `deno task bench` runs the short part: a tiny SD 1.x-shaped UNet with tiny motion modules,
 * one 8-frame evaluation against 8 single-image evaluations of the same UNet without them.
 *
 * `DENOISE_BENCH_FULL=1 deno run -A bench/motion_bench.ts` also measures full size: an SD
 * 1.5-shaped UNet (random weights, 3.4 GB fp32) plus an mm_sd_v15-shaped motion module (random
 * weights, written in the original AnimateDiff layout, 1.7 GB fp32, read through
 * `openMotionAdapter`), one denoising step (one UNet call, no classifier-free guidance) for 16
 * frames at 256x256 (32x32 latents) against 16 single-image UNet steps and one batch-16 step of
 * the plain UNet. Each timed call follows one untimed warm-up call of the same shape. Weights go
 * to `$DENOISE_BENCH_DIR` (default a temp folder, removed afterwards unless DENOISE_BENCH_KEEP=1);
 * `DENOISE_BENCH_THREADS` sets ORT's intra-op threads. Prints a Markdown table for
 * docs/performance.md.
 */
import { join } from "node:path";
import { TorchCpuGenerator } from "../lib/rng/torch_cpu_generator.ts";
import { serializeModel, writeModel } from "../lib/onnx/model_file.ts";
import {
  createSession,
  type HostTensor,
  hostTensor,
  type OnnxSession,
} from "../lib/onnx/session.ts";
import { tensorSources } from "../lib/onnx/tensor_sources.ts";
import { SafetensorsFile } from "../lib/weights/safetensors.ts";
import { parseUnetConfig } from "../lib/models/config.ts";
import { memoryWeights } from "../lib/models/layers.ts";
import {
  motionParameterShapes,
  parseMotionConfig,
  sinusoidalPositions,
} from "../lib/models/motion.ts";
import { diffusersKeyToAnimatediff, openMotionAdapter } from "../lib/models/motion_adapter.ts";
import { randomWeights, unetParameterShapes } from "../lib/models/random.ts";
import { randomMotionWeights } from "../lib/models/random_motion.ts";
import { buildUnet } from "../lib/models/unet.ts";
import { SD15_UNET, TINY_SD15_UNET } from "../tests/fixtures/configs.ts";

function feeds(
  batch: number,
  latent: number,
  context: number,
  contextBatch: number,
  frames?: number,
): Record<string, HostTensor> {
  const gen = new TorchCpuGenerator(0);
  const out: Record<string, HostTensor> = {
    sample: hostTensor("float32", gen.randn([batch, 4, latent, latent]), [
      batch,
      4,
      latent,
      latent,
    ]),
    timestep: hostTensor("float32", Float32Array.of(500), [1]),
    encoder_hidden_states: hostTensor(
      "float32",
      gen.randn([contextBatch, 77, context]),
      [contextBatch, 77, context],
    ),
  };
  if (frames !== undefined) {
    out.num_frames = hostTensor("int64", BigInt64Array.of(BigInt(frames)), [1]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Short benchmarks (always)

const TINY_MOTION = {
  block_out_channels: [32, 32, 32, 64],
  motion_layers_per_block: 1,
  motion_num_attention_heads: 8,
  motion_max_seq_length: 16,
};
const tinyConfig = parseUnetConfig(TINY_SD15_UNET);
const tinyWeights = memoryWeights(randomWeights(unetParameterShapes(TINY_SD15_UNET), 0));
const tinyMotionConfig = parseMotionConfig(TINY_MOTION);
const tinyMotion = {
  config: tinyMotionConfig,
  weights: memoryWeights(randomMotionWeights(tinyMotionConfig, 1)),
};

Deno.bench("buildUnet({ motion }) tiny graph", { group: "tiny-motion" }, () => {
  buildUnet(tinyConfig, tinyWeights, { motion: tinyMotion });
});

let tinyPlain: OnnxSession | undefined;
let tinyAnimated: OnnxSession | undefined;
Deno.bench("tiny UNet, 8 single-image evals 1x4x16x16", { group: "tiny-frames" }, async (b) => {
  tinyPlain ??= await createSession(await serializeModel(buildUnet(tinyConfig, tinyWeights)), {
    threads: 2,
  });
  const one = feeds(1, 16, 32, 1);
  b.start();
  for (let i = 0; i < 8; i++) await tinyPlain.run(one);
  b.end();
});

Deno.bench("tiny motion UNet, one 8-frame eval 8x4x16x16", { group: "tiny-frames" }, async (b) => {
  tinyAnimated ??= await createSession(
    await serializeModel(buildUnet(tinyConfig, tinyWeights, { motion: tinyMotion })),
    { threads: 2 },
  );
  const clip = feeds(8, 16, 32, 1, 8);
  b.start();
  await tinyAnimated.run(clip);
  b.end();
});

// ---------------------------------------------------------------------------------------------
// Full size (DENOISE_BENCH_FULL=1)

/** Peak resident set size since the last reset, in bytes (Linux). */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

function resetPeakRss(): void {
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
}

const GB = 1e9;

/**
 * Writes a safetensors file of random fp32 tensors without holding it in memory (uniform, std
 * 1/sqrt(fan_in) for matrices, 1 +- 0.1 for norm scales, +-0.1 for vectors); tensors in `fixed`
 * get those values instead.
 */
async function writeRandomSafetensors(
  path: string,
  shapes: ReadonlyMap<string, readonly number[]>,
  fixed: ReadonlyMap<string, Float32Array> = new Map(),
): Promise<number> {
  const names = [...shapes.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const name of names) {
    const n = shapes.get(name)!.reduce((a, b) => a * b, 1);
    header[name] = {
      dtype: "F32",
      shape: shapes.get(name),
      data_offsets: [offset, offset + n * 4],
    };
    offset += n * 4;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((json.length + 8) % 8)) % 8);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(new TextEncoder().encode(json), 8);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const writeAll = async (bytes: Uint8Array) => {
    for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
  };
  await writeAll(head);
  const chunk = new Float32Array(1 << 22);
  let state = 0x9e3779b9;
  for (const name of names) {
    const given = fixed.get(name);
    if (given !== undefined) {
      await writeAll(new Uint8Array(given.buffer, given.byteOffset, given.byteLength));
      continue;
    }
    const shape = shapes.get(name)!;
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
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
      await writeAll(new Uint8Array(chunk.buffer, 0, m * 4));
    }
  }
  return head.length + offset;
}

async function timed(session: OnnxSession, input: Record<string, HostTensor>, calls = 1) {
  await session.run(input); // warm-up: allocations, first-run kernels
  resetPeakRss();
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await session.run(input);
  return { seconds: (performance.now() - t0) / 1000, rss: peakRss() };
}

async function fullBenchmark(): Promise<void> {
  const dir = Deno.env.get("DENOISE_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "denoise-motion-bench-" });
  const keep = Deno.env.get("DENOISE_BENCH_KEEP") === "1";
  const threadsEnv = Deno.env.get("DENOISE_BENCH_THREADS");
  const threads = threadsEnv === undefined ? {} : { threads: Number(threadsEnv) };
  const rows: Array<[string, string]> = [];
  const log = (k: string, v: string) => {
    rows.push([k, v]);
    console.error(`${k}: ${v}`);
  };
  await Deno.mkdir(dir, { recursive: true });
  const unetPath = join(dir, "diffusion_pytorch_model.safetensors");
  const mmPath = join(dir, "mm_sd_v15_random.safetensors");
  try {
    // 1. Random weights: SD 1.5 UNet, and mm_sd_v15's layout (4 blocks, no mid block, 24 frames)
    //    under the original AnimateDiff names.
    const config = parseUnetConfig(SD15_UNET);
    const mmConfig = parseMotionConfig({ use_motion_mid_block: false, motion_max_seq_length: 24 });
    const t0 = performance.now();
    const unetShapes = unetParameterShapes(SD15_UNET);
    const unetBytes = await Deno.stat(unetPath).then((s) => s.size).catch(() =>
      writeRandomSafetensors(unetPath, unetShapes)
    );
    const mmShapes = new Map<string, number[]>();
    const tables = new Map<string, Float32Array>();
    for (const [name, shape] of motionParameterShapes(mmConfig)) {
      for (const original of diffusersKeyToAnimatediff(name)!) {
        mmShapes.set(original, shape);
        if (name.endsWith(".pos_embed.pe")) {
          tables.set(original, sinusoidalPositions(shape[1]!, shape[2]!));
        }
      }
    }
    const mmBytes = await Deno.stat(mmPath).then((s) => s.size).catch(() =>
      writeRandomSafetensors(mmPath, mmShapes, tables)
    );
    log(
      "weights (written once)",
      `UNet ${(unetBytes / GB).toFixed(2)} GB, motion module ${
        (mmBytes / GB).toFixed(2)
      } GB (${mmShapes.size} tensors), ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    // 2. Plain UNet: 16 single-image steps, then one batch-16 step.
    const unetFile = await SafetensorsFile.open(unetPath);
    let t = performance.now();
    const plainModel = buildUnet(config, tensorSources(unetFile));
    const plainPath = (await writeModel(plainModel, join(dir, "plain", "model.onnx"))).path;
    resetPeakRss();
    const plain = await createSession(plainPath, threads);
    log(
      "plain UNet: build + write + session",
      `${((performance.now() - t) / 1000).toFixed(1)} s, ${plainModel.proto.graph.node.length} ` +
        `nodes, peak RSS ${(peakRss() / GB).toFixed(2)} GB`,
    );
    const single = await timed(plain, feeds(1, 32, 768, 1), 16);
    log(
      "16 single-image UNet steps, 1x4x32x32 each",
      `${single.seconds.toFixed(1)} s (${(single.seconds / 16).toFixed(2)} s each), peak RSS ${
        (single.rss / GB).toFixed(2)
      } GB`,
    );
    const batched = await timed(plain, feeds(16, 32, 768, 16));
    log(
      "one batch-16 UNet step, 16x4x32x32",
      `${batched.seconds.toFixed(1)} s, peak RSS ${(batched.rss / GB).toFixed(2)} GB`,
    );
    await plain.release();

    // 3. UNet + motion modules: one step for a 16-frame clip.
    t = performance.now();
    using mm = await openMotionAdapter(mmPath);
    const animatedModel = buildUnet(config, tensorSources(unetFile), { motion: mm });
    const animatedPath = (await writeModel(animatedModel, join(dir, "motion", "model.onnx"))).path;
    resetPeakRss();
    const animated = await createSession(animatedPath, threads);
    log(
      "motion UNet: open mm + build + write + session",
      `${
        ((performance.now() - t) / 1000).toFixed(1)
      } s, ${animatedModel.proto.graph.node.length} ` +
        `nodes, peak RSS ${(peakRss() / GB).toFixed(2)} GB`,
    );
    const clip = await timed(animated, feeds(16, 32, 768, 1, 16));
    log(
      "one 16-frame motion UNet step, 16x4x32x32",
      `${clip.seconds.toFixed(1)} s, peak RSS ${(clip.rss / GB).toFixed(2)} GB`,
    );
    log(
      "motion step / 16 single-image steps",
      `${(clip.seconds / single.seconds).toFixed(2)}x (vs the batch-16 step: ${
        (clip.seconds / batched.seconds).toFixed(2)
      }x)`,
    );
    await animated.release();
    unetFile.close();
  } finally {
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log("\n| measurement | value |\n|---|---|");
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await fullBenchmark();
}
