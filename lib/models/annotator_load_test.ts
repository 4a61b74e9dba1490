import assert from "node:assert/strict";
import { join } from "node:path";
import { writeTorchCheckpoint } from "../convert/testing.ts";
import { GraphBuilder } from "../onnx/graph.ts";
import { readSource, serializeModel } from "../onnx/model_file.ts";
import { f16ToF32, f32ToF16 } from "../tensor/dtype.ts";
import { createSession, hostTensor } from "../onnx/session.ts";
import {
  annotatorTensor,
  TINY_HED,
  TINY_LINEART,
  TINY_PIDINET,
  writeTinyHed,
  writeTinyLineart,
  writeTinyPidinet,
} from "../../tests/fixtures/preprocess_models.ts";
import {
  annotatorKeyNames,
  buildAnnotator,
  detectAnnotatorConfig,
  loadAnnotatorWeights,
} from "./annotator_load.ts";
import { buildHed, controlNetHedConfig, type HedConfig, hedParameterShapes } from "./hed.ts";
import { memoryWeights, ModelContext } from "./layers.ts";
import {
  annotatorLineartConfig,
  buildLineartGenerator,
  type LineartConfig,
  lineartParameterShapes,
} from "./lineart_generator.ts";
import {
  pidinetParameterShapes,
  type PixelDifference,
  pixelDifferenceConv,
  tablePidinetConfig,
} from "./pidinet.ts";
import { randomWeights } from "./random.ts";

// ---------------------------------------------------------------------------------------------
// Plain loops, written from the torch modules' definitions, to check each layer type by hand.

/** A [C, H, W] float64 tensor. */
interface Planes {
  c: number;
  h: number;
  w: number;
  data: Float64Array;
}

function planes(c: number, h: number, w: number, data?: ArrayLike<number>): Planes {
  return { c, h, w, data: data ? Float64Array.from(data) : new Float64Array(c * h * w) };
}

/** F.conv2d(x, weight [O, C / groups, k, k], bias, stride, padding, dilation, groups). */
function conv(
  x: Planes,
  weight: ArrayLike<number>,
  o: number,
  k: number,
  options: {
    bias?: ArrayLike<number>;
    stride?: number;
    pad?: number;
    dilation?: number;
    groups?: number;
  } = {},
): Planes {
  const { stride = 1, pad = 0, dilation = 1, groups = 1 } = options;
  const h = Math.floor((x.h + 2 * pad - dilation * (k - 1) - 1) / stride) + 1;
  const w = Math.floor((x.w + 2 * pad - dilation * (k - 1) - 1) / stride) + 1;
  const out = planes(o, h, w);
  const cin = x.c / groups;
  for (let oc = 0; oc < o; oc++) {
    const g = Math.floor(oc / (o / groups));
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        let s = options.bias ? options.bias[oc]! : 0;
        for (let ic = 0; ic < cin; ic++) {
          for (let ky = 0; ky < k; ky++) {
            for (let kx = 0; kx < k; kx++) {
              const iy = y * stride - pad + ky * dilation;
              const ix = xx * stride - pad + kx * dilation;
              if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
              s += x.data[((g * cin + ic) * x.h + iy) * x.w + ix]! *
                weight[((oc * cin + ic) * k + ky) * k + kx]!;
            }
          }
        }
        out.data[(oc * h + y) * w + xx] = s;
      }
    }
  }
  return out;
}

/** nn.ConvTranspose2d(C, O, 3, stride=2, padding=1, output_padding=1), weight [C, O, 3, 3]. */
function convTranspose(x: Planes, weight: ArrayLike<number>, bias: ArrayLike<number>, o: number) {
  const out = planes(o, 2 * x.h, 2 * x.w);
  for (let oc = 0; oc < o; oc++) {
    out.data.fill(bias[oc]!, oc * out.h * out.w, (oc + 1) * out.h * out.w);
  }
  for (let ic = 0; ic < x.c; ic++) {
    for (let iy = 0; iy < x.h; iy++) {
      for (let ix = 0; ix < x.w; ix++) {
        const v = x.data[(ic * x.h + iy) * x.w + ix]!;
        for (let oc = 0; oc < o; oc++) {
          for (let ky = 0; ky < 3; ky++) {
            for (let kx = 0; kx < 3; kx++) {
              const y = iy * 2 - 1 + ky;
              const xx = ix * 2 - 1 + kx;
              if (y < 0 || y >= out.h || xx < 0 || xx >= out.w) continue;
              out.data[(oc * out.h + y) * out.w + xx]! += v *
                weight[((ic * o + oc) * 3 + ky) * 3 + kx]!;
            }
          }
        }
      }
    }
  }
  return out;
}

