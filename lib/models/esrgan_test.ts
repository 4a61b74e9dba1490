import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { decodeImage } from "../image/codec.ts";
import { readSource, serializeModel } from "../onnx/model_file.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import { writeSafetensors } from "../weights/safetensors.ts";
import { openWeights } from "../weights/weight_source.ts";
import {
  buildUpscaler,
  rrdbNetConfig,
  srvggNetCompactConfig,
  type UpscalerConfig,
  upscalerParameterShapes,
} from "./esrgan.ts";
import { loadUpscalerWeights } from "./esrgan_load.ts";
import { memoryWeights } from "./layers.ts";
import { randomWeights } from "./random.ts";

const DIR = "golden/upscalers";

interface GoldenModel {
  class: string;
  kwargs: Record<string, number | string>;
  pth: string;
  safetensors: string;
  keys: Record<string, number[]>;
  weight_checksums: Record<string, { sum: number; abs_sum: number }>;
  outputs: Record<
    string,
    { output_shape: number[]; values: number[]; png: string; stats: { sum: number } }
  >;
  old_esrgan_key_map?: { map: Record<string, string> };
}
interface Golden {
  inputs: Record<string, { png: string; W: number; H: number; tensor: { values?: number[] } }>;
  models: Record<string, GoldenModel>;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** RGB/255 as [1, 3, H, W], the golden `how`. */
async function inputTensor(png: string): Promise<{ x: Float32Array; w: number; h: number }> {
  const img = await decodeImage(await Deno.readFile(sharedPath(`${DIR}/${png}`)));
  const plane = img.width * img.height;
  const x = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) x[c * plane + i] = img.data[i * 3 + c]! / 255;
  }
  return { x, w: img.width, h: img.height };
}

async function runModel(
  path: string,
  inputs: Array<{ x: Float32Array; w: number; h: number }>,
): Promise<
  { config: UpscalerConfig; outputs: Array<{ dims: readonly number[]; data: Float32Array }> }
> {
  const { config, weights } = await loadUpscalerWeights(path);
  const session = await createSession(await serializeModel(buildUpscaler(config, weights)));
  try {
    const outputs = [];
    for (const { x, w, h } of inputs) {
      const out = await session.run({ image: hostTensor("float32", x, [1, 3, h, w]) });
      outputs.push({ dims: out.upscaled!.dims, data: out.upscaled!.data as Float32Array });
    }
    return { config, outputs };
  } finally {
    await session.release();
  }
}

Deno.test({
  name: "buildUpscaler() matches the PyTorch reference upscalers (.pth and .safetensors)",
  ignore: !hasShared,
  fn: async () => {
    const golden = readSharedJson<Golden>(`${DIR}/upscalers.json`);
    const inputs = await Promise.all(
      Object.values(golden.inputs).map((i) => inputTensor(i.png)),
    );
    const names = Object.keys(golden.inputs);
    const ref32 = golden.inputs["gradient_32x32"]!.tensor.values!;
    console.log(`input gradient_32x32 maxdiff ${maxDiff(inputs[0]!.x, ref32)}`);
    assert.ok(maxDiff(inputs[0]!.x, ref32) <= 1e-7); // the JSON keeps 7 significant digits
    const report: string[] = [];
    for (const model of Object.values(golden.models)) {
      for (const file of [model.pth, model.safetensors]) {
        const { config, outputs } = await runModel(sharedPath(`${DIR}/${file}`), inputs);
        // Every weight arrives with its name, shape and values (sum, abs sum).
        const loaded = await loadUpscalerWeights(sharedPath(`${DIR}/${file}`));
        assert.deepEqual([...loaded.weights.keys()].sort(), Object.keys(model.keys).sort());
        for (const [key, sums] of Object.entries(model.weight_checksums)) {
          const source = loaded.weights.get(key)!;
          assert.deepEqual(source.shape, model.keys[key], key);
          const data = new Float32Array((await readSource(key, source)).slice().buffer);
          const sum = data.reduce((a, b) => a + b, 0);
          const abs = data.reduce((a, b) => a + Math.abs(b), 0);
          assert.ok(Math.abs(sum - sums.sum) <= 1e-4 * Math.max(1, Math.abs(sums.sum)), key);
          assert.ok(Math.abs(abs - sums.abs_sum) <= 1e-4 * sums.abs_sum, key);
        }
        // The detected config is the Python constructor's.
        const k = model.kwargs;
        assert.equal(config.architecture, model.class, file);
        assert.equal(config.features, k["num_feat"], file);
        assert.equal(config.scale, k["scale"] ?? k["upscale"], file);
        if (config.architecture === "RRDBNet") {
          assert.equal(config.blocks, k["num_block"]);
          assert.equal(config.growthChannels, k["num_grow_ch"]);
        } else {
          assert.equal(config.convs, k["num_conv"]);
        }
        for (const [i, out] of outputs.entries()) {
          const input = golden.inputs[names[i]!]!;
          const s = config.scale;
          assert.deepEqual(out.dims, [1, 3, input.H * s, input.W * s], `${file} ${names[i]}`);
          assert.ok(out.data.every(Number.isFinite));
          const ref = model.outputs[names[i]!];
          if (ref === undefined) {
            report.push(`${file} ${names[i]}: no reference (held back), ran`);
            continue;
          }
          const raw = maxDiff(out.data, ref.values);
          // PNG: clamp(0, 1) * 255 rounded, HWC RGB, against the reference file.
          const png = await decodeImage(await Deno.readFile(sharedPath(`${DIR}/${ref.png}`)));
          const plane = png.width * png.height;
          let pngDiff = 0;
          for (let p = 0; p < plane; p++) {
            for (let c = 0; c < 3; c++) {
              const v = Math.round(Math.min(1, Math.max(0, out.data[c * plane + p]!)) * 255);
              pngDiff = Math.max(pngDiff, Math.abs(v - png.data[p * 3 + c]!));
            }
          }
          report.push(
            `${file} ${names[i]}: raw maxdiff ${raw.toExponential(2)}, png ${pngDiff}/255`,
          );
          assert.ok(raw <= 1e-4, `${file} ${names[i]}: raw maxdiff ${raw}`);
          assert.ok(pngDiff <= 1, `${file} ${names[i]}: png maxdiff ${pngDiff}`);
        }
      }
    }
    console.log(report.join("\n"));
  },
});

