/**
 * UNet benchmarks.
 *
 * `deno task bench` runs the short part: building and running the tiny SD 1.x-shaped UNet.
 *
 * `DENOISE_BENCH_ATTENTION=onnx` selects the plain-ops attention kernel (default "fused").
 *
 * `DENOISE_BENCH_FULL=1 deno task bench` (or `DENOISE_BENCH_FULL=1 deno run -A
 * bench/unet_bench.ts`) also measures a full-size SD 1.5-shaped UNet with random weights,
 * written once (3.4 GB fp32, generated in chunks) to `$DENOISE_BENCH_DIR` (default a temp
 * folder, removed afterwards unless DENOISE_BENCH_KEEP=1): graph build time, writing the model
 * (external data into the safetensors file), session creation cold and from the cache, peak RSS
 * of each phase (Linux VmHWM, reset between phases through /proc/self/clear_refs) and seconds
 * per UNet evaluation at 64x64 and 32x32 latents, batch 2. Results are printed as a Markdown
 * table for docs/performance.md.
 */
import { join } from "node:path";
import { createCachedSession } from "../lib/onnx/cache.ts";
import { serializeModel } from "../lib/onnx/model_file.ts";
import { createSession, hostTensor, type OnnxSession } from "../lib/onnx/session.ts";
import { tensorSources } from "../lib/onnx/tensor_sources.ts";
import { SafetensorsFile } from "../lib/weights/safetensors.ts";
import { parseUnetConfig } from "../lib/models/config.ts";
import { memoryWeights } from "../lib/models/layers.ts";
import { randomWeights, unetParameterShapes } from "../lib/models/random.ts";
import { buildUnet } from "../lib/models/unet.ts";
import { SD15_UNET, TINY_SD15_UNET } from "../tests/fixtures/configs.ts";
import { writeRandomSafetensors } from "./random_safetensors.ts";

// ---------------------------------------------------------------------------------------------
// Short benchmarks (always)

const tinyConfig = parseUnetConfig(TINY_SD15_UNET);
const tinyWeights = memoryWeights(randomWeights(unetParameterShapes(TINY_SD15_UNET), 0));

Deno.bench("buildUnet() tiny SD 1.x-shaped graph", { group: "tiny-unet" }, () => {
  buildUnet(tinyConfig, tinyWeights);
});

let tinySession: OnnxSession | undefined;
Deno.bench("tiny UNet eval 2x4x16x16", { group: "tiny-unet" }, async (b) => {
  tinySession ??= await createSession(await serializeModel(buildUnet(tinyConfig, tinyWeights)), {
    threads: 2,
  });
  const feeds = unetFeeds(2, 16, 16, 77, 32);
  b.start();
  await tinySession.run(feeds);
  b.end();
});

function unetFeeds(batch: number, h: number, w: number, seq: number, ctx: number) {
  const sample = new Float32Array(batch * 4 * h * w);
  for (let i = 0; i < sample.length; i++) sample[i] = Math.sin(i * 0.1);
  const ehs = new Float32Array(batch * seq * ctx);
  for (let i = 0; i < ehs.length; i++) ehs[i] = Math.cos(i * 0.01);
  return {
    sample: hostTensor("float32", sample, [batch, 4, h, w]),
    timestep: hostTensor("float32", Float32Array.of(500), [1]),
    encoder_hidden_states: hostTensor("float32", ehs, [batch, seq, ctx]),
  };
}

// ---------------------------------------------------------------------------------------------
// Full-size SD 1.5 UNet (DENOISE_BENCH_FULL=1)

/** Peak resident set size since the last reset, in bytes (Linux). */
function peakRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resets the peak RSS counter (Linux >= 4.0: writing 5 to clear_refs). */
function resetPeakRss(): void {
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
}

const GB = 1e9;

async function timeEvals(session: OnnxSession, latent: number, runs: number): Promise<number[]> {
  const feeds = unetFeeds(2, latent, latent, 77, 768);
  await session.run(feeds); // warm-up (allocations, first-run kernels)
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push((performance.now() - t0) / 1000);
  }
  return times;
}