function map(x: Planes, f: (v: number) => number): Planes {
  return { ...x, data: x.data.map(f) };
}

function add(a: Planes, b: Planes): Planes {
  return { ...a, data: a.data.map((v, i) => v + b.data[i]!) };
}

/** nn.ReflectionPad2d(p). */
function reflectPad(x: Planes, p: number): Planes {
  const out = planes(x.c, x.h + 2 * p, x.w + 2 * p);
  const r = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  for (let c = 0; c < x.c; c++) {
    for (let y = 0; y < out.h; y++) {
      for (let xx = 0; xx < out.w; xx++) {
        out.data[(c * out.h + y) * out.w + xx] = x
          .data[(c * x.h + r(y - p, x.h)) * x.w + r(xx - p, x.w)]!;
      }
    }
  }
  return out;
}

/** nn.InstanceNorm2d (affine=False, eps 1e-5, biased variance). */
function instanceNorm(x: Planes): Planes {
  const out = planes(x.c, x.h, x.w);
  const n = x.h * x.w;
  for (let c = 0; c < x.c; c++) {
    const v = x.data.subarray(c * n, (c + 1) * n);
    const mean = v.reduce((a, b) => a + b, 0) / n;
    const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    for (let i = 0; i < n; i++) out.data[c * n + i] = (v[i]! - mean) / Math.sqrt(variance + 1e-5);
  }
  return out;
}

/** F.max_pool2d(kernel 2, stride 2). */
function maxPool(x: Planes): Planes {
  const out = planes(x.c, Math.floor(x.h / 2), Math.floor(x.w / 2));
  for (let c = 0; c < x.c; c++) {
    for (let y = 0; y < out.h; y++) {
      for (let xx = 0; xx < out.w; xx++) {
        const at = (dy: number, dx: number) => x.data[(c * x.h + 2 * y + dy) * x.w + 2 * xx + dx]!;
        out.data[(c * out.h + y) * out.w + xx] = Math.max(at(0, 0), at(0, 1), at(1, 0), at(1, 1));
      }
    }
  }
  return out;
}

const relu = (x: Planes) => map(x, (v) => Math.max(0, v));

/** Runs a built graph on one [1, C, H, W] input and returns its outputs by name. */
async function runGraph(
  model: Parameters<typeof serializeModel>[0],
  x: Planes,
): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>> {
  const session = await createSession(await serializeModel(model));
  try {
    const out = await session.run({
      [session.inputNames[0]!]: hostTensor("float32", Float32Array.from(x.data), [
        1,
        x.c,
        x.h,
        x.w,
      ]),
    });
    return Object.fromEntries(
      Object.entries(out).map(([k, v]) => [k, { data: v.data as Float32Array, dims: v.dims }]),
    );
  } finally {
    await session.release();
  }
}

function weightsOf(shapes: Map<string, number[]>, seed: number) {
  const random = randomWeights(shapes, seed);
  const get = (name: string) => random.get(name)!.data;
  return { weights: memoryWeights(random), get };
}

function noisePlanes(c: number, h: number, w: number, seed: number, scale = 1): Planes {
  let s = seed;
  return planes(
    c,
    h,
    w,
    Array.from({ length: c * h * w }, () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return (s / 2 ** 31 - 0.5) * 2 * scale;
    }),
  );
}

