/**
 * LoRA training benchmarks.
 *
 * `deno task bench` runs the short part: one training step of the tiny SD 1.x-shaped UNet, with
 * and without activation checkpointing.
 *
 * `deno run -A bench/lora_train_bench.ts` measures one training step (batch 1, rank-4 LoRA on
 * every attention's to_q/to_k/to_v/to_out.0, MSE, backward) of a full-size SD 1.5-shaped UNet
 * with random weights (3.4 GB fp32, written once to `$DENOISE_BENCH_DIR`, default a temp folder
 * removed afterwards unless DENOISE_BENCH_KEEP=1) at 256x256 (32x32 latents), with and without
 * `--checkpointing`; `DENOISE_BENCH_FULL=1` adds 512x512. Each configuration runs in its own
 * process, so peak RSS (Linux VmHWM) is its own: building the graph and creating the session
 * (ORT optimises it), then the steps (counter reset in between). `DENOISE_BENCH_UNET=half`
 * uses half the channel widths (a quarter of the weights) for a quick look;
 * `DENOISE_BENCH_SIZES=256,512` picks the sizes, `DENOISE_BENCH_MODES=checkpointing,plain` the
 * order of the two configurations (or one of them).
 * Results are printed as a Markdown table for docs/performance.md.
 */
import { join } from "node:path";
import { createCachedSession } from "../lib/onnx/cache.ts";
import { serializeModel } from "../lib/onnx/model_file.ts";
import { createSession, type HostTensor, hostTensor } from "../lib/onnx/session.ts";
import { tensorSources } from "../lib/onnx/tensor_sources.ts";
import { parseUnetConfig } from "../lib/models/config.ts";
import { memoryWeights } from "../lib/models/layers.ts";
import { randomWeights, unetParameterShapes } from "../lib/models/random.ts";
import { unetLoraModules } from "../lib/train/lora_network.ts";
import { loraParameterPairs } from "../lib/train/lora_parameters.ts";
import { buildUnetLoraTrainingGraph } from "../lib/train/unet_lora_graph.ts";
import { SafetensorsFile } from "../lib/weights/safetensors.ts";
import { TorchCpuGenerator } from "../lib/rng/torch_cpu_generator.ts";
import { SD15_UNET, TINY_SD15_UNET } from "../tests/fixtures/configs.ts";
import { writeRandomSafetensors } from "./random_safetensors.ts";

const RANK = 4;

/** A rank-4 LoRA (random down, small random up) on every attention projection of the file. */
async function benchLora(weights: string): Promise<Record<string, Float32Array>> {
  const rng = new TorchCpuGenerator(0);
  const out: Record<string, Float32Array> = {};
  for (const m of await unetLoraModules(weights)) {
    out[`${m.module}.lora_down.weight`] = rng.randn([RANK, m.inFeatures]).map((v) => v * 0.05);
    out[`${m.module}.lora_up.weight`] = rng.randn([m.outFeatures, RANK]).map((v) => v * 0.01);
  }
  return out;
}

