/**
 * UNet benchmarks.
 *
 * `deno task bench` runs the short part on the tiny SD 1.x-shaped UNet: building the graph, and
 * one evaluation of each kind side by side in one group (ours: fused attention at the engine's
 * optimisation level; the plain-ops variant; int8; and the floor: one MatMul doing as many
 * floating-point operations as the UNet evaluation, which runs near the machine's peak), so the
 * ratios print next to each other.
 *
 * `DENOISE_BENCH_FULL=1 deno run -A bench/unet_bench.ts` measures a full-size SD 1.5-shaped UNet
 * with random weights, written once (3.4 GB fp32, generated in chunks) to `$DENOISE_BENCH_DIR`
 * (default a temp folder, removed afterwards unless DENOISE_BENCH_KEEP=1):
 *
 * 1. cold start of each variant from an empty cache (build + write + quantise + ORT session) and
 *    a start from the cache, with peak RSS (Linux VmHWM, reset between phases);
 * 2. evaluations at 32x32 and 64x64 latents (256 and 512 px), batch 2, 77 tokens, interleaved
 *    in one process (variant A, B, C, then the peak MatMul, and again), best of
 *    `DENOISE_BENCH_RUNS` rounds (default 3), printed as ratios to the floor: the evaluation's
 *    operations (counted from ORT's profile of one evaluation, lib/onnx/profile.ts) at the
 *    GFLOP/s the MatMul reached in the same round;
 * 3. per-op-type time of one evaluation of each variant at 64x64 (ORT's profiler);
 * 4. with DENOISE_BENCH_THREADS_CHECK=1, the thread settings: default threads against
 *    `threads: 1` and with `session.intra_op.allow_spinning` off, interleaved at 32x32.
 *
 * `DENOISE_BENCH_VARIANTS` picks variants (comma-separated, default "ours,plain,int8"; "before"
 * is the graph and ORT level from before issue 16: GEGLU as Gemm + Split, level "all").
 * Results are printed as Markdown tables for docs/performance.md.
 */
import { join } from "node:path";
import { cachedModel } from "../lib/onnx/cache.ts";
import { GraphBuilder, type OnnxModel } from "../lib/onnx/graph.ts";
import { serializeModel } from "../lib/onnx/model_file.ts";
import { profileTable, readProfile, summariseProfile } from "../lib/onnx/profile.ts";
import {
  createSession,
  type HostTensor,
  hostTensor,
  type OnnxSession,
  type OptimizationLevel,
  type SessionOptions,
} from "../lib/onnx/session.ts";
import { availableCores } from "../lib/onnx/threads.ts";
import { tensorSources } from "../lib/onnx/tensor_sources.ts";
import { DEFAULT_OPTIMIZATION_LEVEL, openComponent } from "../lib/model_io/engine.ts";
import { SafetensorsFile } from "../lib/weights/safetensors.ts";
import { parseUnetConfig } from "../lib/models/config.ts";
import { memoryWeights } from "../lib/models/layers.ts";
import { randomWeights, unetParameterShapes } from "../lib/models/random.ts";
import { buildUnet, type UnetBuildOptions } from "../lib/models/unet.ts";
import { SD15_UNET, TINY_SD15_UNET } from "../tests/fixtures/configs.ts";
import { writeRandomSafetensors } from "./random_safetensors.ts";

/** One compared variant: what {@linkcode buildUnet} is given and ORT's optimisation level. */
interface Variant {
  build: UnetBuildOptions;
  level: OptimizationLevel;
}

/** The variants compared. */
const VARIANTS: Record<string, Variant> = {
  ours: { build: {}, level: DEFAULT_OPTIMIZATION_LEVEL },
  plain: { build: { attention: "onnx" }, level: DEFAULT_OPTIMIZATION_LEVEL },
  int8: { build: { quantize: "int8" }, level: DEFAULT_OPTIMIZATION_LEVEL },
  // The graph and level before issue 16: GEGLU as one Gemm and a Split (what a LinearHook keeps),
  // sessions at ORT's level "all" (NCHWc convolutions).
  before: { build: { linearHook: (_c, _name, _x, y) => y }, level: "all" },
};

const LEVEL = { optimizationLevel: DEFAULT_OPTIMIZATION_LEVEL } as const;

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

