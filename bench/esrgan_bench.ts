/**
 * ESRGAN-family upscaler benchmarks.
 *
 * `deno task bench` runs the short part: a tiny RRDBNet x4 on a 64x64 image, whole and in tiles.
 *
 * `DENOISE_BENCH_FULL=1 deno run -A bench/esrgan_bench.ts` (or `DENOISE_BENCH_FULL=1 deno task
 * bench`) also measures, once each:
 *
 * 1. an x4plus-shaped RRDBNet (RealESRGAN_x4plus: 23 blocks, 64 features, growth 32) with random
 *    weights, 256x256 -> 1024x1024 in one pass: session creation, seconds per pass, GFLOP/s and
 *    the share of the machine's fp32 peak (`DENOISE_BENCH_PEAK_GFLOPS`, default 418), from
 *    {@linkcode upscalerFlops} (2.35 TFLOP);
 * 2. peak RSS of tiled upscales to 2048x2048 and 4096x4096 outputs with a fixed tile (an
 *    SRVGGNetCompact x4, 64 features, 4 convs, to keep it short): what grows with the image is
 *    the input and output buffers, not the model's activations;
 * 3. (`image`) the same through {@linkcode upscaleImage}, the call `denoise upscale` makes
 *    (RGB, then RGBA whose alpha takes a second model pass), and the 16-bit PNG encode after it:
 *    peak RSS growth for 2048x2048 and 4096x4096 outputs against the output buffer.
 *
 * `DENOISE_BENCH_THREADS` sets ORT's intra-op threads (default ORT's choice);
 * `DENOISE_BENCH_ESRGAN_PARTS` picks parts (default `x4plus,tiles,image`). Results are printed as a
 * Markdown table.
 */
import {
  rrdbNetConfig,
  srvggNetCompactConfig,
  type UpscalerConfig,
  upscalerParameterShapes,
} from "../lib/models/esrgan.ts";
import { activationBytesPerPixel, upscalerFlops } from "../lib/models/esrgan_cost.ts";
import { memoryWeights } from "../lib/models/layers.ts";
import { randomWeights } from "../lib/models/random.ts";
import { hostTensor } from "../lib/onnx/session.ts";
import { upscaleTiled } from "../lib/upscale/tiled.ts";
import { upscaleImage } from "../lib/upscale/upscale_image.ts";
import { encodeFloatImage, type FloatImage } from "../lib/image/codec.ts";
import { createUpscaler, type Upscaler, type UpscalerOptions } from "../lib/upscale/upscaler.ts";

function gradient(width: number, height: number): Float32Array {
  const data = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        data[(c * height + y) * width + x] = (x / width + y / height + c / 3) / 3 +
          0.05 * Math.sin(x * 0.7 + y * 1.3 + c);
      }
    }
  }
  return data;
}

async function randomUpscaler(
  config: UpscalerConfig,
  options: UpscalerOptions = {},
): Promise<Upscaler> {
  const weights = memoryWeights(randomWeights(upscalerParameterShapes(config), 0));
  return await createUpscaler(config, weights, options);
}

// ---------------------------------------------------------------------------------------------
// Short benchmarks (always)

const tinyConfig = rrdbNetConfig({ features: 16, blocks: 2, growthChannels: 8 });
const tinyImage = { width: 64, height: 64, data: gradient(64, 64) };
let tiny: Upscaler | undefined;

Deno.bench("tiny RRDBNet x4 64x64 -> 256x256, whole", { group: "tiny-esrgan" }, async (b) => {
  tiny ??= await randomUpscaler(tinyConfig, { threads: 2 });
  b.start();
  await upscaleTiled(tiny, tinyImage, { tile: 0 });
  b.end();
});

Deno.bench("tiny RRDBNet x4 64x64 -> 256x256, tiles of 40", { group: "tiny-esrgan" }, async (b) => {
  tiny ??= await randomUpscaler(tinyConfig, { threads: 2 });
  b.start();
  await upscaleTiled(tiny, tinyImage, { tile: 40 });
  b.end();
});

// ---------------------------------------------------------------------------------------------
// Full size (DENOISE_BENCH_FULL=1)

/** Peak resident set size since the last reset, in bytes (Linux). */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Current resident set size, in bytes (Linux). */
function rss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resets the peak RSS counter (Linux >= 4.0). */
function resetPeakRss(): void {
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
}

const MB = 2 ** 20;

async function fullBenchmark(): Promise<void> {
  const threadsEnv = Deno.env.get("DENOISE_BENCH_THREADS");
  const options = threadsEnv === undefined ? {} : { threads: Number(threadsEnv) };
  const peakGflops = Number(Deno.env.get("DENOISE_BENCH_PEAK_GFLOPS") ?? "418");
  const rows: Array<[string, string]> = [];
  const log = (k: string, v: string) => {
    rows.push([k, v]);
    console.error(`${k}: ${v}`);
  };

  const parts = (Deno.env.get("DENOISE_BENCH_ESRGAN_PARTS") ?? "x4plus,tiles,image").split(",");
  if (parts.includes("x4plus")) await x4plusPass(options, peakGflops, log);
  if (parts.includes("tiles")) await tiledMemory(options, log);
  if (parts.includes("image")) await imageMemory(options, log);
  console.log("\n| measurement | value |\n|---|---|");
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
}