function assertClose(ours: ArrayLike<number>, ref: Planes, what: string, tolerance: number) {
  assert.equal(ours.length, ref.data.length, `${what}: length`);
  let maxdiff = 0;
  for (let i = 0; i < ours.length; i++) {
    maxdiff = Math.max(maxdiff, Math.abs(ours[i]! - ref.data[i]!));
  }
  console.log(`${what}: maxdiff ${maxdiff}`);
  assert.ok(maxdiff <= tolerance, `${what}: maxdiff ${maxdiff}`);
}

// ---------------------------------------------------------------------------------------------

Deno.test("pixelDifferenceConv() computes PiDiNet's cd, ad, rd and cv convolutions as torch writes them", async () => {
  const cin = 3;
  const x = noisePlanes(cin, 6, 7, 3);
  const kernel = Array.from(noisePlanes(1, 1, 27 * 2, 9).data);
  for (
    const [pdc, groups, cout] of [
      ["cd", 1, 2],
      ["ad", 1, 2],
      ["rd", 1, 2],
      ["cv", 1, 2],
      [
        "cd",
        3,
        3,
      ],
      ["ad", 3, 3],
      ["rd", 3, 3],
    ] as Array<[PixelDifference, number, number]>
  ) {
    const per = cin / groups;
    const w = kernel.slice(0, cout * per * 9);
    const g = new GraphBuilder("pdc");
    const c = new ModelContext(
      g,
      "pdc",
      memoryWeights(
        new Map([["conv.weight", { shape: [cout, per, 3, 3], data: Float32Array.from(w) }]]),
      ),
    );
    const y = pixelDifferenceConv(
      c,
      "conv",
      g.input("x", "float32", [1, cin, 6, 7]),
      cin,
      cout,
      pdc,
      groups,
    );
    g.output(y, "y", "float32", [1, cout, 6, 7]);
    c.finish();
    const out = await runGraph(g.build(), x);
    // createConvFunc(pdc) in pidinet/model.py, with the weights as float32
    const wf = Array.from(Float32Array.from(w));
    let ref: Planes;
    if (pdc === "cd") {
      const sums = Array.from(
        { length: cout * per },
        (_, i) => wf.slice(i * 9, i * 9 + 9).reduce((a, b) => a + b, 0),
      );
      const y1 = conv(x, wf, cout, 3, { pad: 1, groups });
      const yc = conv(x, sums, cout, 1, { groups });
      ref = add(y1, map(yc, (v) => -v));
    } else if (pdc === "ad") {
      const perm = [3, 0, 1, 6, 4, 2, 7, 8, 5];
      const wc = wf.map((v, i) => v - wf[i - (i % 9) + perm[i % 9]!]!);
      ref = conv(x, wc, cout, 3, { pad: 1, groups });
    } else if (pdc === "rd") {
      const buffer = new Array(cout * per * 25).fill(0);
      const outer = [0, 2, 4, 10, 14, 20, 22, 24];
      const inner = [6, 7, 8, 11, 13, 16, 17, 18];
      for (let i = 0; i < cout * per; i++) {
        for (let t = 1; t <= 8; t++) {
          buffer[i * 25 + outer[t - 1]!] = wf[i * 9 + t]!;
          buffer[i * 25 + inner[t - 1]!] = -wf[i * 9 + t]!;
        }
      }
      ref = conv(x, buffer, cout, 5, { pad: 2, groups });
    } else {
      ref = conv(x, wf, cout, 3, { pad: 1, groups });
    }
    assertClose(out.y!.data, ref, `${pdc} groups=${groups}`, 1e-5);
  }
});