/** A square MatMul session (`n` x `n` by `n` x `n`, 2n³ operations) and its feed. */
async function matmulFloor(
  n: number,
  options: SessionOptions = {},
): Promise<{ session: OnnxSession; feeds: Record<string, HostTensor>; flops: number }> {
  const g = new GraphBuilder("peak");
  const a = g.input("a", "float32", [n, n]);
  const b = new Float32Array(n * n);
  for (let i = 0; i < b.length; i++) b[i] = Math.sin(i) / n;
  g.output(g.op("MatMul", [a, g.constant(b, "float32", [n, n])]), "y");
  const session = await createSession(await serializeModel(g.build()), { ...LEVEL, ...options });
  const x = new Float32Array(n * n);
  for (let i = 0; i < x.length; i++) x[i] = Math.cos(i);
  return { session, feeds: { a: hostTensor("float32", x, [n, n]) }, flops: 2 * n ** 3 };
}

/** Operations of one evaluation, counted from an ORT profile of it. */
async function profiledFlops(
  model: string | Uint8Array,
  feeds: Record<string, HostTensor>,
  dir: string,
  options: SessionOptions = {},
): Promise<{ flops: number; table: string }> {
  const prefix = join(dir, `profile-${crypto.randomUUID()}`);
  const session = await createSession(model, { ...LEVEL, ...options, profilePrefix: prefix });
  try {
    await session.run(feeds);
    session.endProfiling();
  } finally {
    await session.release();
  }
  const summary = summariseProfile(await readProfile(prefix));
  return { flops: summary.flops, table: profileTable(summary, 12) };
}

// ---------------------------------------------------------------------------------------------
// Short benchmarks (always)

const tinyConfig = parseUnetConfig(TINY_SD15_UNET);
const tinyWeights = memoryWeights(randomWeights(unetParameterShapes(TINY_SD15_UNET), 0));

Deno.bench("buildUnet() tiny SD 1.x-shaped graph", { group: "tiny-unet-build" }, () => {
  buildUnet(tinyConfig, tinyWeights);
});

const tinyFeeds = unetFeeds(2, 16, 16, 77, 32);
const tinySessions = new Map<string, Promise<OnnxSession>>();
function tinySession(variant: string): Promise<OnnxSession> {
  let session = tinySessions.get(variant);
  if (session === undefined) {
    session = (async () =>
      createSession(
        await serializeModel(buildUnet(tinyConfig, tinyWeights, VARIANTS[variant]!.build)),
        { optimizationLevel: VARIANTS[variant]!.level, threads: 2 },
      ))();
    tinySessions.set(variant, session);
  }
  return session;
}

for (const variant of Object.keys(VARIANTS)) {
  Deno.bench(`tiny UNet eval 2x4x16x16: ${variant}`, {
    group: "tiny-unet-eval",
    baseline: variant === "ours",
  }, async (b) => {
    const session = await tinySession(variant);
    b.start();
    await session.run(tinyFeeds);
    b.end();
  });
}

let tinyFloor: Awaited<ReturnType<typeof matmulFloor>> | undefined;
Deno.bench(
  "tiny UNet eval 2x4x16x16: floor (a MatMul of the same GFLOP)",
  { group: "tiny-unet-eval" },
  async (b) => {
    if (tinyFloor === undefined) {
      const dir = await Deno.makeTempDir({ prefix: "denoise-unet-bench-" });
      const model = await serializeModel(buildUnet(tinyConfig, tinyWeights));
      const { flops } = await profiledFlops(model, tinyFeeds, dir, { threads: 2 });
      await Deno.remove(dir, { recursive: true });
      tinyFloor = await matmulFloor(Math.round(Math.cbrt(flops / 2)), { threads: 2 });
    }
    b.start();
    await tinyFloor.session.run(tinyFloor.feeds);
    b.end();
  },
);

// ---------------------------------------------------------------------------------------------
// Full-size SD 1.5 UNet (DENOISE_BENCH_FULL=1)

/** Peak resident set size since the last reset, in bytes (Linux). */
function peakRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

/**
 * Resets the peak RSS counter (Linux >= 4.0: writing 5 to clear_refs) and returns the resident
 * set size now: sessions kept open from earlier phases stay resident, so a phase's own cost is
 * its peak minus this.
 */
