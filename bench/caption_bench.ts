/**
 * Captioning benchmarks.
 *
 * `deno task bench` runs the short part: captions from a tiny random BLIP, and from the tiny
 * random Florence-2 and LLaVA ONNX exports (lib/models/random_florence2.ts, random_llava.ts;
 * these time the plumbing around the sessions, not real models).
 *
 * `DENOISE_BENCH_FULL=1 deno run -A bench/caption_bench.ts` also measures a BLIP-base-shaped
 * model (Salesforce/blip-image-captioning-base's shapes: ViT-B/16 at 384x384, 12-layer BERT-base
 * decoder, 247 M parameters) with random weights, written once (0.99 GB fp32) to
 * `$DENOISE_BENCH_DIR` (default a temporary folder, removed afterwards unless
 * `DENOISE_BENCH_KEEP=1`; a kept folder is reused): load cold (graphs written to the cache, ORT
 * optimises and saves) and cached, the vision encoder alone, and captions per second for greedy
 * search at batch 1 and 4 and beam search (3 beams) at batch 1. Random weights never produce
 * `[SEP]`, so every caption runs to text_config's max_length (20 tokens, 19 generated): the
 * slowest case of that length. `DENOISE_BENCH_THREADS` sets ORT's intra-op threads. Results are
 * printed as a Markdown table for docs/performance.md.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BlipCaptionModel } from "../lib/caption/blip.ts";
import { captionImages } from "../lib/caption/caption.ts";
import { Florence2CaptionModel } from "../lib/caption/florence2.ts";
import { LlavaCaptionModel } from "../lib/caption/llava.ts";
import type { RawImage } from "../lib/image/codec.ts";
import { BLIP_BASE_CONFIG, createRandomBlip, TINY_BLIP_CONFIG } from "../lib/models/random_blip.ts";
import { createRandomFlorence2 } from "../lib/models/random_florence2.ts";
import { createRandomLlava } from "../lib/models/random_llava.ts";

/** A smooth colour pattern, different per index. */
function image(width: number, height: number, index: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 255 / width + index * 40) & 255;
      data[i + 1] = (y * 255 / height) & 255;
      data[i + 2] = ((x + y) * 128 / (width + height) + index * 90) & 255;
    }
  }
  return { width, height, channels: 3, data };
}

// ---------------------------------------------------------------------------------------------
// Short benchmark (always)

const tinyDir = await Deno.makeTempDir();
await createRandomBlip(TINY_BLIP_CONFIG, tinyDir, { seed: 0 });
const tiny = await BlipCaptionModel.load(tinyDir, { session: { threads: 2 } });
const tinyImage = image(32, 32, 0);

Deno.bench("tiny random BLIP: one greedy caption (7 tokens)", { group: "tiny-blip" }, async () => {
  await captionImages(tiny, [tinyImage]);
});

Deno.bench("tiny random BLIP: beam search, 3 beams", { group: "tiny-blip" }, async () => {
  await captionImages(tiny, [tinyImage], { numBeams: 3 });
});

const florenceDir = await Deno.makeTempDir();
await createRandomFlorence2(florenceDir);
const florence = await Florence2CaptionModel.load(florenceDir, { session: { threads: 2 } });

Deno.bench(
  "tiny random Florence-2 export: <CAPTION>, its 3 beams, 10 new tokens",
  { group: "tiny-exports" },
  async () => {
    await captionImages(florence, [tinyImage]);
  },
);

const llavaDir = await Deno.makeTempDir();
await createRandomLlava(llavaDir);
const llava = await LlavaCaptionModel.load(llavaDir, { session: { threads: 2 } });

Deno.bench(
  "tiny random LLaVA export: greedy, 8 new tokens after a 40-token prompt (16 image tokens)",
  { group: "tiny-exports" },
  async () => {
    await captionImages(llava, [tinyImage], { maxNewTokens: 8 });
  },
);

globalThis.addEventListener("unload", () => {
  tiny.release();
  florence.release();
  llava.release();
  for (const dir of [tinyDir, florenceDir, llavaDir]) Deno.removeSync(dir, { recursive: true });
});

// ---------------------------------------------------------------------------------------------
// BLIP-base-shaped model (DENOISE_BENCH_FULL=1)

async function fullBenchmark(): Promise<void> {
  const keep = Deno.env.get("DENOISE_BENCH_KEEP") === "1";
  const root = Deno.env.get("DENOISE_BENCH_DIR") ?? await Deno.makeTempDir();
  const threadsEnv = Deno.env.get("DENOISE_BENCH_THREADS");
  const session = threadsEnv === undefined ? {} : { threads: Number(threadsEnv) };
  const dir = join(root, "blip-base-random");
  const cacheDir = join(root, "cache");
  const rows: Array<[string, string]> = [];
  const log = (what: string, value: string) => {
    rows.push([what, value]);
    console.error(`${what}: ${value}`);
  };
  const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(2)} s`;
  try {
    if (!existsSync(join(dir, "model.safetensors"))) {
      const t0 = performance.now();
      await createRandomBlip(BLIP_BASE_CONFIG, dir, { values: "fast" });
      log("write random weights (once, 0.99 GB)", seconds(t0));
    }
    let t0 = performance.now();
    let model = await BlipCaptionModel.load(dir, { cacheDir, session });
    log("load, cold (build + write graphs, ORT optimise and save)", seconds(t0));
    await model.release();
    t0 = performance.now();
    model = await BlipCaptionModel.load(dir, { cacheDir, session });
    log("load, cached (saved optimised graphs)", seconds(t0));
    try {
      const images = [0, 1, 2, 3].map((i) => image(384, 384, i));
      // Warm-up (first runs allocate).
      await captionImages(model, [images[0]!]);
      t0 = performance.now();
      const pixels = model.preprocess([images[0]!]);
      log("preprocess one 384x384 image (PIL bicubic port, identity size)", seconds(t0));
      t0 = performance.now();
      await model.imageEmbeddings(pixels, 1);
      log("vision encoder, 1 image", seconds(t0));
      const measure = async (label: string, batch: RawImage[], options: object) => {
        const t = performance.now();
        const results = await captionImages(model, batch, { batchSize: batch.length, ...options });
        const s = (performance.now() - t) / 1000;
        const tokens = results[0]!.ids.length - 1;
        log(
          label,
          `${(batch.length / s).toFixed(3)} captions/s (${
            s.toFixed(2)
          } s, ${tokens} new tokens each)`,
        );
      };
      await measure("greedy, batch 1", [images[1]!], {});
      await measure("greedy, batch 1 (again)", [images[2]!], {});
      await measure("greedy, batch 4", images, {});
      await measure("beam search 3 beams, batch 1", [images[3]!], { numBeams: 3 });
    } finally {
      await model.release();
    }
    console.log("| measurement | value |\n| --- | --- |");
    for (const [what, value] of rows) console.log(`| ${what} | ${value} |`);
  } finally {
    if (!keep) await Deno.remove(root, { recursive: true }).catch(() => undefined);
  }
}

if (Deno.env.get("DENOISE_BENCH_FULL") === "1") {
  await fullBenchmark();
}