Deno.test("buildHed() matches a hand-written ControlNetHED_Apache2 forward", async () => {
  const config: HedConfig = {
    architecture: "hed",
    inChannels: 3,
    blocks: [{ inChannels: 3, channels: 4, layers: 2 }, { inChannels: 4, channels: 5, layers: 1 }],
  };
  const { weights, get } = weightsOf(hedParameterShapes(config), 1);
  const x = noisePlanes(3, 9, 7, 5, 100); // odd sizes: max pooling floors
  const out = await runGraph(buildHed(config, weights), x);
  const norm = get("norm");
  let h = map(x, (v) => v); // x - norm, per channel
  h = { ...h, data: h.data.map((v, i) => v - norm[Math.floor(i / (9 * 7))]!) };
  const proj: Planes[] = [];
  config.blocks.forEach((b, i) => {
    if (i > 0) h = maxPool(h);
    for (let k = 0; k < b.layers; k++) {
      const name = `block${i + 1}.convs.${k}`;
      h = relu(
        conv(h, get(`${name}.weight`), b.channels, 3, { pad: 1, bias: get(`${name}.bias`) }),
      );
    }
    const name = `block${i + 1}.projection`;
    proj.push(conv(h, get(`${name}.weight`), 1, 1, { bias: get(`${name}.bias`) }));
  });
  assert.deepEqual(out.projection2!.dims, [1, 1, 4, 3]);
  assertClose(out.projection1!.data, proj[0]!, "projection1", 1e-3); // values in the hundreds
  assertClose(out.projection2!.data, proj[1]!, "projection2", 1e-3);
});

Deno.test("buildLineartGenerator() matches a hand-written Generator forward", async () => {
  const config: LineartConfig = {
    architecture: "lineart",
    inChannels: 3,
    outChannels: 1,
    features: 2,
    downsamples: 2,
    residualBlocks: 1,
  };
  const { weights, get } = weightsOf(lineartParameterShapes(config), 2);
  const x = map(noisePlanes(3, 8, 12, 7), (v) => (v + 1) / 2);
  const out = await runGraph(buildLineartGenerator(config, weights), x);
  const w = (n: string) => get(`${n}.weight`);
  const b = (n: string) => get(`${n}.bias`);
  let h = relu(instanceNorm(conv(reflectPad(x, 3), w("model0.1"), 2, 7, { bias: b("model0.1") })));
  h = relu(instanceNorm(conv(h, w("model1.0"), 4, 3, { stride: 2, pad: 1, bias: b("model1.0") })));
  h = relu(instanceNorm(conv(h, w("model1.3"), 8, 3, { stride: 2, pad: 1, bias: b("model1.3") })));
  let r = relu(instanceNorm(conv(reflectPad(h, 1), w("model2.0.conv_block.1"), 8, 3, {
    bias: b("model2.0.conv_block.1"),
  })));
  r = instanceNorm(conv(reflectPad(r, 1), w("model2.0.conv_block.5"), 8, 3, {
    bias: b("model2.0.conv_block.5"),
  }));
  h = add(h, r);
  h = relu(instanceNorm(convTranspose(h, w("model3.0"), b("model3.0"), 4)));
  h = relu(instanceNorm(convTranspose(h, w("model3.3"), b("model3.3"), 2)));
  h = conv(reflectPad(h, 3), w("model4.1"), 1, 7, { bias: b("model4.1") });
  const line = map(h, (v) => 1 / (1 + Math.exp(-v)));
  assert.deepEqual(out.line!.dims, [1, 1, 8, 12]);
  assertClose(out.line!.data, line, "line", 1e-5);
});