/** 1. RealESRGAN_x4plus-shaped, one 256x256 pass. */
async function x4plusPass(
  options: UpscalerOptions,
  peakGflops: number,
  log: (k: string, v: string) => void,
): Promise<void> {
  const x4plus = rrdbNetConfig();
  let t0 = performance.now();
  const upscaler = await randomUpscaler(x4plus, options);
  log(
    "x4plus: random weights + build + ORT session",
    `${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const flops = upscalerFlops(x4plus, 256, 256);
  const feeds = { image: hostTensor("float32", gradient(256, 256), [1, 3, 256, 256]) };
  resetPeakRss();
  const before = rss();
  t0 = performance.now();
  const out = await upscaler.session.run(feeds);
  const seconds = (performance.now() - t0) / 1000;
  const peak = peakRss();
  await upscaler.release();
  log("x4plus: output", `[${out["upscaled"]!.dims.join(", ")}]`);
  log("x4plus: convolution work, 256x256 -> 1024x1024", `${(flops / 1e12).toFixed(3)} TFLOP`);
  log(
    "x4plus: one pass",
    `${seconds.toFixed(1)} s = ${(flops / seconds / 1e9).toFixed(1)} GFLOP/s`,
  );
  log(
    `x4plus: floor at ${peakGflops} GFLOP/s fp32 peak`,
    `${(flops / peakGflops / 1e9).toFixed(2)} s (the pass took ` +
      `${(seconds / (flops / peakGflops / 1e9)).toFixed(1)}x the floor)`,
  );
  log(
    "x4plus: peak RSS growth during the pass",
    `${((peak - before) / MB).toFixed(0)} MiB (estimate ` +
      `${(activationBytesPerPixel(x4plus) * 256 * 256 / MB).toFixed(0)} MiB)`,
  );
}

/** 2. Peak RSS of tiled upscales: fixed tile, growing image. */
async function tiledMemory(
  options: UpscalerOptions,
  log: (k: string, v: string) => void,
): Promise<void> {
  const compact = srvggNetCompactConfig({ features: 64, convs: 4 });
  const small = await randomUpscaler(compact, options);
  // One tile-sized run first, so ORT's arena exists before anything is measured.
  await upscaleTiled(small, { width: 256, height: 256, data: gradient(256, 256) }, { tile: 256 });
  for (const side of [512, 1024]) {
    const image = { width: side, height: side, data: gradient(side, side) };
    const output = 3 * 16 * side * side * 4;
    resetPeakRss();
    const base = rss();
    const t0 = performance.now();
    let tiles = 0;
    await upscaleTiled(small, image, { tile: 256, onTile: (_, n) => (tiles = n) });
    const grown = peakRss() - base;
    log(
      `SRVGGNetCompact x4 (64 features, 4 convs), ${side}x${side} -> ${4 * side}x${4 * side}, ` +
        `${tiles} tiles of 256`,
      `${((performance.now() - t0) / 1000).toFixed(1)} s; peak RSS growth ${
        (grown / MB).toFixed(0)
      } MiB, ` +
        `of which the float32 output ${(output / MB).toFixed(0)} MiB, the rest ` +
        `${((grown - output) / MB).toFixed(0)} MiB`,
    );
  }
  await small.release();
}

/** 3. Peak RSS of whole-image upscales (upscaleImage, then the PNG encode): growing image. */
async function imageMemory(
  options: UpscalerOptions,
  log: (k: string, v: string) => void,
): Promise<void> {
  const compact = srvggNetCompactConfig({ features: 64, convs: 4 });
  const small = await randomUpscaler(compact, options);
  await upscaleImage(small, floatImage(256, 3), { tile: 256 });
  for (const [side, channels] of [[512, 3], [1024, 3], [1024, 4]] as const) {
    const image = floatImage(side, channels);
    const output = channels * 16 * side * side * 4;
    resetPeakRss();
    const base = rss();
    const t0 = performance.now();
    let tiles = 0;
    const out = await upscaleImage(small, image, { tile: 256, onTile: (_, n) => (tiles = n) });
    const seconds = (performance.now() - t0) / 1000;
    const grown = peakRss() - base;
    resetPeakRss();
    const beforeEncode = rss();
    const png = await encodeFloatImage({ ...out, bitDepth: 16 }, "png");
    const encodeGrown = peakRss() - beforeEncode;
    log(
      `upscaleImage, ${channels === 4 ? "RGBA" : "RGB"} ${side}x${side} -> ` +
        `${4 * side}x${4 * side}, ${tiles} windows of 256`,
      `${seconds.toFixed(1)} s; peak RSS growth ${(grown / MB).toFixed(0)} MiB, of which the ` +
        `float32 output ${(output / MB).toFixed(0)} MiB, the rest ${
          ((grown - output) / MB).toFixed(0)
        } MiB; then the 16-bit PNG encode: +${(encodeGrown / MB).toFixed(0)} MiB ` +
        `(${(png.length / MB).toFixed(0)} MiB file)`,
    );
  }
  await small.release();
}

function floatImage(side: number, channels: 3 | 4): FloatImage {
  const rgb = gradient(side, side);
  const data = new Float32Array(channels * side * side);
  data.set(rgb);
  // A varying alpha, so it takes the model's second pass.
  for (let i = 0; i < (channels - 3) * side * side; i++) data[3 * side * side + i] = rgb[i]!;
  return { width: side, height: side, channels, bitDepth: 8, data };
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await fullBenchmark();
}