async function fullBenchmark(): Promise<void> {
  const dir = Deno.env.get("DENOISE_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "denoise-unet-bench-" });
  const keep = Deno.env.get("DENOISE_BENCH_KEEP") === "1";
  const runs = Number(Deno.env.get("DENOISE_BENCH_RUNS") ?? "2");
  const threadsEnv = Deno.env.get("DENOISE_BENCH_THREADS");
  const threads = threadsEnv === undefined ? {} : { threads: Number(threadsEnv) };
  const rows: Array<[string, string]> = [];
  const log = (k: string, v: string) => {
    rows.push([k, v]);
    console.error(`${k}: ${v}`);
  };
  await Deno.mkdir(dir, { recursive: true });
  const weightsPath = join(dir, "diffusion_pytorch_model.safetensors");
  const cacheDir = join(dir, "cache");
  try {
    const config = parseUnetConfig(SD15_UNET);
    const shapes = unetParameterShapes(SD15_UNET);
    let fileSize: number;
    try {
      fileSize = (await Deno.stat(weightsPath)).size;
    } catch {
      const t0 = performance.now();
      fileSize = await writeRandomSafetensors(weightsPath, shapes);
      log("write random weights (once)", `${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    log("weight file", `${(fileSize / GB).toFixed(2)} GB (${shapes.size} tensors, fp32)`);

    // 1. Build the graph: no weight bytes are read.
    resetPeakRss();
    const t1 = performance.now();
    const file = await SafetensorsFile.open(weightsPath);
    const attention = Deno.env.get("DENOISE_BENCH_ATTENTION") === "onnx" ? "onnx" : "fused";
    const model = buildUnet(config, tensorSources(file), { attention });
    log("attention kernel", attention);
    log("graph build (open header + buildUnet)", `${(performance.now() - t1).toFixed(0)} ms`);
    log("graph nodes", String(model.proto.graph.node.length));

    // 2. Cold start: write the model into the cache (external data into a hard link of the
    //    weights), let ORT optimise it and save the optimised model.
    resetPeakRss();
    const key = `sd15-unet-bench-${attention}`;
    const t2 = performance.now();
    const cold = await createCachedSession(cacheDir, key, () => model, { ...threads });
    log(
      "session cold (write model + ORT optimise + save)",
      `${((performance.now() - t2) / 1000).toFixed(1)} s`,
    );
    log(
      "peak RSS, cold start",
      `${(peakRss() / GB).toFixed(2)} GB (${(peakRss() / fileSize).toFixed(2)}x weights)`,
    );
    await cold.session.release();
    file.close();

    // 3. Cached start: the saved optimised model, optimisation off.
    resetPeakRss();
    const t3 = performance.now();
    const cached = await createCachedSession(cacheDir, key, () => model, { ...threads });
    log(
      "session cached (optimised model from cache)",
      `${
        ((performance.now() - t3) / 1000).toFixed(1)
      } s (hit ${cached.hit}, optimised ${cached.optimizedHit})`,
    );
    log(
      "peak RSS, cached start",
      `${(peakRss() / GB).toFixed(2)} GB (${(peakRss() / fileSize).toFixed(2)}x weights)`,
    );
    await cached.session.release();

    // 4. Zero-copy start: the built model (weights referenced in the safetensors file), no
    //    saved optimised model.
    resetPeakRss();
    const t4 = performance.now();
    const plain = await createCachedSession(cacheDir, key, () => model, {
      ...threads,
      cacheOptimized: false,
    });
    log(
      "session from built model (ORT optimises, nothing saved)",
      `${((performance.now() - t4) / 1000).toFixed(1)} s`,
    );
    log(
      "peak RSS, built-model start",
      `${(peakRss() / GB).toFixed(2)} GB (${(peakRss() / fileSize).toFixed(2)}x weights)`,
    );

    // 5. Evaluations, batch 2, 77-token context.
    for (const latent of [32, 64]) {
      resetPeakRss();
      const times = await timeEvals(plain.session, latent, runs);
      const mean = times.reduce((a, b) => a + b, 0) / times.length;
      log(
        `UNet eval 2x4x${latent}x${latent} (${latent * 8}px)`,
        `${mean.toFixed(2)} s (runs: ${times.map((t) => t.toFixed(2)).join(", ")}; peak RSS ${
          (peakRss() / GB).toFixed(2)
        } GB)`,
      );
    }
    await plain.session.release();
  } finally {
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log("\n| measurement | value |\n|---|---|");
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await fullBenchmark();
}