Deno.test("detectAnnotatorConfig() tells the three networks and their sizes from shapes", () => {
  assert.deepEqual(
    detectAnnotatorConfig(hedParameterShapes(controlNetHedConfig())),
    controlNetHedConfig(),
  );
  assert.deepEqual(
    detectAnnotatorConfig(pidinetParameterShapes(tablePidinetConfig())),
    tablePidinetConfig(),
  );
  assert.deepEqual(
    detectAnnotatorConfig(lineartParameterShapes(annotatorLineartConfig())),
    annotatorLineartConfig(),
  );
  // The published file sizes (models.lock.json) are the parameters at 2 bytes (ControlNetHED.pth
  // is float16) or 4 bytes (sk_model.pth, float32) plus a little zip and pickle overhead.
  const count = (shapes: Map<string, number[]>) =>
    [...shapes.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
  const overhead = (bytes: number, size: number) => (size - bytes) / size;
  const hedBytes = 2 * count(hedParameterShapes(controlNetHedConfig()));
  const lineartBytes = 4 * count(lineartParameterShapes(annotatorLineartConfig()));
  assert.ok(overhead(hedBytes, 29_444_406) > 0 && overhead(hedBytes, 29_444_406) < 0.001);
  assert.ok(overhead(lineartBytes, 17_173_511) > 0 && overhead(lineartBytes, 17_173_511) < 0.001);
  // table5_pidinet.pth is about 2.87 MB: 710,149 float32 parameters.
  assert.equal(count(pidinetParameterShapes(tablePidinetConfig())), 710_149);
  assert.throws(
    () =>
      detectAnnotatorConfig(new Map([["conv_first.weight", [64, 3, 3, 3]]]), { source: "x.pth" }),
    /Cannot read "x.pth" as an annotator network \(keys "conv_first.weight", \.\.\.\): use ControlNetHED.pth/,
  );
  assert.deepEqual(
    [...annotatorKeyNames(["module.a", "module.b"]).values()],
    ["a", "b"],
  );
  assert.deepEqual([...annotatorKeyNames(["module.a", "b"]).values()], ["module.a", "b"]);
});

Deno.test("loadAnnotatorWeights() reads the annotator .pth layouts and the ledger reports bad weights", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise_annotator_" });
  try {
    const hed = await loadAnnotatorWeights(await writeTinyHed(join(dir, "hed.pth")));
    assert.deepEqual(hed.config, TINY_HED);
    const pidinet = await loadAnnotatorWeights(await writeTinyPidinet(join(dir, "pidi.pth")));
    assert.deepEqual(pidinet.config, TINY_PIDINET);
    assert.ok(pidinet.weights.has("init_block.weight"), "module. is dropped");
    const line = await loadAnnotatorWeights(await writeTinyLineart(join(dir, "sk.pth")));
    assert.deepEqual(line.config, TINY_LINEART);
    for (const loaded of [hed, pidinet, line]) {
      assert.ok(buildAnnotator(loaded.config, loaded.weights).initializers.length > 0);
    }
    // ControlNetHED.pth stores float16: read as float32, the values are the float16 ones.
    const shapes16 = hedParameterShapes(TINY_HED);
    const source = new Map(
      [...shapes16].map((
        [name, shape],
      ) => [name, annotatorTensor(name, shape, { first: "block1.convs.0.weight" })]),
    );
    await writeTorchCheckpoint(
      join(dir, "hed16.pth"),
      [...shapes16].map(([name, shape]) => ({
        name,
        dtype: "F16",
        shape,
        data: new Uint8Array(f32ToF16(source.get(name)!).buffer),
      })),
      undefined,
      { bare: true },
    );
    const hed16 = await loadAnnotatorWeights(join(dir, "hed16.pth"));
    assert.deepEqual(hed16.config, TINY_HED);
    const norm = await readSource("norm", hed16.weights.get("norm")!);
    assert.deepEqual(
      [...new Float32Array(norm.buffer, norm.byteOffset, 3)],
      [...f16ToF32(f32ToF16(source.get("norm")!))],
    );
    assert.ok(buildAnnotator(hed16.config, hed16.weights).initializers.length > 0);
    // A leftover and a misshapen tensor are reported together.
    const shapes = lineartParameterShapes(TINY_LINEART);
    const tensors = [...shapes].map(([name, shape]) => ({
      name,
      dtype: "F32",
      shape: name === "model4.1.bias" ? [2] : shape,
      data: new Uint8Array(4 * (name === "model4.1.bias" ? 2 : shape.reduce((a, b) => a * b, 1))),
    }));
    tensors.push({ name: "extra.weight", dtype: "F32", shape: [1], data: new Uint8Array(4) });
    await writeTorchCheckpoint(join(dir, "bad.pth"), tensors, undefined, { bare: true });
    const bad = await loadAnnotatorWeights(join(dir, "bad.pth"));
    assert.throws(
      () => buildAnnotator(bad.config, bad.weights, { source: "bad.pth" }),
      (e: Error) => /model4\.1\.bias/.test(e.message) && /extra\.weight/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