function feeds(
  lora: Record<string, Float32Array>,
  shapes: ReadonlyArray<{ name: string; shape: number[] }>,
  latent: number,
  crossDim: number,
): Record<string, HostTensor> {
  const rng = new TorchCpuGenerator(1);
  const f: Record<string, HostTensor> = {
    sample: hostTensor("float32", rng.randn([1, 4, latent, latent]), [1, 4, latent, latent]),
    timestep: hostTensor("float32", Float32Array.of(500), [1]),
    encoder_hidden_states: hostTensor("float32", rng.randn([1, 77, crossDim]), [1, 77, crossDim]),
    target: hostTensor("float32", rng.randn([1, 4, latent, latent]), [1, 4, latent, latent]),
  };
  for (const p of shapes) f[p.name] = hostTensor("float32", lora[p.name]!, p.shape);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Short benchmarks (deno task bench)

if (!import.meta.main) {
  const dir = await Deno.makeTempDir({ prefix: "denoise-train-bench-" });
  const path = join(dir, "unet.safetensors");
  await writeRandomSafetensors(path, unetParameterShapes(TINY_SD15_UNET));
  const lora = await benchLora(path);
  const config = parseUnetConfig(TINY_SD15_UNET);
  const weights = memoryWeights(randomWeights(unetParameterShapes(TINY_SD15_UNET), 0));
  for (const recompute of [false, true]) {
    const graph = buildUnetLoraTrainingGraph(config, weights, {
      modules: loraParameterPairs(lora),
      alpha: RANK,
      shape: [1, 4, 16, 16],
      sequenceLength: 77,
      recompute,
    });
    const session = await createSession(await serializeModel(graph.model), { threads: 2 });
    const f = feeds(lora, graph.parameters, 16, 32);
    Deno.bench(
      `tiny UNet LoRA training step 1x4x16x16${recompute ? " (checkpointing)" : ""}`,
      { group: "tiny-lora-train" },
      async () => {
        await session.run(f);
      },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Full-size benchmark (deno run -A bench/lora_train_bench.ts)

function peakRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

function currentRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

function resetPeakRss(): void {
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
}

interface ChildResult {
  latent: number;
  checkpointing: boolean;
  nodes: number;
  buildSeconds: number;
  sessionSeconds: number;
  setupPeak: number;
  stepSeconds: number[];
  stepPeak: number;
  /** RSS after the session is created, before the first step. */
  before: number;
  loss: number;
}

/** One configuration, in this process. */
async function child(weights: string, json: unknown, latent: number, checkpointing: boolean) {
  const config = parseUnetConfig(json);
  const lora = await benchLora(weights);
  const cacheDir = await Deno.makeTempDir({ prefix: "denoise-train-bench-graph-" });
  try {
    let nodes = 0;
    let parameters: Array<{ name: string; shape: number[] }> = [];
    let t0 = performance.now();
    let buildSeconds = 0;
    const { session } = await createCachedSession(cacheDir, "bench", async () => {
      using file = await SafetensorsFile.open(weights);
      const graph = buildUnetLoraTrainingGraph(config, tensorSources(file), {
        modules: loraParameterPairs(lora),
        alpha: RANK,
        shape: [1, 4, latent, latent],
        sequenceLength: 77,
        recompute: checkpointing,
      });
      nodes = graph.model.proto.graph.node.length;
      parameters = graph.parameters;
      buildSeconds = (performance.now() - t0) / 1000;
      t0 = performance.now();
      return graph.model;
    }, { cacheOptimized: false });
    const sessionSeconds = (performance.now() - t0) / 1000;
    const setupPeak = peakRss();
    resetPeakRss();
    const before = currentRss();
    const f = feeds(lora, parameters, latent, config.crossAttentionDim[0]!);
    const stepSeconds: number[] = [];
    let loss = NaN;
    for (let i = 0; i < 2; i++) {
      const t = performance.now();
      const out = await session.run(f);
      stepSeconds.push((performance.now() - t) / 1000);
      loss = (out.loss!.data as Float32Array)[0]!;
    }
    const result: ChildResult = {
      latent,
      checkpointing,
      nodes,
      buildSeconds,
      sessionSeconds,
      setupPeak,
      stepSeconds,
      stepPeak: peakRss(),
      before,
      loss,
    };
    console.log(JSON.stringify(result));
    await session.release();
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
}

const GB = (b: number) => `${(b / 1e9).toFixed(2)} GB`;

async function fullBenchmark(): Promise<void> {
  const half = Deno.env.get("DENOISE_BENCH_UNET") === "half";
  const json = half ? { ...SD15_UNET, block_out_channels: [160, 320, 640, 640] } : SD15_UNET;
  const dir = Deno.env.get("DENOISE_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "denoise-train-bench-" });
  const weights = join(dir, half ? "unet_half.safetensors" : "unet_sd15.safetensors");
  try {
    try {
      await Deno.stat(weights);
    } catch {
      console.error(`writing random weights to ${weights}`);
      await writeRandomSafetensors(`${weights}.partial`, unetParameterShapes(json));
      await Deno.rename(`${weights}.partial`, weights);
    }
    const sizes = Deno.env.get("DENOISE_BENCH_SIZES");
    const latents = sizes !== undefined
      ? sizes.split(",").map((px) => Number(px) / 8)
      : Deno.env.get("DENOISE_BENCH_FULL") === "1"
      ? [32, 64]
      : [32];
    const rows: ChildResult[] = [];
    for (const latent of latents) {
      const modes = (Deno.env.get("DENOISE_BENCH_MODES") ?? "plain,checkpointing").split(",");
      for (const checkpointing of modes.map((m) => m === "checkpointing")) {
        console.error(`${latent * 8}px, checkpointing ${checkpointing}...`);
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            import.meta.filename!,
            "--child",
            weights,
            JSON.stringify(json),
            String(latent),
            String(checkpointing),
          ],
          stdout: "piped",
          stderr: "inherit",
        }).output();
        const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
        if (out.code !== 0 || !line.startsWith("{")) {
          console.error(`  failed (exit ${out.code})`);
          continue;
        }
        const r = JSON.parse(line) as ChildResult;
        console.error(`  ${JSON.stringify(r)}`);
        rows.push(r);
      }
    }
    console.log(
      `\n| ${
        half ? "half-width " : ""
      }SD 1.5-shaped UNet, batch 1, rank 4 | graph nodes | build + session | peak RSS (setup) | RSS before steps | step (1st, 2nd) | peak RSS (steps) |`,
    );
    console.log("| --- | --- | --- | --- | --- | --- | --- |");
    for (const r of rows) {
      console.log(
        `| ${r.latent * 8}x${r.latent * 8}${
          r.checkpointing ? ", --checkpointing" : ""
        } | ${r.nodes} | ` +
          `${r.buildSeconds.toFixed(1)} s + ${r.sessionSeconds.toFixed(1)} s | ${
            GB(r.setupPeak)
          } | ` +
          `${r.stepSeconds.map((s) => s.toFixed(1)).join(" s, ")} s | ${GB(r.stepPeak)} |`,
      );
    }
  } finally {
    if (
      Deno.env.get("DENOISE_BENCH_KEEP") !== "1" && Deno.env.get("DENOISE_BENCH_DIR") === undefined
    ) {
      await Deno.remove(dir, { recursive: true });
    }
  }
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--child");
  if (i >= 0) {
    const [weights, json, latent, ck] = Deno.args.slice(i + 1);
    await child(weights!, JSON.parse(json!), Number(latent), ck === "true");
  } else {
    await fullBenchmark();
  }
}