function resetPeakRss(): number {
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
  const status = Deno.readTextFileSync("/proc/self/status");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

/** `peak RSS P GB (+D GB over the resident R GB)` since a reset that returned `base`. */
function rssNote(base: number): string {
  const peak = peakRss();
  return `peak RSS ${(peak / GB).toFixed(2)} GB (+${((peak - base) / GB).toFixed(2)} GB over ` +
    `the ${(base / GB).toFixed(2)} GB resident before)`;
}

const GB = 1e9;
const seconds = (t0: number) => (performance.now() - t0) / 1000;

async function fullBenchmark(): Promise<void> {
  const dir = Deno.env.get("DENOISE_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "denoise-unet-bench-" });
  const keep = Deno.env.get("DENOISE_BENCH_KEEP") === "1";
  const rounds = Number(Deno.env.get("DENOISE_BENCH_RUNS") ?? "3");
  const variants = (Deno.env.get("DENOISE_BENCH_VARIANTS") ?? "ours,plain,int8").split(",");
  for (const v of variants) {
    if (VARIANTS[v] === undefined) throw new RangeError(`Unknown bench variant "${v}"`);
  }
  const rows: Array<[string, string]> = [];
  const log = (k: string, v: string) => {
    rows.push([k, v]);
    console.error(`${k}: ${v}`);
  };
  const tables: string[] = [];
  await Deno.mkdir(dir, { recursive: true });
  const weightsPath = join(dir, "diffusion_pytorch_model.safetensors");
  const sessions = new Map<string, OnnxSession>();
  const paths = new Map<string, string>();
  const cacheDirs: string[] = [];
  try {
    const config = parseUnetConfig(SD15_UNET);
    const shapes = unetParameterShapes(SD15_UNET);
    let fileSize: number;
    try {
      fileSize = (await Deno.stat(weightsPath)).size;
    } catch {
      const t0 = performance.now();
      fileSize = await writeRandomSafetensors(weightsPath, shapes);
      log("write random weights (once)", `${seconds(t0).toFixed(1)} s`);
    }
    log("weight file", `${(fileSize / GB).toFixed(2)} GB (${shapes.size} tensors, fp32)`);
    log("threads (default: the cores this process may use)", String(availableCores()));
    log("ORT optimisation level", DEFAULT_OPTIMIZATION_LEVEL);

    // 1. Cold start (an empty cache: build, write, quantise, session) and a start from the cache.
    for (const variant of variants) {
      const cacheDir = join(dir, `cache-${crypto.randomUUID()}`);
      cacheDirs.push(cacheDir);
      const base0 = resetPeakRss();
      const t0 = performance.now();
      const file = await SafetensorsFile.open(weightsPath);
      let nodes = 0;
      const entry = await cachedModel(cacheDir, `unet-${variant}`, () => {
        const model: OnnxModel = buildUnet(config, tensorSources(file), VARIANTS[variant]!.build);
        nodes = model.proto.graph.node.length;
        return model;
      });
      file.close();
      const tWritten = seconds(t0);
      const level = { optimizationLevel: VARIANTS[variant]!.level };
      let session = await createSession(entry.path, level);
      log(
        `${variant}: cold start (build + write + session at "${level.optimizationLevel}"), ${nodes} nodes`,
        `${seconds(t0).toFixed(1)} s (build + write ${tWritten.toFixed(1)} s); ${
          rssNote(base0)
        }; the added RSS is ${((peakRss() - base0) / fileSize).toFixed(2)}x the weights`,
      );
      await session.release();
      const base1 = resetPeakRss();
      const t1 = performance.now();
      const cached = await cachedModel(cacheDir, `unet-${variant}`, () => {
        throw new Error("expected a cache hit");
      });
      session = await createSession(cached.path, level);
      log(
        `${variant}: start from the cache`,
        `${seconds(t1).toFixed(1)} s; ${rssNote(base1)}`,
      );
      sessions.set(variant, session);
      paths.set(variant, cached.path);
    }

    // The same through the engine, as `generate` opens a UNet: content hash of the weight file,
    // NaN/Inf check of every weight, build, write, session.
    {
      const cacheDir = join(dir, `cache-${crypto.randomUUID()}`);
      cacheDirs.push(cacheDir);
      const base = resetPeakRss();
      const t0 = performance.now();
      const session = await openComponent({
        kind: "unet",
        weights: weightsPath,
        config: SD15_UNET,
        build: (sources) => buildUnet(config, sources),
      }, { cacheDir });
      log(
        "ours: openComponent() cold (hash + NaN check + build + write + session)",
        `${seconds(t0).toFixed(1)} s; ${rssNote(base)}`,
      );
      await session.release();
      const t1 = performance.now();
      const again = await openComponent({
        kind: "unet",
        weights: weightsPath,
        config: SD15_UNET,
        build: () => {
          throw new Error("expected a cache hit");
        },
      }, { cacheDir });
      log("ours: openComponent() from the cache", `${seconds(t1).toFixed(1)} s`);
      await again.release();
    }

    // 2. Interleaved evaluations against the floor.
    const peak = await matmulFloor(2048);
    for (const latent of [32, 64]) {
      const feeds = unetFeeds(2, latent, latent, 77, 768);
      const { flops, table } = await profiledFlops(paths.get(variants[0]!)!, feeds, dir, {
        optimizationLevel: VARIANTS[variants[0]!]!.level,
      });
      log(`UNet operations at ${latent}x${latent} latents`, `${(flops / GB).toFixed(0)} GFLOP`);
      if (latent === 64) tables.push(`${variants[0]} at 64x64:\n\n${table}`);
      const times = new Map<string, number[]>(variants.map((v) => [v, []]));
      const floors: number[] = [];
      const rates: number[] = [];
      for (let r = -1; r < rounds; r++) {
        for (const v of variants) {
          resetPeakRss();
          const t0 = performance.now();
          await sessions.get(v)!.run(feeds);
          if (r >= 0) times.get(v)!.push(seconds(t0));
        }
        let best = Infinity;
        for (let k = 0; k < 2; k++) {
          const t0 = performance.now();
          await peak.session.run(peak.feeds);
          best = Math.min(best, seconds(t0));
        }
        if (r >= 0) {
          rates.push(peak.flops / best / GB);
          floors.push(flops / (peak.flops / best));
        }
      }
      const bestRate = Math.max(...rates);
      log(
        `peak MatMul 2048³ at ${latent}x${latent} (rounds)`,
        `${rates.map((x) => x.toFixed(0)).join(", ")} GFLOP/s`,
      );
      const floor = flops / bestRate / GB;
      for (const v of variants) {
        const ts = times.get(v)!;
        const best = Math.min(...ts);
        // Each round's ratio uses that round's MatMul rate (the same load).
        const perRound = ts.map((t, i) => t / floors[i]!);
        log(
          `${v}: UNet eval 2x4x${latent}x${latent} (${latent * 8} px) / floor`,
          `best x${Math.min(...perRound).toFixed(2)} (rounds ${
            perRound.map((x) => x.toFixed(2)).join(", ")
          }); best ${best.toFixed(2)} s against a floor of ${floor.toFixed(2)} s`,
        );
      }
      for (const v of variants.slice(1)) {
        const ratio = times.get(v)!.map((t, i) => t / times.get(variants[0]!)![i]!);
        log(
          `${v} / ${variants[0]} at ${latent}x${latent} (same round)`,
          ratio.map((x) => `x${x.toFixed(2)}`).join(", "),
        );
      }
    }
    await peak.session.release();

    // 3. Per-op-type tables of the other variants at 64x64.
    for (const v of variants.slice(1)) {
      const { table } = await profiledFlops(paths.get(v)!, unetFeeds(2, 64, 64, 77, 768), dir, {
        optimizationLevel: VARIANTS[v]!.level,
      });
      tables.push(`${v} at 64x64:\n\n${table}`);
    }

    // 4. Threads and spinning (optional).
    if (Deno.env.get("DENOISE_BENCH_THREADS_CHECK") === "1") {
      for (const s of sessions.values()) await s.release();
      sessions.clear();
      const model = paths.get(variants[0]!)!;
      const settings: Array<[string, SessionOptions]> = [
        ["default threads", {}],
        ["threads 1", { threads: 1 }],
        ["spinning off", { configEntries: { "session.intra_op.allow_spinning": "0" } }],
      ];
      const threadSessions = [];
      for (const [, o] of settings) {
        threadSessions.push(
          await createSession(model, { optimizationLevel: VARIANTS[variants[0]!]!.level, ...o }),
        );
      }
      const feeds = unetFeeds(2, 32, 32, 77, 768);
      const ts: number[][] = settings.map(() => []);
      for (let r = -1; r < rounds; r++) {
        for (const [i, s] of threadSessions.entries()) {
          const t0 = performance.now();
          await s.run(feeds);
          if (r >= 0) ts[i]!.push(seconds(t0));
        }
      }
      for (const [i, [name]] of settings.entries()) {
        const ratio = ts[i]!.map((t, k) => t / ts[0]![k]!);
        log(
          `${name}: UNet eval 32x32 / default threads (same round)`,
          `${ratio.map((x) => `x${x.toFixed(2)}`).join(", ")}; best ${
            Math.min(...ts[i]!).toFixed(2)
          } s`,
        );
      }
      for (const s of threadSessions) await s.release();
    }
  } finally {
    for (const s of sessions.values()) await s.release();
    // A kept folder keeps the weights, never a cache (the next run's cold start is cold).
    for (const d of cacheDirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log("\n| measurement | value |\n|---|---|");
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  for (const t of tables) console.log(`\n${t}`);
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await fullBenchmark();
}