Deno.test({
  name: "loadUpscalerWeights() reads the original ESRGAN key layout (model.N, RDBk.convj.0)",
  ignore: !hasShared,
  fn: async () => {
    const golden = readSharedJson<Golden>(`${DIR}/upscalers.json`);
    const model = golden.models["RRDBNet_x4_tiny"]!;
    const map = model.old_esrgan_key_map!.map;
    const tmp = await Deno.makeTempDir();
    try {
      const modern = await loadUpscalerWeights(sharedPath(`${DIR}/${model.safetensors}`));
      const file = await openWeights(sharedPath(`${DIR}/${model.safetensors}`));
      // The golden weights are fp16-representable, so an F16 copy holds the same values.
      const tensors = [];
      for (const name of file.names()) {
        const data = await file.readFloat32(name);
        tensors.push({
          name: map[name]!,
          dtype: "F16" as const,
          shape: file.info(name).shape,
          data,
        });
      }
      file.close();
      const path = join(tmp, "4x-old.safetensors");
      await writeSafetensors(path, tensors);
      const old = await loadUpscalerWeights(path);
      assert.equal(old.layout, "esrgan");
      assert.deepEqual(old.config, modern.config);
      const input = await inputTensor("gradient_32x32.png");
      const { outputs } = await runModel(path, [input]);
      const d = maxDiff(outputs[0]!.data, model.outputs["gradient_32x32"]!.values);
      console.log(`old layout (fp16 file) vs reference: maxdiff ${d.toExponential(2)}`);
      assert.ok(d <= 1e-4);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test("buildUpscaler() pixel-unshuffles like BasicSR and shuffles like nn.PixelShuffle", async () => {
  // A 1-block x2 RRDBNet whose conv_first reads only input channel q of the unshuffled image:
  // BasicSR orders unshuffled channels c*4 + dy*2 + dx.
  const config = rrdbNetConfig({ scale: 2, features: 4, blocks: 1, growthChannels: 2 });
  const shapes = upscalerParameterShapes(config);
  assert.deepEqual(shapes.get("conv_first.weight"), [4, 12, 3, 3]);
  const x = new Float32Array(3 * 4 * 4).map((_, i) => i);
  const q = 7; // channel 1, dy 1, dx 1
  const w = randomWeights(shapes, 1);
  for (const t of w.values()) t.data.fill(0);
  w.get("conv_first.weight")!.data[q * 9 + 4] = 1; // out 0 <- centre tap of channel q
  for (const n of ["conv_up1", "conv_up2", "conv_hr"]) w.get(`${n}.weight`)!.data[4] = 1;
  w.get("conv_last.weight")!.data[4] = 1;
  w.get("conv_body.weight")!.data.fill(0);
  const session = await createSession(
    await serializeModel(buildUpscaler(config, memoryWeights(w))),
  );
  const out = await session.run({ image: hostTensor("float32", x, [1, 3, 4, 4]) });
  await session.release();
  const y = out.upscaled!.data as Float32Array;
  // Output channel 0 at (2i, 2j)... = nearest x4 of unshuffled channel q, which is x[1, 2i+1, 2j+1].
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 2; j++) {
      assert.equal(y[(4 * i) * 8 + 4 * j], x[16 + (2 * i + 1) * 4 + 2 * j + 1]);
    }
  }

  // SRVGGNetCompact x2 with zero body and bias on the last conv = channel index: PixelShuffle
  // sends channel c*4 + dy*2 + dx to (c, 2i+dy, 2j+dx).
  const sv = srvggNetCompactConfig({ features: 2, convs: 0, scale: 2 });
  const sw = randomWeights(upscalerParameterShapes(sv), 2);
  for (const t of sw.values()) t.data.fill(0);
  sw.get("body.2.bias")!.data.forEach((_, i, a) => (a[i] = i));
  const s2 = await createSession(await serializeModel(buildUpscaler(sv, memoryWeights(sw))));
  const zero = await s2.run({ image: hostTensor("float32", new Float32Array(3), [1, 3, 1, 1]) });
  await s2.release();
  assert.deepEqual([...(zero.upscaled!.data as Float32Array)], [...Array(12).keys()]);
});
